package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// The conformance suite: one set of tests of what sluice.Client promises, run
// against the embedded broker and against the network client (over Connect and
// over gRPC) talking to a real server on a real socket. A test here may only
// use the interface, so whatever passes embedded passes remote.

type target struct {
	name string
	open func(t *testing.T) sluice.Client
}

var targets = []target{
	{"embedded", func(t *testing.T) sluice.Client {
		b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}},
	{"connect", func(t *testing.T) sluice.Client { return remote(t) }},
	{"grpc", func(t *testing.T) sluice.Client { return remote(t, client.WithGRPC()) }},
}

func remote(t *testing.T, opts ...client.Option) sluice.Client {
	e := start(t, t.TempDir(), "127.0.0.1:0")
	c, err := client.Dial(e.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		e.stop()
	})
	return c
}

// conform runs f against every target.
func conform(t *testing.T, f func(t *testing.T, c sluice.Client)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { f(t, tg.open(t)) })
	}
}

// must(f())(t) is f's value, failing t on f's error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func header(r sluice.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

func body(i int) []byte { return fmt.Appendf(nil, "m%03d", i) }

// fetchN fetches until n deliveries came, acking none.
func fetchN(t *testing.T, con sluice.Consumer, n int) []sluice.Delivery {
	t.Helper()
	var out []sluice.Delivery
	for len(out) < n {
		ds, err := con.Fetch(ctx(t), n-len(out))
		if err != nil {
			t.Fatalf("fetch after %d of %d: %v", len(out), n, err)
		}
		out = append(out, ds...)
	}
	return out
}

// fetchNone checks that nothing is delivered within d.
func fetchNone(t *testing.T, con sluice.Consumer, d time.Duration) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx(t), d)
	defer cancel()
	if ds, err := con.Fetch(c, 10); err == nil {
		t.Fatalf("fetched %d deliveries, want none: first %q", len(ds), ds[0].Body)
	}
}

func TestConformStreams(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		info := must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "orders", Partitions: 2}))(t)
		if info.Config.Partitions != 2 || info.Config.MaxMessages != sluice.DefaultMaxMessages {
			t.Fatalf("created %+v", info.Config)
		}
		if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "orders"}); !errors.Is(err, sluice.ErrStreamExists) {
			t.Fatalf("create twice: %v", err)
		}
		info = must(c.UpdateStream(ctx(t), sluice.StreamConfig{Name: "orders", Partitions: 3}))(t)
		if len(info.Partitions) != 3 {
			t.Fatalf("updated to %d partitions", len(info.Partitions))
		}
		if _, err := c.UpdateStream(ctx(t), sluice.StreamConfig{Name: "orders", Partitions: 1}); !errors.Is(err, sluice.ErrInvalid) {
			t.Fatalf("shrink: %v", err)
		}
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "audit"}))(t)
		list := must(c.ListStreams(ctx(t)))(t)
		var names []string
		for _, s := range list {
			names = append(names, s.Config.Name)
		}
		if !slices.Equal(names, []string{"audit", "orders"}) {
			t.Fatalf("list %v", names)
		}
		if err := c.DeleteStream(ctx(t), "audit"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Stream(ctx(t), "audit"); !errors.Is(err, sluice.ErrStreamNotFound) {
			t.Fatalf("deleted stream: %v", err)
		}
		if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "bad name"}); !errors.Is(err, sluice.ErrInvalid) {
			t.Fatalf("bad name: %v", err)
		}
	})
}

func TestConformPublishAndRead(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s", Partitions: 4}))(t)
		at := time.UnixMilli(1_700_000_000_123)
		p := must(c.Publish(ctx(t), "s", sluice.Message{Key: []byte("k1"), Body: []byte("hello"),
			Headers: []sluice.Header{{Key: "h", Value: []byte("v")}}, Time: at}))(t)
		// The same key lands in the same partition.
		p2 := must(c.Publish(ctx(t), "s", sluice.Message{Key: []byte("k1"), Body: []byte("again")}))(t)
		if p2.Partition != p.Partition || p2.Offset != p.Offset+1 {
			t.Fatalf("keyed publishes at %+v and %+v", p, p2)
		}
		var msgs []sluice.Message
		for i := range 10 {
			msgs = append(msgs, sluice.Message{Body: body(i), Partition: sluice.ToPartition(i % 4)})
		}
		ps := must(c.PublishBatch(ctx(t), "s", msgs))(t)
		for i, q := range ps {
			if q.Partition != i%4 {
				t.Fatalf("batch message %d in partition %d", i, q.Partition)
			}
		}
		r := must(c.NewReader(ctx(t), "s", sluice.ReaderConfig{Partition: p.Partition, Start: sluice.AtOffset(p.Offset)}))(t)
		defer r.Close()
		rec := must(r.Next(ctx(t)))(t)
		if string(rec.Body) != "hello" || string(rec.Key) != "k1" || !rec.Time.Equal(at) || string(header(rec, "h")) != "v" {
			t.Fatalf("read back %+v", rec)
		}
		// Idempotency keys: the repeat stores nothing and answers the original.
		first := must(c.Publish(ctx(t), "s", sluice.Message{Body: []byte("once"), IdempotencyKey: "pay-1"}))(t)
		dup := must(c.Publish(ctx(t), "s", sluice.Message{Body: []byte("once"), IdempotencyKey: "pay-1"}))(t)
		if !dup.Duplicate || dup.Partition != first.Partition || dup.Offset != first.Offset || first.Duplicate {
			t.Fatalf("first %+v, repeat %+v", first, dup)
		}
		info := must(c.Stream(ctx(t), "s"))(t)
		if info.Messages != 13 || info.Counters.Duplicates != 1 || info.Counters.Published != 13 || info.Counters.PublishedBytes < 13*4 {
			t.Fatalf("stream holds %d messages, %d duplicates, published %+v; want 13, 1, 13", info.Messages, info.Counters.Duplicates, info.Counters)
		}
	})
}

func TestConformBackpressure(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "small", MaxMessages: 2}))(t)
		for i := range 2 {
			must(c.Publish(ctx(t), "small", sluice.Message{Body: body(i)}))(t)
		}
		_, err := c.Publish(ctx(t), "small", sluice.Message{Body: body(2)})
		var fe *sluice.StreamFullError
		if !errors.As(err, &fe) || fe.Limit != "MaxMessages" || fe.Bound != 2 || fe.RetryAfter <= 0 {
			t.Fatalf("publish to a full stream: %v (%+v)", err, fe)
		}
		if info := must(c.Stream(ctx(t), "small"))(t); info.Messages != 2 || info.Counters.Rejected != 1 {
			t.Fatalf("after the rejection: %d messages, %d rejected", info.Messages, info.Counters.Rejected)
		}
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "ring", MaxMessages: 1, SegmentBytes: 4096, MaxBytes: 8192, Overflow: sluice.OverflowDropOldest}))(t)
		for i := range 3 {
			must(c.Publish(ctx(t), "ring", sluice.Message{Body: body(i)}))(t)
		}
		if info := must(c.Stream(ctx(t), "ring"))(t); info.Counters.Dropped < 1 {
			t.Fatalf("drop_oldest dropped %d", info.Counters.Dropped)
		}
	})
}

func TestConformQueue(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "jobs", Partitions: 2}))(t)
		must(c.CreateSubscription(ctx(t), "jobs", sluice.SubscriptionConfig{Name: "w", MaxDeliveries: 2,
			BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond}))(t)
		if _, err := c.CreateSubscription(ctx(t), "jobs", sluice.SubscriptionConfig{Name: "w"}); !errors.Is(err, sluice.ErrSubscriptionExists) {
			t.Fatalf("create twice: %v", err)
		}
		for i := range 6 {
			must(c.Publish(ctx(t), "jobs", sluice.Message{Body: body(i)}))(t)
		}
		a := must(c.NewConsumer(ctx(t), "jobs", "w", sluice.ConsumerConfig{Name: "a"}))(t)
		defer a.Close()
		b := must(c.NewConsumer(ctx(t), "jobs", "w", sluice.ConsumerConfig{Name: "b"}))(t)
		defer b.Close()
		// Each message goes to one consumer.
		got := append(fetchN(t, a, 3), fetchN(t, b, 3)...)
		seen := map[string]bool{}
		for _, d := range got {
			if seen[string(d.Body)] {
				t.Fatalf("%s delivered twice", d.Body)
			}
			seen[string(d.Body)] = true
			if d.Deliveries != 1 || d.Lease == 0 || d.Subscription != "w" || d.Stream != "jobs" {
				t.Fatalf("delivery %+v", d)
			}
		}
		info := must(c.Subscription(ctx(t), "jobs", "w"))(t)
		if info.InFlight != 6 || info.Backlog != 6 {
			t.Fatalf("in flight %d, backlog %d; want 6, 6", info.InFlight, info.Backlog)
		}
		// Ack four, nack one (retried, then dead-lettered at its second
		// failure), term one.
		for _, d := range got[:4] {
			if err := a.Ack(ctx(t), d); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Ack(ctx(t), got[0]); !errors.Is(err, sluice.ErrStaleLease) {
			t.Fatalf("second ack: %v, want ErrStaleLease", err)
		}
		if err := b.Nack(ctx(t), got[4], sluice.NackOptions{Reason: "smtp down"}); err != nil {
			t.Fatal(err)
		}
		if err := b.Term(ctx(t), got[5], "bad address"); err != nil {
			t.Fatal(err)
		}
		again := fetchN(t, a, 1)[0]
		if !bytes.Equal(again.Body, got[4].Body) || again.Deliveries != 2 {
			t.Fatalf("redelivered %s after %d deliveries, want %s after 2", again.Body, again.Deliveries, got[4].Body)
		}
		if err := a.Nack(ctx(t), again, sluice.NackOptions{Reason: "smtp still down"}); err != nil {
			t.Fatal(err)
		}
		var dls []sluice.DeadLetter
		eventually(t, "two dead letters", func() bool {
			dls, _ = must2(c.DeadLetters(ctx(t), "jobs", "w", sluice.DeadLetterQuery{}))(t)
			return len(dls) == 2
		})
		byBody := map[string]sluice.DeadLetter{}
		for _, d := range dls {
			byBody[string(d.Message.Body)] = d
		}
		nacked, termed := byBody[string(got[4].Body)], byBody[string(got[5].Body)]
		if nacked.Deliveries != 2 || len(nacked.Attempts) != 2 || nacked.Attempts[1].Error != "smtp still down" {
			t.Fatalf("nacked dead letter %+v", nacked)
		}
		if termed.Reason == "" || len(termed.Attempts) != 1 || termed.Attempts[0].Error != "bad address" {
			t.Fatalf("termed dead letter %+v", termed)
		}
		one := must(c.DeadLetter(ctx(t), "jobs", "w", termed.Offset))(t)
		if !bytes.Equal(one.Message.Body, got[5].Body) || one.Source.Offset != got[5].Offset || one.Source.Partition != got[5].Partition {
			t.Fatalf("dead letter %d: %+v", termed.Offset, one)
		}
		if _, err := c.DeadLetter(ctx(t), "jobs", "w", 99); !errors.Is(err, sluice.ErrDeadLetterNotFound) {
			t.Fatalf("missing dead letter: %v", err)
		}
		// Redrive the termed one only: it comes back with a fresh count.
		n, _ := must2(c.RedriveDeadLetters(ctx(t), "jobs", "w", sluice.RedriveOptions{Query: sluice.DeadLetterQuery{Contains: "bad address"}}))(t)
		if n != 1 {
			t.Fatalf("redrove %d, want 1", n)
		}
		back := fetchN(t, b, 1)[0]
		if !bytes.Equal(back.Body, got[5].Body) || back.Deliveries != 1 {
			t.Fatalf("after redrive: %s after %d deliveries", back.Body, back.Deliveries)
		}
		if err := b.Ack(ctx(t), back); err != nil {
			t.Fatal(err)
		}
		must(c.PurgeDeadLetters(ctx(t), "jobs", "w"))(t)
		if dls, _ := must2(c.DeadLetters(ctx(t), "jobs", "w", sluice.DeadLetterQuery{}))(t); len(dls) != 0 {
			t.Fatalf("%d dead letters after purge", len(dls))
		}
		info = must(c.Subscription(ctx(t), "jobs", "w"))(t)
		if info.Backlog != 0 || info.InFlight != 0 || info.DeadLettered != 2 || info.Redeliveries != 1 {
			t.Fatalf("at the end: %+v", info)
		}
	})
}

func must2[A, B any](a A, b B, err error) func(*testing.T) (A, B) {
	return func(t *testing.T) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConformLeases(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}))(t)
		must(c.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "w", Lease: 300 * time.Millisecond}))(t)
		must(c.Publish(ctx(t), "s", sluice.Message{Body: []byte("slow")}))(t)
		must(c.Publish(ctx(t), "s", sluice.Message{Body: []byte("held")}))(t)
		a := must(c.NewConsumer(ctx(t), "s", "w", sluice.ConsumerConfig{Name: "a"}))(t)
		defer a.Close()
		ds := fetchN(t, a, 2)
		// Extending one lease keeps it; the other expires and goes to b, and
		// a's late ack of it is refused by its fencing token.
		held := ds[1]
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := a.Extend(ctx(t), held, 300*time.Millisecond); err != nil {
					t.Error(err)
					return
				}
			}
		})
		b := must(c.NewConsumer(ctx(t), "s", "w", sluice.ConsumerConfig{Name: "b"}))(t)
		defer b.Close()
		re := fetchN(t, b, 1)[0]
		close(stop)
		wg.Wait()
		if string(re.Body) != "slow" || re.Deliveries != 2 || re.Lease == ds[0].Lease {
			t.Fatalf("redelivered %+v", re)
		}
		if err := a.Ack(ctx(t), ds[0]); !errors.Is(err, sluice.ErrStaleLease) {
			t.Fatalf("late ack: %v, want ErrStaleLease", err)
		}
		if err := b.Ack(ctx(t), re); err != nil {
			t.Fatal(err)
		}
		if err := a.Ack(ctx(t), held); err != nil {
			t.Fatalf("ack of the extended lease: %v", err)
		}
		if _, err := a.Extend(ctx(t), held, time.Second); !errors.Is(err, sluice.ErrStaleLease) {
			t.Fatalf("extend after ack: %v", err)
		}
	})
}

func TestConformDelayedAndSeek(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}))(t)
		must(c.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "w"}))(t)
		due := time.Now().Add(400 * time.Millisecond)
		must(c.Publish(ctx(t), "s", sluice.Message{Body: []byte("later"), DeliverAt: due}))(t)
		con := must(c.NewConsumer(ctx(t), "s", "w", sluice.ConsumerConfig{}))(t)
		defer con.Close()
		fetchNone(t, con, 100*time.Millisecond)
		if info := must(c.Subscription(ctx(t), "s", "w"))(t); info.Delayed != 1 || info.NextDue.IsZero() {
			t.Fatalf("delayed %d, next due %v", info.Delayed, info.NextDue)
		}
		d := fetchN(t, con, 1)[0]
		// DeliverAt is kept to the millisecond.
		if now := time.Now(); string(d.Body) != "later" || now.Before(due.Add(-time.Millisecond)) {
			t.Fatalf("delayed message %q delivered at %v, due at %v", d.Body, now, due)
		}
		if err := con.Ack(ctx(t), d); err != nil {
			t.Fatal(err)
		}
		// Seek back to the start: the acked message comes again.
		if err := c.SeekSubscription(ctx(t), "s", "w", sluice.Earliest()); err != nil {
			t.Fatal(err)
		}
		if d := fetchN(t, con, 1)[0]; string(d.Body) != "later" {
			t.Fatalf("after seek: %q", d.Body)
		}
		if err := c.SeekSubscription(ctx(t), "s", "nope", sluice.Earliest()); !errors.Is(err, sluice.ErrSubscriptionNotFound) {
			t.Fatalf("seek a missing subscription: %v", err)
		}
	})
}

func TestConformKeyOrdered(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}))(t)
		must(c.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "k", Mode: sluice.KeyOrderedMode,
			BackoffInitial: time.Hour, BackoffMax: time.Hour}))(t)
		for i := range 3 {
			must(c.Publish(ctx(t), "s", sluice.Message{Key: []byte("bad"), Body: fmt.Appendf(nil, "bad-%d", i)}))(t)
			must(c.Publish(ctx(t), "s", sluice.Message{Key: []byte("good"), Body: fmt.Appendf(nil, "good-%d", i)}))(t)
		}
		con := must(c.NewConsumer(ctx(t), "s", "k", sluice.ConsumerConfig{}))(t)
		defer con.Close()
		// One message per key at a time: the first of each.
		first := fetchN(t, con, 2)
		slices.SortFunc(first, func(a, b sluice.Delivery) int { return bytes.Compare(a.Body, b.Body) })
		if string(first[0].Body) != "bad-0" || string(first[1].Body) != "good-0" {
			t.Fatalf("first deliveries %q, %q", first[0].Body, first[1].Body)
		}
		fetchNone(t, con, 200*time.Millisecond)
		// The failing key is parked; the other keeps flowing in order.
		if err := con.Nack(ctx(t), first[0], sluice.NackOptions{Reason: "poison"}); err != nil {
			t.Fatal(err)
		}
		if err := con.Ack(ctx(t), first[1]); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < 3; i++ {
			d := fetchN(t, con, 1)[0]
			if want := fmt.Sprintf("good-%d", i); string(d.Body) != want {
				t.Fatalf("got %q, want %q", d.Body, want)
			}
			if err := con.Ack(ctx(t), d); err != nil {
				t.Fatal(err)
			}
		}
		keys := must(c.ParkedKeys(ctx(t), "s", "k", 10))(t)
		if len(keys) != 1 || keys[0].Key != "bad" || keys[0].Held != 2 || keys[0].LastError != "poison" || keys[0].NotBefore == 0 {
			t.Fatalf("parked keys %+v", keys)
		}
		if info := must(c.Subscription(ctx(t), "s", "k"))(t); info.Parked != 1 || info.Held != 2 || info.Backlog != 3 {
			t.Fatalf("subscription %+v", info)
		}
	})
}

func TestConformPartitioned(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s", Partitions: 4}))(t)
		must(c.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "g", Mode: sluice.PartitionedMode, Session: 2 * time.Second}))(t)
		for i := range 40 {
			must(c.Publish(ctx(t), "s", sluice.Message{Body: body(i), Partition: sluice.ToPartition(i % 4)}))(t)
		}
		a := must(c.NewConsumer(ctx(t), "s", "g", sluice.ConsumerConfig{Name: "a"}))(t)
		b := must(c.NewConsumer(ctx(t), "s", "g", sluice.ConsumerConfig{Name: "b"}))(t)
		defer b.Close()
		// Both join; then each partition is read by one member, in order.
		fetchN(t, a, 1) // a joins (and holds one delivery it will not settle)
		var held []sluice.Delivery
		eventually(t, "two members", func() bool {
			ctx2, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
			defer cancel()
			ds, _ := b.Fetch(ctx2, 1)
			held = append(held, ds...)
			return len(must(c.Subscription(ctx(t), "s", "g"))(t).Members) == 2
		})
		// a leaves: b takes every partition and reads all 40, in order per
		// partition (what b or a already held comes again once revoked).
		a.Close()
		next := map[int]int64{}
		acked := 0
		for acked < 40 {
			ds := held
			if held = nil; len(ds) == 0 {
				ds = fetchN(t, b, 1)
			}
			for _, d := range ds {
				if d.Offset < next[d.Partition] {
					continue // a redelivery of one acked before a rebalance
				}
				if d.Offset != next[d.Partition] {
					t.Fatalf("partition %d: offset %d after %d", d.Partition, d.Offset, next[d.Partition])
				}
				next[d.Partition]++
				if err := b.Ack(ctx(t), d); err != nil && !errors.Is(err, sluice.ErrStaleLease) {
					t.Fatal(err)
				}
				acked++
			}
		}
		info := must(c.Subscription(ctx(t), "s", "g"))(t)
		if len(info.Members) != 1 || info.Members[0].Name != "b" || len(info.Members[0].Partitions) != 4 {
			t.Fatalf("group %+v", info.Members)
		}
	})
}

func TestConformAtMostOnce(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}))(t)
		must(c.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "w", Delivery: sluice.AtMostOnce, Lease: 100 * time.Millisecond}))(t)
		must(c.Publish(ctx(t), "s", sluice.Message{Body: []byte("once")}))(t)
		con := must(c.NewConsumer(ctx(t), "s", "w", sluice.ConsumerConfig{}))(t)
		defer con.Close()
		d := fetchN(t, con, 1)[0]
		var ie *sluice.InvalidError
		if err := con.Nack(ctx(t), d, sluice.NackOptions{}); !errors.As(err, &ie) {
			t.Fatalf("nack at most once: %v", err)
		}
		if err := con.Ack(ctx(t), d); err != nil {
			t.Fatalf("ack at most once: %v", err)
		}
		fetchNone(t, con, 300*time.Millisecond) // never redelivered, lease or not
	})
}

func TestConformLiveAndSchedules(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "ticks", Partitions: 2}))(t)
		must(c.Publish(ctx(t), "ticks", sluice.Message{Body: []byte("before")}))(t)
		live := must(c.SubscribeLive(ctx(t), "ticks", sluice.LiveConfig{}))(t)
		defer live.Close()
		must(c.Publish(ctx(t), "ticks", sluice.Message{Body: []byte("after")}))(t)
		if rec := must(live.Next(ctx(t)))(t); string(rec.Body) != "after" {
			t.Fatalf("live read %q, want only what came after it opened", rec.Body)
		}
		info := must(c.CreateSchedule(ctx(t), sluice.ScheduleConfig{Name: "beat", Stream: "ticks", Every: time.Second,
			Message: sluice.Message{Body: []byte("beat")}}))(t)
		if info.NextFire.IsZero() || info.Config.Every != time.Second {
			t.Fatalf("schedule %+v", info)
		}
		if _, err := c.CreateSchedule(ctx(t), sluice.ScheduleConfig{Name: "beat", Stream: "ticks", Every: time.Second}); !errors.Is(err, sluice.ErrScheduleExists) {
			t.Fatalf("create twice: %v", err)
		}
		if rec := must(live.Next(ctx(t)))(t); string(rec.Body) != "beat" || header(rec, sluice.HeaderSchedule) == nil {
			t.Fatalf("scheduled message %+v", rec)
		}
		if info := must(c.PauseSchedule(ctx(t), "beat", true))(t); !info.Config.Paused || !info.NextFire.IsZero() {
			t.Fatalf("paused %+v", info)
		}
		if list := must(c.ListSchedules(ctx(t)))(t); len(list) != 1 || list[0].Fired < 1 {
			t.Fatalf("schedules %+v", list)
		}
		if err := c.DeleteSchedule(ctx(t), "beat"); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteSchedule(ctx(t), "beat"); !errors.Is(err, sluice.ErrScheduleNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if _, err := c.CreateSchedule(ctx(t), sluice.ScheduleConfig{Name: "x", Stream: "ticks", Cron: "not cron"}); !errors.Is(err, sluice.ErrInvalid) {
			t.Fatalf("bad cron: %v", err)
		}
	})
}

func TestConformWorkerAndProducer(t *testing.T) {
	conform(t, func(t *testing.T, c sluice.Client) {
		must(c.CreateStream(ctx(t), sluice.StreamConfig{Name: "emails", Partitions: 2}))(t)
		must(c.CreateSubscription(ctx(t), "emails", sluice.SubscriptionConfig{Name: "send", MaxDeliveries: 3,
			BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond}))(t)
		p := must(sluice.NewProducer(c, "emails", sluice.ProducerConfig{}))(t)
		for i := range 50 {
			must(p.Publish(ctx(t), sluice.Message{Body: body(i), IdempotencyKey: fmt.Sprintf("email-%d", i)}))(t)
		}
		var mu sync.Mutex
		sent := map[string]int{}
		w := must(sluice.NewWorker(c, "emails", "send", func(ctx context.Context, d sluice.Delivery) error {
			if string(d.Body) == "m007" {
				return errors.New("mailbox does not exist")
			}
			mu.Lock()
			sent[string(d.Body)]++
			mu.Unlock()
			return nil
		}, sluice.WorkerConfig{Concurrency: 4, Logger: slog.New(slog.DiscardHandler)}))(t)
		wctx, cancel := context.WithCancel(ctx(t))
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		eventually(t, "the worker to drain the backlog", func() bool {
			info := must(c.Subscription(ctx(t), "emails", "send"))(t)
			return info.Backlog == 0
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(sent) != 49 {
			t.Fatalf("sent %d distinct emails, want 49", len(sent))
		}
		dls, _ := must2(c.DeadLetters(ctx(t), "emails", "send", sluice.DeadLetterQuery{}))(t)
		if len(dls) != 1 || string(dls[0].Message.Body) != "m007" || dls[0].Deliveries != 3 || len(dls[0].Attempts) != 3 ||
			dls[0].Attempts[2].Error != "mailbox does not exist" {
			t.Fatalf("dead letters %+v", dls)
		}
		if st := w.Stats(); st.Processed != 49 || st.Failed != 3 {
			t.Fatalf("worker stats %+v", st)
		}
	})
}
