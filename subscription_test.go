package sluice

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"context"
)

// testClock is a fake clock for lease and backoff times.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openWithClock(t *testing.T, dir string, clk *testClock) *Broker {
	t.Helper()
	b, err := Open(dir, &Options{now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fetchSoon fetches without waiting long; an empty result means nothing is due.
func fetchSoon(t *testing.T, c Consumer, max int) []Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ds, err := c.Fetch(ctx, max)
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return ds
}

func TestWorkQueueEndToEnd(t *testing.T) {
	dir := t.TempDir()
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	ctx := context.Background()
	b := openWithClock(t, dir, clk)
	defer func() { b.Close() }()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "emails", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "emails", SubscriptionConfig{Name: "senders", MaxDeliveries: 2,
		BackoffInitial: time.Second, BackoffMax: time.Second}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		body := fmt.Sprintf("mail %d", i)
		if i == 7 {
			body = "poison"
		}
		if _, err := b.Publish(ctx, "emails", Message{Key: []byte(strconv.Itoa(i)), Body: []byte(body),
			Headers: []Header{{Key: "to", Value: []byte("x@example.com")}}}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, "emails", "senders", ConsumerConfig{Name: "worker-1"})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{}
	for round := range 4 {
		for _, d := range fetchSoon(t, c, 100) {
			if string(d.Body) == "poison" {
				if err := c.Nack(ctx, d, NackOptions{Reason: "smtp 550"}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			sent[string(d.Body)] = true
			if err := c.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if round == 1 { // a restart in the middle loses nothing and redoes nothing
			b.Close()
			b = openWithClock(t, dir, clk)
			if c, err = b.NewConsumer(ctx, "emails", "senders", ConsumerConfig{Name: "worker-1"}); err != nil {
				t.Fatal(err)
			}
		}
		clk.advance(2 * time.Second)
	}
	if len(sent) != 19 {
		t.Fatalf("sent %d distinct mails, want 19", len(sent))
	}
	info, err := b.Subscription(ctx, "emails", "senders")
	if err != nil {
		t.Fatal(err)
	}
	if info.Backlog != 0 || info.DeadLettered != 1 {
		t.Fatalf("subscription: %+v", info)
	}
	// The dead letter keeps the message, its headers and its history.
	r, err := b.NewReader(ctx, "emails.senders.dlq", ReaderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, kv := range rec.Headers {
		h[kv.Key] = string(kv.Value)
	}
	var attempts []struct{ Consumer, Error string }
	if err := json.Unmarshal([]byte(h[HeaderDLQAttempts]), &attempts); err != nil {
		t.Fatal(err)
	}
	if string(rec.Body) != "poison" || string(rec.Key) != "7" || h["to"] != "x@example.com" || h[HeaderDLQStream] != "emails" ||
		h[HeaderDLQSubscription] != "senders" || h[HeaderDLQDeliveries] != "2" || len(attempts) != 2 ||
		attempts[1].Error != "smtp 550" || attempts[1].Consumer != "worker-1" {
		t.Fatalf("dead letter %q headers %v attempts %+v", rec.Body, h, attempts)
	}
}

func TestSubscriptionLifecycleAndErrors(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s"})
	if _, err := f.b.CreateSubscription(f.ctx, "s", SubscriptionConfig{Name: "a", Lease: time.Nanosecond}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("tiny lease: %v", err)
	}
	if _, err := f.b.CreateSubscription(f.ctx, "nope", SubscriptionConfig{Name: "a"}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	if _, err := f.b.CreateSubscription(f.ctx, "s", SubscriptionConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.CreateSubscription(f.ctx, "s", SubscriptionConfig{Name: "a"}); !errors.Is(err, ErrSubscriptionExists) {
		t.Fatalf("duplicate subscription: %v", err)
	}
	if _, err := f.b.NewConsumer(f.ctx, "s", "a", ConsumerConfig{MaxInFlight: MaxMaxInFlight + 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("in-flight cap over the limit: %v", err)
	}
	c, err := f.b.NewConsumer(f.ctx, "s", "a", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(f.ctx, MaxFetch+1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("fetch over MaxFetch: %v", err)
	}
	f.reopen()
	list, err := f.b.ListSubscriptions(f.ctx, "s")
	if err != nil || len(list) != 1 || list[0].Config.Name != "a" || list[0].Config.DeadLetterStream != "s.a.dlq" {
		t.Fatalf("after reopen: %+v, %v", list, err)
	}
	// A consumer blocked in Fetch ends when its subscription is deleted.
	c, _ = f.b.NewConsumer(f.ctx, "s", "a", ConsumerConfig{})
	done := make(chan error, 1)
	go func() { _, err := c.Fetch(f.ctx, 1); done <- err }()
	time.Sleep(10 * time.Millisecond) // let it block; the outcome does not depend on it
	if err := f.b.DeleteSubscription(f.ctx, "s", "a"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrSubscriptionNotFound) {
		t.Fatalf("fetch on a deleted subscription: %v", err)
	}
	f.reopen()
	if list, _ := f.b.ListSubscriptions(f.ctx, "s"); len(list) != 0 {
		t.Fatalf("deleted subscription came back: %+v", list)
	}
	if _, err := f.b.Stream(f.ctx, "s.a.dlq"); err != nil {
		t.Fatalf("the dead-letter stream stays: %v", err)
	}
}

func TestDeliverAtAndSeekThroughTheBroker(t *testing.T) {
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	ctx := context.Background()
	b := openWithClock(t, t.TempDir(), clk)
	defer b.Close()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "alerts"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "alerts", SubscriptionConfig{Name: "eval"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "alerts", Message{Body: []byte("now")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "alerts", Message{Body: []byte("tomorrow"), DeliverAt: clk.now().Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Publish(ctx, "alerts", Message{Body: []byte("x"), DeliverAt: clk.now().Add(MaxDeliverAhead + time.Hour)})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("DeliverAt beyond the horizon: %v", err)
	}
	c, _ := b.NewConsumer(ctx, "alerts", "eval", ConsumerConfig{})
	ds := fetchSoon(t, c, 10)
	if len(ds) != 1 || string(ds[0].Body) != "now" {
		t.Fatalf("before the delay: %d deliveries", len(ds))
	}
	c.Ack(ctx, ds[0])
	info, _ := b.Subscription(ctx, "alerts", "eval")
	if info.Delayed != 1 || !info.NextDue.Equal(clk.now().Add(24*time.Hour)) || !info.OldestUnsettled.Equal(clk.now()) {
		t.Fatalf("info: %+v", info)
	}
	clk.advance(24 * time.Hour)
	if ds := fetchSoon(t, c, 10); len(ds) != 1 || string(ds[0].Body) != "tomorrow" {
		t.Fatalf("after the delay: %d deliveries", len(ds))
	}
	// Seek back to the start: both come again.
	if err := b.SeekSubscription(ctx, "alerts", "eval", Earliest()); err != nil {
		t.Fatal(err)
	}
	if ds := fetchSoon(t, c, 10); len(ds) != 2 {
		t.Fatalf("after seeking to the start: %d deliveries", len(ds))
	}
}

func TestDeadLetterBrowseRedrivePurge(t *testing.T) {
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	ctx := context.Background()
	dir := t.TempDir()
	b := openWithClock(t, dir, clk)
	defer func() { b.Close() }()
	b.CreateStream(ctx, StreamConfig{Name: "orders"})
	b.CreateSubscription(ctx, "orders", SubscriptionConfig{Name: "billing", MaxDeliveries: 1})
	b.CreateSubscription(ctx, "orders", SubscriptionConfig{Name: "audit"})
	for i := range 4 {
		b.Publish(ctx, "orders", Message{Key: []byte(fmt.Sprint(i)), Body: []byte(fmt.Sprintf("order %d", i))})
	}
	c, _ := b.NewConsumer(ctx, "orders", "billing", ConsumerConfig{Name: "biller"})
	for _, d := range fetchSoon(t, c, 10) {
		reason := "card declined"
		if d.Offset == 3 {
			reason = "fraud check timeout"
		}
		if err := c.Nack(ctx, d, NackOptions{Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	dls, _, err := b.DeadLetters(ctx, "orders", "billing", DeadLetterQuery{})
	if err != nil || len(dls) != 4 {
		t.Fatalf("dead letters: %d, %v", len(dls), err)
	}
	if d := dls[0]; string(d.Message.Body) != "order 0" || d.Source != (Position{}) || d.Deliveries != 1 ||
		d.Attempts[0].Consumer != "biller" || d.Attempts[0].Error != "card declined" || d.Reason == "" {
		t.Fatalf("first dead letter: %+v", d)
	}
	fraud, _, _ := b.DeadLetters(ctx, "orders", "billing", DeadLetterQuery{Contains: "fraud"})
	if len(fraud) != 1 || fraud[0].Source.Offset != 3 {
		t.Fatalf("filtered: %+v", fraud)
	}
	one, err := b.DeadLetter(ctx, "orders", "billing", fraud[0].Offset)
	if err != nil || one.Source.Offset != 3 || string(one.Message.Body) != "order 3" {
		t.Fatalf("show one: %+v, %v", one, err)
	}
	if _, err := b.DeadLetter(ctx, "orders", "billing", 99); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Fatalf("show a missing one: %v", err)
	}
	// Redrive the card failures, rate-limited; the audit subscription sees nothing new.
	n, _, err := b.RedriveDeadLetters(ctx, "orders", "billing", RedriveOptions{Query: DeadLetterQuery{Contains: "card"}, PerSecond: 1000})
	if err != nil || n != 3 {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	b.Close()
	b = openWithClock(t, dir, clk) // a restart keeps the redrive
	c, _ = b.NewConsumer(ctx, "orders", "billing", ConsumerConfig{Name: "biller"})
	again := fetchSoon(t, c, 10)
	if len(again) != 3 || again[0].Deliveries != 1 {
		t.Fatalf("after redrive: %d deliveries", len(again))
	}
	for _, d := range again {
		if err := c.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := b.Subscription(ctx, "orders", "billing")
	if info.Backlog != 0 {
		t.Fatalf("billing after the redriven messages succeeded: %+v", info)
	}
	if audit, _ := b.Subscription(ctx, "orders", "audit"); audit.Backlog != 4 {
		t.Fatalf("audit backlog %d, want its own 4", audit.Backlog)
	}
	if n, _, _ := b.RedriveDeadLetters(ctx, "orders", "billing", RedriveOptions{Query: DeadLetterQuery{Contains: "card"}}); n != 0 {
		t.Fatalf("redrove %d twice", n)
	}
	left, _, _ := b.DeadLetters(ctx, "orders", "billing", DeadLetterQuery{})
	all, _, _ := b.DeadLetters(ctx, "orders", "billing", DeadLetterQuery{IncludeRedriven: true})
	if len(left) != 1 || len(all) != 4 || !all[0].Redriven {
		t.Fatalf("after redrive: %d listed, %d with redriven", len(left), len(all))
	}
	if _, err := b.PurgeDeadLetters(ctx, "orders", "billing"); err != nil {
		t.Fatal(err)
	}
	if gone, _, _ := b.DeadLetters(ctx, "orders", "billing", DeadLetterQuery{IncludeRedriven: true}); len(gone) != 0 {
		t.Fatalf("after purge: %d", len(gone))
	}
}

func TestWorkRetentionReclaimsSettledMessages(t *testing.T) {
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	ctx := context.Background()
	b := openWithClock(t, t.TempDir(), clk)
	defer b.Close()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "tasks", SegmentBytes: 4096, Retention: Retention{Policy: RetainWork}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "bad", Retention: Retention{Policy: "sometimes"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown policy: %v", err)
	}
	for i := range 500 {
		b.Publish(ctx, "tasks", Message{Body: make([]byte, 100), Key: []byte(fmt.Sprint(i))})
	}
	b.applyRetention()
	if info, _ := b.Stream(ctx, "tasks"); info.Messages != 500 {
		t.Fatalf("without subscriptions a work stream keeps its messages: %d", info.Messages)
	}
	b.CreateSubscription(ctx, "tasks", SubscriptionConfig{Name: "fast"})
	b.CreateSubscription(ctx, "tasks", SubscriptionConfig{Name: "slow"})
	settle := func(sub string, n int) {
		c, _ := b.NewConsumer(ctx, "tasks", sub, ConsumerConfig{MaxInFlight: 1000})
		for done := 0; done < n; {
			ds := fetchSoon(t, c, min(1000, n-done))
			for _, d := range ds {
				if err := c.Ack(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			done += len(ds)
		}
	}
	settle("fast", 500)
	settle("slow", 200)
	b.applyRetention()
	info, _ := b.Stream(ctx, "tasks")
	start := info.Partitions[0].StartOffset
	if start == 0 || start > 200 {
		t.Fatalf("after the slow subscription settled 200: start offset %d, want in (0, 200]", start)
	}
	settle("slow", 300)
	b.applyRetention()
	info, _ = b.Stream(ctx, "tasks")
	if info.Partitions[0].StartOffset <= start || info.Partitions[0].Segments > 2 {
		t.Fatalf("after everything settled: %+v", info.Partitions[0])
	}
}

func TestPartitionedGroupThroughTheBroker(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "events", Partitions: 4})
	if _, err := f.b.CreateSubscription(f.ctx, "events", SubscriptionConfig{Name: "g", Mode: PartitionedMode, Session: time.Second}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		f.b.Publish(f.ctx, "events", Message{Body: []byte(fmt.Sprint(i)), Partition: ToPartition(i % 4)})
	}
	a, _ := f.b.NewConsumer(f.ctx, "events", "g", ConsumerConfig{Name: "a"})
	c, _ := f.b.NewConsumer(f.ctx, "events", "g", ConsumerConfig{Name: "c"})
	fetchSoon(t, a, 1)
	fetchSoon(t, c, 1)
	info, _ := f.b.Subscription(f.ctx, "events", "g")
	if len(info.Members) != 2 || len(info.Members[0].Partitions) != 2 || len(info.Members[1].Partitions) != 2 || info.Generation < 2 {
		t.Fatalf("group: %+v", info.Members)
	}
	c.Close()
	info, _ = f.b.Subscription(f.ctx, "events", "g")
	if len(info.Members) != 1 || len(info.Members[0].Partitions) != 4 {
		t.Fatalf("after c closed: %+v", info.Members)
	}
}

// A member that came back on a new consumer (a client reconnecting under the
// same name) stays in the group when its old consumer is closed after: only
// the last consumer of a name to close leaves, and nothing moves.
func TestPartitionedMemberStaysWhileAConsumerOfItsNameIsOpen(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "events", Partitions: 4})
	if _, err := f.b.CreateSubscription(f.ctx, "events", SubscriptionConfig{Name: "g", Mode: PartitionedMode, Session: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		f.b.Publish(f.ctx, "events", Message{Body: []byte(fmt.Sprint(i)), Partition: ToPartition(i % 4)})
	}
	old, _ := f.b.NewConsumer(f.ctx, "events", "g", ConsumerConfig{Name: "a"})
	other, _ := f.b.NewConsumer(f.ctx, "events", "g", ConsumerConfig{Name: "c"})
	defer other.Close()
	fetchSoon(t, old, 1)
	fetchSoon(t, other, 1)
	renewed, _ := f.b.NewConsumer(f.ctx, "events", "g", ConsumerConfig{Name: "a"})
	before, _ := f.b.Subscription(f.ctx, "events", "g")
	old.Close()
	after, _ := f.b.Subscription(f.ctx, "events", "g")
	if after.Generation != before.Generation || len(after.Members) != 2 || len(after.Members[0].Partitions) != 2 {
		t.Fatalf("closing the old consumer of a member with another open moved the group: before %+v (gen %d), after %+v (gen %d)",
			before.Members, before.Generation, after.Members, after.Generation)
	}
	renewed.Close()
	last, _ := f.b.Subscription(f.ctx, "events", "g")
	if len(last.Members) != 1 || last.Members[0].Name != "c" || len(last.Members[0].Partitions) != 4 {
		t.Fatalf("after the last consumer of a closed: %+v", last.Members)
	}
}
