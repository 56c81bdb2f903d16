package subscription

import (
	"errors"
	"fmt"
	"github.com/sluicemq/sluice/internal/batch"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestQueueDeliversEachMessageOnceToConcurrentConsumers(t *testing.T) {
	e := newEnv(t, 3, Config{Name: "work"})
	const n = 600
	for i := range n {
		e.publish(i%3, fmt.Sprintf("m%d", i))
	}
	var mu sync.Mutex
	held := map[[2]int64]string{} // live leases: (partition, offset) -> consumer
	got := map[string]int{}
	var wg sync.WaitGroup
	for c := range 4 {
		name := fmt.Sprintf("c%d", c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ds := e.fetch(name, 7)
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					k := [2]int64{int64(d.Partition), d.Offset}
					if other, ok := held[k]; ok {
						t.Errorf("%v leased to %s and %s at once", k, other, name)
					}
					held[k] = name
					got[string(d.Value)]++
				}
				mu.Unlock()
				for _, d := range ds {
					mu.Lock()
					delete(held, [2]int64{int64(d.Partition), d.Offset})
					mu.Unlock()
					if err := e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("delivered %d distinct messages, want %d", len(got), n)
	}
	for v, c := range got {
		if c != 1 {
			t.Fatalf("%s delivered %d times", v, c)
		}
	}
	info := e.sub.Info()
	if info.Backlog != 0 || info.InFlight != 0 {
		t.Fatalf("after acking everything: %+v", info)
	}
	for i, p := range info.Partitions {
		if p.Floor != int64(n/3) {
			t.Fatalf("partition %d floor %d, want %d", i, p.Floor, n/3)
		}
	}
}

func TestStaleLeaseIsRejected(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", Lease: time.Second, BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	e.publish(0, "job")
	a := e.fetch("a", 1)
	if len(a) != 1 || a[0].Deliveries != 1 {
		t.Fatalf("first fetch: %+v", a)
	}
	if ds := e.fetch("b", 1); len(ds) != 0 {
		t.Fatalf("b got a message under a live lease: %+v", ds)
	}
	e.clk.advance(2 * time.Second) // a's lease expires
	b := e.fetch("b", 1)
	if len(b) != 1 || b[0].Offset != a[0].Offset || b[0].Deliveries != 2 || b[0].Lease == a[0].Lease {
		t.Fatalf("redelivery: %+v", b)
	}
	for name, op := range map[string]func() error{
		"ack":    func() error { return e.sub.Ack(e.ctx, 0, a[0].Offset, a[0].Lease) },
		"nack":   func() error { return e.sub.Nack(e.ctx, 0, a[0].Offset, a[0].Lease, nil, "x") },
		"term":   func() error { return e.sub.Term(e.ctx, 0, a[0].Offset, a[0].Lease, "x") },
		"extend": func() error { _, err := e.sub.Extend(0, a[0].Offset, a[0].Lease, time.Minute); return err },
	} {
		if err := op(); !errors.Is(err, ErrStaleLease) {
			t.Errorf("stale %s: %v, want ErrStaleLease", name, err)
		}
	}
	e.ack(b[0])
	if info := e.sub.Info(); info.Backlog != 0 {
		t.Fatalf("after b's ack: %+v", info)
	}
}

func TestExtendKeepsTheLease(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", Lease: time.Second})
	e.publish(0, "slow")
	d := e.fetch("a", 1)[0]
	for range 5 {
		e.clk.advance(800 * time.Millisecond)
		if _, err := e.sub.Extend(0, d.Offset, d.Lease, time.Second); err != nil {
			t.Fatal(err)
		}
		if ds := e.fetch("b", 1); len(ds) != 0 {
			t.Fatalf("redelivered under an extended lease: %+v", ds)
		}
	}
	e.ack(d)
}

func TestPoisonMessageDeadLetteredAfterExactlyMaxDeliveries(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", MaxDeliveries: 3, BackoffInitial: time.Second, BackoffMax: time.Second})
	e.publish(0, "poison", "fine")
	deliveries := 0
	for round := range 3 {
		if round == 1 {
			e.restart()
		}
		if round == 2 {
			e.kill()
		}
		e.clk.advance(2 * time.Second) // past any backoff
		ds := e.fetch("w", 10)
		for _, d := range ds {
			if string(d.Value) == "fine" {
				e.ack(d)
				continue
			}
			deliveries++
			if d.Deliveries != round+1 {
				t.Fatalf("round %d: delivery count %d", round, d.Deliveries)
			}
			e.nack(d, fmt.Sprintf("boom %d", round))
		}
	}
	e.clk.advance(time.Hour)
	if ds := e.fetch("w", 10); len(ds) != 0 {
		t.Fatalf("delivered after the limit: %+v", ds)
	}
	dead := e.deadLetters()
	if deliveries != 3 || len(dead) != 1 {
		t.Fatalf("%d deliveries, %d dead letters; want 3 and 1", deliveries, len(dead))
	}
	m := dead[0]
	var errs []string
	for _, a := range m.Attempts {
		errs = append(errs, a.Error)
	}
	if string(m.Value) != "poison" || m.Deliveries != 3 || !slices.Equal(errs, []string{"boom 0", "boom 1", "boom 2"}) || m.Attempts[0].Consumer != "w" {
		t.Fatalf("dead letter: %+v (errors %q)", m, errs)
	}
	if info := e.sub.Info(); info.DeadLettered != 1 || info.Backlog != 0 {
		t.Fatalf("info: %+v", info)
	}
}

func TestCrashDuringLastDeliveryDeadLetters(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", MaxDeliveries: 2, BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	e.publish(0, "crashes-the-worker")
	for range 2 {
		ds := e.fetch("w", 1)
		if len(ds) != 1 {
			t.Fatalf("fetch: %+v", ds)
		}
		e.kill() // the broker dies while the message is in flight
		e.clk.advance(time.Second)
	}
	if ds := e.fetch("w", 1); len(ds) != 0 {
		t.Fatalf("delivered a third time: %+v", ds)
	}
	if dead := e.deadLetters(); len(dead) != 1 || dead[0].Deliveries != 2 {
		t.Fatalf("dead letters: %+v", dead)
	}
}

func TestAckedMessagesAreNotRedeliveredAfterRestart(t *testing.T) {
	for _, how := range []string{"restart", "kill"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, 1, Config{Name: "work"})
			for i := range 10 {
				e.publish(0, fmt.Sprint(i))
			}
			ds := e.fetch("w", 10)
			for _, d := range ds {
				if d.Offset%2 == 1 { // acked out of order
					e.ack(d)
				}
			}
			if how == "kill" {
				e.kill()
			} else {
				e.restart()
			}
			e.publish(0, "10")
			got := values(e.fetch("w", 100))
			slices.Sort(got)
			want := []string{"0", "10", "2", "4", "6", "8"}
			if !slices.Equal(got, want) {
				t.Fatalf("after %s: %v, want %v", how, got, want)
			}
		})
	}
}

func TestNackDelayAndBackoff(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", BackoffInitial: 10 * time.Second, BackoffMax: time.Minute})
	e.publish(0, "a", "b")
	ds := e.fetch("w", 2)
	delay := time.Hour
	if err := e.sub.Nack(e.ctx, 0, ds[0].Offset, ds[0].Lease, &delay, "later"); err != nil {
		t.Fatal(err)
	}
	e.nack(ds[1], "backoff") // first failure: 5..10 s
	e.clk.advance(4 * time.Second)
	if got := e.fetch("w", 2); len(got) != 0 {
		t.Fatalf("redelivered before the backoff: %v", values(got))
	}
	e.clk.advance(7 * time.Second)
	if got := values(e.fetch("w", 2)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after the backoff: %v", got)
	}
	e.clk.advance(time.Hour)
	if got := values(e.fetch("w", 2)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the nack delay: %v", got)
	}
}

func TestConsumerInFlightCap(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work"})
	for i := range 10 {
		e.publish(0, fmt.Sprint(i))
	}
	ds, err := e.sub.Fetch(e.ctx, "w", 10, 3)
	if err != nil || len(ds) != 3 {
		t.Fatalf("fetch with cap 3: %d, %v", len(ds), err)
	}
	done := make(chan []Delivery)
	go func() {
		more, err := e.sub.Fetch(e.ctx, "w", 10, 3)
		if err != nil {
			t.Error(err)
		}
		done <- more
	}()
	select {
	case more := <-done:
		t.Fatalf("fetched %d beyond the cap", len(more))
	case <-time.After(50 * time.Millisecond):
	}
	e.ack(ds[0])
	if more := <-done; len(more) != 1 {
		t.Fatalf("after one ack: %d more", len(more))
	}
	// Another consumer has its own cap.
	if other := e.fetch("v", 10); len(other) != 6 {
		t.Fatalf("second consumer got %d", len(other))
	}
}

func TestTermDeadLettersAtOnce(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work"})
	e.publish(0, "bad input")
	d := e.fetch("w", 1)[0]
	if err := e.sub.Term(e.ctx, 0, d.Offset, d.Lease, "cannot parse"); err != nil {
		t.Fatal(err)
	}
	dead := e.deadLetters()
	if len(dead) != 1 || dead[0].Reason != "terminated by consumer" || dead[0].Attempts[0].Error != "cannot parse" || dead[0].Deliveries != 1 {
		t.Fatalf("dead letters: %+v", dead)
	}
}

func TestFetchWaitsForNewMessages(t *testing.T) {
	e := newEnv(t, 2, Config{Name: "work", Start: StartLatest})
	// Recreate the subscription after a message: it starts after it.
	if err := e.sub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(e.dir, "sub")); err != nil {
		t.Fatal(err)
	}
	e.publish(0, "before")
	e.open()
	got := make(chan []Delivery)
	go func() {
		ds, err := e.sub.Fetch(e.ctx, "w", 10, 10)
		if err != nil {
			t.Error(err)
		}
		got <- ds
	}()
	time.Sleep(10 * time.Millisecond) // let it block; the result does not depend on it
	e.publish(1, "after")
	if ds := <-got; len(ds) != 1 || string(ds[0].Value) != "after" {
		t.Fatalf("waiting fetch got %v", values(ds))
	}
}

func TestCompactionKeepsState(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work"})
	for i := range 50 {
		e.publish(0, fmt.Sprint(i))
	}
	ds := e.fetch("w", 50)
	for _, d := range ds[:25] {
		e.ack(d)
	}
	e.nack(ds[30], "x")
	gen := e.sub.gen
	e.sub.mu.Lock()
	if err := e.sub.compactLocked(); err != nil {
		t.Fatal(err)
	}
	e.sub.mu.Unlock()
	if e.sub.gen != gen+1 {
		t.Fatalf("generation %d after compaction of %d", e.sub.gen, gen)
	}
	e.kill()
	info := e.sub.Info()
	if info.Partitions[0].Floor != 25 || info.Partitions[0].Next != 50 || info.Backlog != 25 {
		t.Fatalf("after compaction and kill: %+v", info.Partitions[0])
	}
}

func TestFetchArgumentsAreChecked(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work"})
	for _, c := range []struct {
		consumer   string
		limit, cap int
		field      string
	}{
		{"", 1, 1, "consumer"},
		{"w", 0, 1, "limit"},
		{"w", MaxFetch + 1, 1, "limit"},
		{"w", 1, MaxMaxInFlight + 1, "MaxInFlight"},
	} {
		_, err := e.sub.Fetch(e.ctx, c.consumer, c.limit, c.cap)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("Fetch(%q, %d, %d): %v, want an error naming %s", c.consumer, c.limit, c.cap, err, c.field)
		}
	}
	if err := (Config{Name: "x", Lease: time.Nanosecond}).Validate(); err == nil {
		t.Error("a 1 ns lease was accepted")
	}
}

func TestDelayedMessagesBecomeVisibleOnTimeAndSurviveRestart(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work"})
	now := e.clk.now()
	for i, d := range []time.Duration{0, time.Hour, 90 * 24 * time.Hour, time.Minute} {
		b := batch.Append(nil, []batch.Record{{Timestamp: now.UnixMilli(), Value: []byte(fmt.Sprint(i)),
			Headers: []batch.RecordHeader{{Key: DeliverAtHeader, Value: []byte(fmt.Sprint(now.Add(d).UnixMilli()))}}}})
		if _, err := e.parts[0].Append(e.ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	first := e.fetch("w", 10)
	if got := values(first); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("at publish time: %v", got)
	}
	e.ack(first[0])
	info := e.sub.Info()
	if info.Delayed != 3 || !info.HasNextDue || info.NextDue != now.Add(time.Minute).UnixMilli() {
		t.Fatalf("info: %+v", info)
	}
	e.kill()
	e.clk.advance(time.Minute)
	due := e.fetch("w", 10)
	if got := values(due); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("after a minute: %v", got)
	}
	e.ack(due[0])
	e.restart()
	e.clk.advance(time.Hour)
	if got := values(e.fetch("w", 10)); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("after an hour: %v", got)
	}
	e.clk.advance(90 * 24 * time.Hour)
	got := e.fetch("w", 10)
	if !slices.Equal(values(got), []string{"2"}) || got[0].Deliveries != 1 {
		t.Fatalf("after 90 days: %+v", got)
	}
}

func TestSeekRestartsAPartition(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work"})
	for i := range 10 {
		e.publish(0, fmt.Sprint(i))
	}
	held := e.fetch("w", 3) // 0, 1, 2 in flight
	if err := e.sub.Seek(e.ctx, 0, 7); err != nil {
		t.Fatal(err)
	}
	if err := e.sub.Ack(e.ctx, 0, held[0].Offset, held[0].Lease); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("ack of a delivery from before the seek: %v", err)
	}
	if got := values(e.fetch("w", 10)); !slices.Equal(got, []string{"7", "8", "9"}) {
		t.Fatalf("after seek to 7: %v", got)
	}
	e.kill()
	if err := e.sub.Seek(e.ctx, 0, -100); err != nil { // clamped to the start
		t.Fatal(err)
	}
	if got := e.fetch("w", 100); len(got) != 10 {
		t.Fatalf("after seek to the start: %v", values(got))
	}
}

// TestAckMany settles several deliveries in one journal write, each answered
// as Ack would; what it acked stays acked after a kill.
func TestAckMany(t *testing.T) {
	e := newEnv(t, 2, Config{Name: "work"})
	e.publish(0, "a", "b")
	e.publish(1, "c")
	ds := e.fetch("w", 10)
	if len(ds) != 3 {
		t.Fatalf("fetched %v", values(ds))
	}
	refs := []Ref{
		{ds[0].Partition, ds[0].Offset, ds[0].Lease},
		{ds[1].Partition, ds[1].Offset, ds[1].Lease + 1}, // not its lease
		{ds[2].Partition, ds[2].Offset, ds[2].Lease},
		{ds[0].Partition, ds[0].Offset, ds[0].Lease}, // twice in one call
	}
	errs := e.sub.AckMany(e.ctx, refs)
	if errs[0] != nil || !errors.Is(errs[1], ErrStaleLease) || errs[2] != nil || !errors.Is(errs[3], ErrStaleLease) {
		t.Fatalf("answers %v", errs)
	}
	e.kill()
	got := values(e.fetch("w", 10))
	if !slices.Equal(got, []string{values(ds[1:2])[0]}) {
		t.Fatalf("after a kill: %v, want only %v", got, values(ds[1:2]))
	}
}
