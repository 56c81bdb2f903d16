package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicemq/sluice"
)

// Drill 2's subscriptions: a short lease, so that the redelivery comes soon.
const (
	e2Lease   = time.Second
	e2Backoff = 100 * time.Millisecond
	// e2Wait bounds each fetch; the redelivery comes after about e2Lease.
	e2Wait     = 5 * time.Second
	e2Deadline = 12 * time.Second
	e2Order    = "order-1001"
)

// round is what one subscription of drill 2 measured.
type round struct {
	charges    int
	skipped    int // deliveries the ProcessedLog recognised as repeats
	deliveries int // B's delivery count
	delay      time.Duration
	lateAck    error // A's ack with its old lease, naive round only
}

func (r *run) exactlyOnce() error {
	ctx, cancel := context.WithTimeout(r.ctx, e2Deadline)
	defer cancel()
	dir, err := os.MkdirTemp(r.opts.Dir, "drill-exactly-once-")
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	r.s.closers = append(r.s.closers, func() error { return os.RemoveAll(dir) })
	processed, err := sluice.OpenProcessedLog(filepath.Join(dir, "processed"), sluice.ProcessedLogConfig{
		Window: time.Hour, MaxIDs: 10000, SegmentBytes: 64 << 10, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	r.s.closers = append(r.s.closers, processed.Close) // closers run newest first: before the removal

	stream, err := r.s.stream(ctx, "orders", 1)
	if err != nil {
		return err
	}
	for _, name := range []string{"naive", "idempotent"} {
		err := r.s.subscription(ctx, stream, sluice.SubscriptionConfig{Name: name, Lease: e2Lease, MaxDeliveries: 3,
			BackoffInitial: e2Backoff, BackoffMax: 4 * e2Backoff})
		if err != nil {
			return err
		}
	}

	r.step("1. The order service publishes %s with the idempotency key %q. The answer to its first attempt is lost on the way back, so it publishes again.", e2Order, e2Order)
	msg := sluice.Message{Key: []byte("customer-7"), Body: []byte(`{"order":"order-1001","amount_cents":4200}`), IdempotencyKey: e2Order}
	first, err := r.s.c.Publish(ctx, stream, msg)
	if err != nil {
		return err
	}
	retry, err := r.s.c.Publish(ctx, stream, msg)
	if err != nil {
		return err
	}
	info, err := r.s.c.Stream(ctx, stream)
	if err != nil {
		return err
	}
	r.info("First publish: partition %d, offset %d. The retry: partition %d, offset %d, duplicate=%v. The stream answered the retry with the original's position and stored nothing new.",
		first.Partition, first.Offset, retry.Partition, retry.Offset, retry.Duplicate)
	same := 0
	if retry.Duplicate && retry.Partition == first.Partition && retry.Offset == first.Offset {
		same = 1
	}
	r.figures("The producer's side:",
		Figure{"publishes", 2, "count"},
		Figure{"retries answered with the original position", float64(same), "count"},
		Figure{"messages stored", float64(info.Messages), "msg"})

	r.step("2. Subscription \"naive\" (lease %v, at most 3 deliveries): its handler charges the card, then acknowledges.", e2Lease)
	naive, err := r.crashRound(ctx, stream, "naive", nil)
	if err != nil {
		return err
	}
	lateRejected := 0
	if errors.Is(naive.lateAck, sluice.ErrStaleLease) {
		lateRejected = 1
		r.info("Worker A was paused, not dead (a long GC pause, a frozen VM). It woke up and acknowledged with its old lease: refused (stale lease), so it cannot settle what is now B's delivery.")
	} else {
		r.info("Worker A's late acknowledgment with its old lease was not refused as stale: %v.", naive.lateAck)
	}
	r.figures("The naive handler:",
		Figure{"redelivery delay, naive", ms(naive.delay), "ms"},
		Figure{"deliveries, naive", float64(naive.deliveries), "count"},
		Figure{"charges, naive handler", float64(naive.charges), "count"},
		Figure{"late acks rejected", float64(lateRejected), "count"})

	r.step("3. Subscription \"idempotent\": the same handler, run through a ProcessedLog under the message's id (its idempotency key), which records the id once the charge succeeded, on disk, before the acknowledgment.")
	idem, err := r.crashRound(ctx, stream, "idempotent", processed)
	if err != nil {
		return err
	}
	r.figures("The idempotent handler:",
		Figure{"redelivery delay, idempotent", ms(idem.delay), "ms"},
		Figure{"deliveries, idempotent", float64(idem.deliveries), "count"},
		Figure{"repeats skipped", float64(idem.skipped), "count"},
		Figure{"charges, with ProcessedLog", float64(idem.charges), "count"})

	r.done("The broker delivered the order twice in both subscriptions: it cannot tell a worker that died after charging from one that died before, so it redelivers. Once is a property of the design around it: the idempotency key made the producer's retry harmless (%d message stored for 2 publishes), the ProcessedLog made the redelivery a no-op (%d charge against %d), and the fencing token refused the stale worker's acknowledgment. One gap is left: the charge and the record of its id are two writes, and a crash between them charges twice; recording the id in the charge's own transaction (TxStore) closes it.",
		info.Messages, idem.charges, naive.charges)
	return nil
}

// crashRound plays one subscription: worker A takes the order, charges and is
// killed before it acknowledges; B gets the redelivery once the lease expired.
// With processed, each charge runs through it.
func (r *run) crashRound(ctx context.Context, stream, sub string, processed *sluice.ProcessedLog) (round, error) {
	var out round
	handle := func(d sluice.Delivery) (ran bool, err error) {
		charge := func(context.Context) error { out.charges++; return nil }
		if processed == nil {
			return true, charge(ctx)
		}
		return processed.Process(ctx, sluice.MessageID(d.Record), charge)
	}
	a, err := r.s.consumer(ctx, stream, sub, sub+"-worker-a", 1)
	if err != nil {
		return out, err
	}
	b, err := r.s.consumer(ctx, stream, sub, sub+"-worker-b", 1)
	if err != nil {
		return out, err
	}
	da, err := fetchOne(ctx, a, "worker A")
	if err != nil {
		return out, err
	}
	received := time.Now()
	if _, err := handle(da); err != nil {
		return out, err
	}
	r.info("Worker A received the order (delivery %d, lease %d) and charged the card (charges: %d). It is killed before it acknowledges: no ack, no nack; its consumer is simply gone.",
		da.Deliveries, da.Lease, out.charges)

	db, err := fetchOne(ctx, b, "worker B (the redelivery)")
	if err != nil {
		return out, err
	}
	out.delay, out.deliveries = time.Since(received), db.Deliveries
	ran, err := handle(db)
	if err != nil {
		return out, err
	}
	if ran {
		r.info("After %v (the lease, then the first retry's backoff) worker B received it again: delivery %d, lease %d. It charged the card (charges: %d).",
			out.delay.Round(time.Millisecond), db.Deliveries, db.Lease, out.charges)
	} else {
		out.skipped++
		r.info("After %v (the lease, then the first retry's backoff) worker B received it again: delivery %d, lease %d. The ProcessedLog knew its id, so the charge did not run again (charges: %d).",
			out.delay.Round(time.Millisecond), db.Deliveries, db.Lease, out.charges)
	}
	if processed == nil {
		out.lateAck = a.Ack(ctx, da)
	}
	if err := b.Ack(ctx, db); err != nil {
		return out, fmt.Errorf("worker B: ack: %w", err)
	}
	return out, nil
}

// fetchOne waits up to e2Wait for one delivery.
func fetchOne(ctx context.Context, c sluice.Consumer, who string) (sluice.Delivery, error) {
	fctx, cancel := context.WithTimeout(ctx, e2Wait)
	defer cancel()
	ds, err := c.Fetch(fctx, 1)
	if err != nil {
		if ctx.Err() == nil && fctx.Err() != nil {
			return sluice.Delivery{}, fmt.Errorf("drill: %s: no delivery within %v", who, e2Wait)
		}
		return sluice.Delivery{}, fmt.Errorf("%s: %w", who, err)
	}
	if len(ds) != 1 {
		return sluice.Delivery{}, fmt.Errorf("drill: %s: %d deliveries, want 1", who, len(ds))
	}
	return ds[0], nil
}
