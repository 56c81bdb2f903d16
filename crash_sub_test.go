package sluice

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashJobs    = "jobs"
	crashWorkers = "workers" // queue mode
	crashOrdered = "ordered" // key_ordered mode
	crashGroup   = "group"   // partitioned mode
)

// consumeChild publishes and consumes at once until it is killed: producers print
// "P <id> <partition> <offset>" once a publish is acknowledged; consumers of two
// subscriptions print "D <sub> <id> <lease>" for every delivery and
// "A <sub> <id> <lease>" once its ack returned. One delivery in ten is nacked.
// Lease tokens only grow (within a process and across restarts), so a delivery
// handed out after an ack has a larger token than the ack's, however the lines of
// concurrent consumers interleave.
func consumeChild(dir, run string) {
	b, err := Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: crashJobs, Partitions: 2, SegmentBytes: 64 << 10}); err != nil && !errors.Is(err, ErrStreamExists) {
		fmt.Fprintln(os.Stderr, "child create:", err)
		os.Exit(2)
	}
	names := map[SubscriptionMode]string{QueueMode: crashWorkers, KeyOrderedMode: crashOrdered, PartitionedMode: crashGroup}
	for mode, name := range names {
		_, err = b.CreateSubscription(ctx, crashJobs, SubscriptionConfig{Name: name, Mode: mode, Lease: 300 * time.Millisecond,
			MaxDeliveries: 1000, BackoffInitial: time.Millisecond, BackoffMax: 20 * time.Millisecond})
		if err != nil && !errors.Is(err, ErrSubscriptionExists) {
			fmt.Fprintln(os.Stderr, "child subscribe:", err)
			os.Exit(2)
		}
	}
	var out sync.Mutex
	say := func(line string) {
		out.Lock()
		os.Stdout.WriteString(line + "\n")
		out.Unlock()
	}
	os.Stdout.WriteString("ready\n")
	for p := range 2 {
		go func() {
			for n := 0; ; n++ {
				id := fmt.Sprintf("r%s-p%d-%d", run, p, n)
				pos, err := b.Publish(ctx, crashJobs, Message{Key: []byte(fmt.Sprintf("k%d", n%16)), Body: []byte(id)})
				if err == nil {
					say(fmt.Sprintf("P %s %d %d", id, pos.Partition, pos.Offset))
				}
			}
		}()
	}
	for w := range 9 {
		sub := []string{crashWorkers, crashOrdered, crashGroup}[w%3]
		go func() {
			c, err := b.NewConsumer(ctx, crashJobs, sub, ConsumerConfig{Name: fmt.Sprintf("r%s-w%d", run, w), MaxInFlight: 32})
			if err != nil {
				fmt.Fprintln(os.Stderr, "child consumer:", err)
				os.Exit(2)
			}
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				ds, err := c.Fetch(ctx, 16)
				if err != nil {
					continue
				}
				for _, d := range ds {
					say(fmt.Sprintf("D %s %s %d", sub, d.Body, d.Lease))
					if rng.IntN(10) == 0 {
						c.Nack(ctx, d, NackOptions{Reason: "flaky"})
						continue
					}
					if c.Ack(ctx, d) == nil {
						say(fmt.Sprintf("A %s %s %d", sub, d.Body, d.Lease))
					}
				}
			}
		}()
	}
	select {}
}

func TestCrashKill9SubscriptionsDeliverEverythingAndNoAckedMessageReturns(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	type pos struct {
		key  string
		part int
		off  int64
	}
	published := map[string]pos{}
	subs := []string{crashWorkers, crashOrdered, crashGroup}
	delivered := map[string]map[string]int{}
	acked := map[string]map[string]uint64{} // the lease of the successful ack
	keyOf := func(id string) string {
		var r, p, n int
		fmt.Sscanf(id, "r%d-p%d-%d", &r, &p, &n)
		return fmt.Sprintf("k%d", n%16)
	}
	// key_ordered: per partition/key, partitioned: per partition, the highest
	// offset acked; nothing below it may be delivered after it.
	type ackAt struct {
		off   int64
		lease uint64
	}
	maxAcked := map[string]ackAt{}
	orderKey := func(sub, id string, p pos) (string, bool) {
		switch sub {
		case crashOrdered:
			return fmt.Sprintf("%s %d/%s", sub, p.part, keyOf(id)), true
		case crashGroup:
			return fmt.Sprintf("%s %d", sub, p.part), true
		}
		return "", false
	}
	for _, s := range subs {
		delivered[s], acked[s] = map[string]int{}, map[string]uint64{}
	}
	violations := 0
	violate := func(format string, args ...any) {
		violations++
		if violations <= 5 {
			t.Errorf(format, args...)
		}
	}
	onDelivery := func(sub, id string, lease uint64) {
		if a, ok := acked[sub][id]; ok && lease > a {
			violate("%s: message %s delivered again (lease %d) after its ack (lease %d)", sub, id, lease, a)
		}
		if p, ok := published[id]; ok {
			if k, ordered := orderKey(sub, id, p); ordered {
				if m, ok := maxAcked[k]; ok && m.off > p.off && lease > m.lease {
					violate("%s: offset %d delivered after offset %d was acked", k, p.off, m.off)
				}
			}
		}
		delivered[sub][id]++
	}
	onAck := func(sub, id string, lease uint64) {
		acked[sub][id] = lease
		if p, ok := published[id]; ok {
			if k, ordered := orderKey(sub, id, p); ordered {
				if m, ok := maxAcked[k]; !ok || p.off > m.off {
					maxAcked[k] = ackAt{p.off, lease}
				}
			}
		}
	}
	kills := 8
	if testing.Short() {
		kills = 3
	}
	for run := range kills {
		runChild(t, dir, "consume", run, time.Duration(100+rng.IntN(400))*time.Millisecond, func(l string) {
			f := strings.Fields(l)
			switch {
			case len(f) == 4 && f[0] == "P":
				var p pos
				fmt.Sscanf(f[2]+" "+f[3], "%d %d", &p.part, &p.off)
				published[f[1]] = p
			case len(f) == 4 && f[0] == "D":
				lease, _ := strconv.ParseUint(f[3], 10, 64)
				onDelivery(f[1], f[2], lease)
			case len(f) == 4 && f[0] == "A":
				lease, _ := strconv.ParseUint(f[3], 10, 64)
				onAck(f[1], f[2], lease)
			default:
				t.Fatalf("child wrote %q", l)
			}
		})
	}
	// Drain what is left in-process; leases in flight at the last kill are over.
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, sub := range subs {
		c, err := b.NewConsumer(ctx, crashJobs, sub, ConsumerConfig{MaxInFlight: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for {
			info, err := b.Subscription(ctx, crashJobs, sub)
			if err != nil {
				t.Fatal(err)
			}
			if info.Backlog == 0 {
				if info.DeadLettered != 0 {
					t.Fatalf("%s: %d messages dead-lettered with a delivery limit of 1000", sub, info.DeadLettered)
				}
				break
			}
			ds, err := c.Fetch(ctx, MaxFetch)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				onDelivery(sub, string(d.Body), d.Lease)
				if err := c.Ack(ctx, d); err != nil {
					t.Fatal(err)
				}
				onAck(sub, string(d.Body), d.Lease)
			}
		}
	}
	for _, sub := range subs {
		missing, dups := 0, 0
		for id := range published {
			if delivered[sub][id] == 0 {
				if missing < 5 {
					t.Errorf("%s: acknowledged publish %s never delivered", sub, id)
				}
				missing++
			}
		}
		for _, n := range delivered[sub] {
			if n > 1 {
				dups++
			}
		}
		t.Logf("%s: %d kills, %d published, %d delivered (%d more than once: nacks, expired leases, crashes), %d acked",
			sub, kills, len(published), len(delivered[sub]), dups, len(acked[sub]))
		if missing > 0 {
			t.Fatalf("%s: %d acknowledged publishes never delivered", sub, missing)
		}
	}
	if violations > 0 {
		t.Fatalf("%d violations", violations)
	}
	if len(published) < 200 {
		t.Fatalf("only %d messages published: the test did not exercise the broker", len(published))
	}
}
