package sluice

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashJobs    = "jobs"
	crashWorkers = "workers"
)

// consumeChild publishes and consumes at once until it is killed: producers print
// "P <id>" once a publish is acknowledged, consumers print "D <id>" for every
// delivery and "A <id>" once its ack returned. One delivery in ten is nacked.
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
	_, err = b.CreateSubscription(ctx, crashJobs, SubscriptionConfig{Name: crashWorkers, Lease: 300 * time.Millisecond,
		MaxDeliveries: 1000, BackoffInitial: time.Millisecond, BackoffMax: 20 * time.Millisecond})
	if err != nil && !errors.Is(err, ErrStreamExists) {
		fmt.Fprintln(os.Stderr, "child subscribe:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	say := func(kind, id string) {
		out.Lock()
		os.Stdout.WriteString(kind + " " + id + "\n")
		out.Unlock()
	}
	os.Stdout.WriteString("ready\n")
	for p := range 2 {
		go func() {
			for n := 0; ; n++ {
				id := fmt.Sprintf("r%s-p%d-%d", run, p, n)
				if _, err := b.Publish(ctx, crashJobs, Message{Key: []byte(id), Body: []byte(id)}); err == nil {
					say("P", id)
				}
			}
		}()
	}
	for w := range 4 {
		go func() {
			c, err := b.NewConsumer(ctx, crashJobs, crashWorkers, ConsumerConfig{Name: fmt.Sprintf("w%d", w), MaxInFlight: 32})
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
					say("D", string(d.Body))
					if rng.IntN(10) == 0 {
						c.Nack(ctx, d, NackOptions{Reason: "flaky"})
						continue
					}
					if c.Ack(ctx, d) == nil {
						say("A", string(d.Body))
					}
				}
			}
		}()
	}
	select {}
}

func TestCrashKill9SubscriptionDeliversEverythingAndNoAckedMessageReturns(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	published := map[string]bool{}
	delivered := map[string]int{}
	acked := map[string]bool{}
	violations := 0
	onDelivery := func(id string) {
		if acked[id] {
			violations++
			if violations <= 5 {
				t.Errorf("message %s delivered again after its ack", id)
			}
		}
		delivered[id]++
	}
	kills := 8
	if testing.Short() {
		kills = 3
	}
	for run := range kills {
		runChild(t, dir, "consume", run, time.Duration(100+rng.IntN(400))*time.Millisecond, func(l string) {
			kind, id, ok := strings.Cut(l, " ")
			if !ok {
				t.Fatalf("child wrote %q", l)
			}
			switch kind {
			case "P":
				published[id] = true
			case "D":
				onDelivery(id)
			case "A":
				acked[id] = true
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
	c, err := b.NewConsumer(ctx, crashJobs, crashWorkers, ConsumerConfig{MaxInFlight: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := b.Subscription(ctx, crashJobs, crashWorkers)
		if err != nil {
			t.Fatal(err)
		}
		if info.Backlog == 0 {
			if info.DeadLettered != 0 {
				t.Fatalf("%d messages dead-lettered with a delivery limit of 1000", info.DeadLettered)
			}
			break
		}
		ds, err := c.Fetch(ctx, MaxFetch)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			onDelivery(string(d.Body))
			if err := c.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
			acked[string(d.Body)] = true
		}
	}
	missing := 0
	for id := range published {
		if delivered[id] == 0 {
			if missing < 5 {
				t.Errorf("acknowledged publish %s never delivered", id)
			}
			missing++
		}
	}
	dups := 0
	for _, n := range delivered {
		if n > 1 {
			dups++
		}
	}
	t.Logf("%d kills: %d published, %d delivered (%d more than once: nacks, expired leases and crashes), %d acked",
		kills, len(published), len(delivered), dups, len(acked))
	if missing > 0 || violations > 0 {
		t.Fatalf("%d acknowledged publishes never delivered, %d acked messages delivered again", missing, violations)
	}
	if len(published) < 200 {
		t.Fatalf("only %d messages published: the test did not exercise the broker", len(published))
	}
}
