package sluice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// workerFixture is a broker with a stream "jobs" of n messages ("job-<i>") and a
// subscription "w" configured by sub.
func workerFixture(t *testing.T, n int, sub SubscriptionConfig) *fixture {
	t.Helper()
	f := setup(t)
	f.create(StreamConfig{Name: "jobs", Partitions: 2, Sync: SyncNever})
	sub.Name = "w"
	if _, err := f.b.CreateSubscription(f.ctx, "jobs", sub); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte(fmt.Sprintf("job-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// runWorker runs w until stop is called, which waits for Run to return.
func runWorker(t *testing.T, w *Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute):
			t.Fatal("worker did not stop")
			return nil
		}
	}
}

func (f *fixture) backlog(stream, sub string) int64 {
	f.t.Helper()
	info, err := f.b.Subscription(f.ctx, stream, sub)
	if err != nil {
		f.t.Fatal(err)
	}
	return info.Backlog
}

func TestWorkerHandlesEveryMessageWithBoundedConcurrency(t *testing.T) {
	const n, conc = 200, 8
	f := workerFixture(t, n, SubscriptionConfig{})
	var running, peak atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	w, err := NewWorker(f.b, "jobs", "w", func(ctx context.Context, d Delivery) error {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if now <= p || peak.CompareAndSwap(p, now) {
				break
			}
		}
		time.Sleep(time.Millisecond) // long enough for handlers to overlap
		mu.Lock()
		seen[string(d.Body)]++
		mu.Unlock()
		return nil
	}, WorkerConfig{Concurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	eventually(t, 20*time.Second, "the backlog to drain", func() bool { return f.backlog("jobs", "w") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("handled %d distinct messages, want %d", len(seen), n)
	}
	if p := peak.Load(); p > conc || p < 2 {
		t.Fatalf("peak concurrency %d, want within [2, %d]", p, conc)
	}
	if st := w.Stats(); st.Processed != n || st.Failed != 0 {
		t.Fatalf("stats %+v, want %d processed", st, n)
	}
}

// TestWorkerExtendsLeaseWhileHandlerRuns: a handler that takes three leases is
// never redelivered meanwhile.
func TestWorkerExtendsLeaseWhileHandlerRuns(t *testing.T) {
	f := workerFixture(t, 2, SubscriptionConfig{Lease: 200 * time.Millisecond})
	var deliveries atomic.Int64
	var maxDeliveries atomic.Int64
	w, _ := NewWorker(f.b, "jobs", "w", func(ctx context.Context, d Delivery) error {
		deliveries.Add(1)
		if int64(d.Deliveries) > maxDeliveries.Load() {
			maxDeliveries.Store(int64(d.Deliveries))
		}
		select {
		case <-time.After(600 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, WorkerConfig{Concurrency: 4})
	stop := runWorker(t, w)
	eventually(t, 20*time.Second, "the backlog to drain", func() bool { return f.backlog("jobs", "w") == 0 })
	stop()
	if deliveries.Load() != 2 || maxDeliveries.Load() != 1 {
		t.Fatalf("%d deliveries (highest count %d) for 2 messages, want 2 first deliveries", deliveries.Load(), maxDeliveries.Load())
	}
}

// TestWorkerRetriesAndDeadLetters: an error is retried up to MaxDeliveries then
// dead-lettered; a Permanent error is dead-lettered at once.
func TestWorkerRetriesAndDeadLetters(t *testing.T) {
	f := workerFixture(t, 3, SubscriptionConfig{MaxDeliveries: 3, BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	attempts := map[string]int{}
	var mu sync.Mutex
	w, _ := NewWorker(f.b, "jobs", "w", func(ctx context.Context, d Delivery) error {
		mu.Lock()
		attempts[string(d.Body)]++
		mu.Unlock()
		switch string(d.Body) {
		case "job-0":
			return errors.New("smtp: connection refused")
		case "job-1":
			return Permanent(errors.New("bad address"))
		}
		return nil
	}, WorkerConfig{Concurrency: 2})
	stop := runWorker(t, w)
	eventually(t, 20*time.Second, "the backlog to drain", func() bool { return f.backlog("jobs", "w") == 0 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if attempts["job-0"] != 3 || attempts["job-1"] != 1 || attempts["job-2"] != 1 {
		t.Fatalf("attempts %v, want job-0 3 (MaxDeliveries), job-1 1 (permanent), job-2 1", attempts)
	}
	dls, _, err := f.b.DeadLetters(f.ctx, "jobs", "w", DeadLetterQuery{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, dl := range dls {
		reasons[string(dl.Message.Body)] = dl.Attempts[len(dl.Attempts)-1].Error
	}
	if len(dls) != 2 || reasons["job-0"] != "smtp: connection refused" || reasons["job-1"] != "permanent: bad address" {
		t.Fatalf("dead letters %v, want job-0 and job-1 with their errors", reasons)
	}
}

// TestWorkerStopFinishesOrHandsBack: on stop, a handler that finishes within
// StopTimeout is acknowledged; one that does not is cancelled and its message
// handed back, due again at once rather than after its lease.
func TestWorkerStopFinishesOrHandsBack(t *testing.T) {
	f := workerFixture(t, 2, SubscriptionConfig{Lease: time.Hour})
	started := make(chan string, 2)
	w, _ := NewWorker(f.b, "jobs", "w", func(ctx context.Context, d Delivery) error {
		started <- string(d.Body)
		if string(d.Body) == "job-0" {
			time.Sleep(50 * time.Millisecond) // finishes during the stop
			return nil
		}
		<-ctx.Done() // never finishes by itself
		return ctx.Err()
	}, WorkerConfig{Concurrency: 2, StopTimeout: 300 * time.Millisecond})
	stop := runWorker(t, w)
	<-started
	<-started
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Processed != 1 || st.HandedBack != 1 {
		t.Fatalf("stats %+v, want 1 processed and 1 handed back", st)
	}
	// The handed-back message is due again now, although its lease was an hour.
	c, err := f.b.NewConsumer(f.ctx, "jobs", "w", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	ds, err := c.Fetch(ctx, 10)
	if err != nil {
		t.Fatalf("the handed-back message is not due again: %v", err)
	}
	if len(ds) != 1 || string(ds[0].Body) != "job-1" || ds[0].Deliveries != 2 {
		t.Fatalf("fetched %d deliveries (%+v), want job-1's second", len(ds), ds)
	}
}

// TestWorkerIdempotentConsumer: with a ProcessedStore, a message whose effect
// happened but whose ack was lost (its lease expired) is not processed again.
func TestWorkerIdempotentConsumer(t *testing.T) {
	f := workerFixture(t, 20, SubscriptionConfig{Lease: 200 * time.Millisecond})
	store, err := OpenProcessedLog(t.TempDir(), ProcessedLogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// A first consumer processes every message through the store but never
	// acks: as if it crashed after each effect.
	c, _ := f.b.NewConsumer(f.ctx, "jobs", "w", ConsumerConfig{Name: "crashing", MaxInFlight: 100})
	got := 0
	for got < 20 {
		ds, err := c.Fetch(f.ctx, 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if _, err := store.Process(f.ctx, MessageID(d.Record), func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		got += len(ds)
	}
	var effects atomic.Int64
	w, _ := NewWorker(f.b, "jobs", "w", func(ctx context.Context, d Delivery) error {
		effects.Add(1)
		return nil
	}, WorkerConfig{Processed: store})
	stop := runWorker(t, w)
	eventually(t, 20*time.Second, "the backlog to drain", func() bool { return f.backlog("jobs", "w") == 0 })
	stop()
	if n := effects.Load(); n != 0 {
		t.Fatalf("%d messages processed again after redelivery, want 0", n)
	}
	if st := w.Stats(); st.Processed != 20 {
		t.Fatalf("stats %+v, want the 20 redeliveries acknowledged", st)
	}
}

func TestWorkerConfigLimits(t *testing.T) {
	h := func(context.Context, Delivery) error { return nil }
	for _, c := range []struct {
		cfg   WorkerConfig
		h     Handler
		field string
	}{
		{WorkerConfig{Concurrency: MaxWorkerConcurrency + 1}, h, "WorkerConfig.Concurrency"},
		{WorkerConfig{Concurrency: -1}, h, "WorkerConfig.Concurrency"},
		{WorkerConfig{StopTimeout: 2 * time.Hour}, h, "WorkerConfig.StopTimeout"},
		{WorkerConfig{}, nil, "h"},
	} {
		var ie *InvalidError
		if _, err := NewWorker(nil, "s", "w", c.h, c.cfg); !errors.As(err, &ie) || ie.Field != c.field {
			t.Errorf("%+v: %v, want an InvalidError on %s", c.cfg, err, c.field)
		}
	}
}
