package sluice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventually polls cond every few milliseconds until it holds, and fails the test
// if it does not within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// streamInfo returns the stream's info or fails the test.
func (f *fixture) streamInfo(name string) StreamInfo {
	f.t.Helper()
	info, err := f.b.Stream(f.ctx, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return info
}

// checkBodies reads partition part from its first offset and checks that it
// holds exactly the bodies want, in order: no acknowledged message lost, none added.
func (f *fixture) checkBodies(stream string, part int, want []string) {
	f.t.Helper()
	pi := f.streamInfo(stream).Partitions[part]
	if got := pi.HighWatermark - pi.StartOffset; got != int64(len(want)) {
		f.t.Fatalf("partition %d holds %d messages (%+v), want the %d acknowledged", part, got, pi, len(want))
	}
	for i, rec := range f.readN(stream, part, Earliest(), len(want)) {
		if rec.Offset != pi.StartOffset+int64(i) || string(rec.Body) != want[i] {
			f.t.Fatalf("partition %d record %d: offset %d body %q, want offset %d body %q",
				part, i, rec.Offset, rec.Body, pi.StartOffset+int64(i), want[i])
		}
	}
}

// asFull returns err as a *StreamFullError, or fails the test.
func asFull(t *testing.T, err error) *StreamFullError {
	t.Helper()
	var fe *StreamFullError
	if !errors.Is(err, ErrStreamFull) || !errors.As(err, &fe) {
		t.Fatalf("err %v (%T), want a *StreamFullError matching ErrStreamFull", err, err)
	}
	return fe
}

// wantInvalid fails the test unless err is an *InvalidError naming field.
func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	var ie *InvalidError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &ie) || ie.Field != field {
		t.Errorf("%s: err %v, want an *InvalidError naming %s", what, err, field)
	}
}

func TestBoundsRejectFailsAtOnceStoresNothingAndKeepsAcked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   StreamConfig
		body  int
		limit string
		bound int64
	}{
		{"MaxMessages", StreamConfig{Name: "s", MaxMessages: 10}, 100, "MaxMessages", 10},
		{"MaxBytes", StreamConfig{Name: "s", SegmentBytes: 4096, MaxBytes: 8192}, 1000, "MaxBytes", 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			f.create(tc.cfg)
			var acked []string
			var err error
			for i := 0; i < 1000; i++ {
				body := fmt.Sprintf("%04d|%s", i, bytes.Repeat([]byte{'x'}, tc.body))
				var pos Position
				if pos, err = f.b.Publish(f.ctx, "s", Message{Body: []byte(body)}); err != nil {
					break
				}
				if pos.Offset != int64(len(acked)) {
					t.Fatalf("message %d acknowledged at %+v", i, pos)
				}
				acked = append(acked, body)
			}
			fe := asFull(t, err)
			if fe.Limit != tc.limit || fe.Bound != tc.bound || fe.Stream != "s" || fe.Partition != 0 ||
				fe.RetryAfter <= 0 || fe.Waited != 0 {
				t.Fatalf("%+v: want Limit %s, Bound %d, a positive RetryAfter and no wait", fe, tc.limit, tc.bound)
			}
			if len(acked) == 0 {
				t.Fatal("the first publish was refused")
			}
			if tc.limit == "MaxMessages" && len(acked) != int(tc.bound) {
				t.Fatalf("%d messages acknowledged before the refusal, want %d", len(acked), tc.bound)
			}
			info := f.streamInfo("s")
			if tc.limit == "MaxBytes" && info.Bytes > tc.bound {
				t.Fatalf("partition holds %d bytes, over MaxBytes=%d", info.Bytes, tc.bound)
			}
			// A second refusal; each counts, none waited.
			again := fmt.Sprintf("%04d|%s", 9999, bytes.Repeat([]byte{'y'}, tc.body))
			if _, err := f.b.Publish(f.ctx, "s", Message{Body: []byte(again)}); !errors.Is(err, ErrStreamFull) {
				t.Fatalf("second publish to a full partition: %v", err)
			}
			info = f.streamInfo("s")
			if c := info.Counters; c.Rejected != 2 || c.Blocked != 0 || c.BlockedTime != 0 {
				t.Fatalf("counters %+v, want 2 rejected, none blocked", c)
			}
			if hw := info.Partitions[0].HighWatermark; hw != int64(len(acked)) {
				t.Fatalf("high watermark %d after refusals, want %d: a refused publish stored something", hw, len(acked))
			}
			f.checkBodies("s", 0, acked)
			// The bound holds across a restart, and nothing acknowledged is lost.
			f.reopen()
			asFull(t, func() error { _, err := f.b.Publish(f.ctx, "s", Message{Body: []byte(again)}); return err }())
			f.checkBodies("s", 0, acked)
		})
	}
}

func TestBoundsBlockWaitsThenFailsWithWaited(t *testing.T) {
	f := setup(t)
	const timeout = 200 * time.Millisecond
	f.create(StreamConfig{Name: "s", MaxMessages: 3, Overflow: OverflowBlock, BlockTimeout: timeout})
	var acked []string
	for i := range 3 {
		acked = append(acked, fmt.Sprint(i))
		if _, err := f.b.Publish(f.ctx, "s", Message{Body: []byte(acked[i])}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("late")})
	fe := asFull(t, err)
	if fe.Waited < timeout || fe.Limit != "MaxMessages" || fe.Bound != 3 || fe.RetryAfter <= 0 {
		t.Fatalf("%+v: want Waited >= %v at MaxMessages=3 with a RetryAfter", fe, timeout)
	}
	c := f.streamInfo("s").Counters
	if c.Blocked != 1 || c.BlockedTime < timeout || c.Rejected != 1 {
		t.Fatalf("counters %+v: want 1 blocked for >= %v, then rejected", c, timeout)
	}
	f.checkBodies("s", 0, acked)
}

// workStream creates a RetainWork stream with one subscription and a consumer.
func workStream(f *fixture, cfg StreamConfig) Consumer {
	f.t.Helper()
	cfg.Retention.Policy = RetainWork
	f.create(cfg)
	if _, err := f.b.CreateSubscription(f.ctx, cfg.Name, SubscriptionConfig{Name: "w", Lease: time.Minute}); err != nil {
		f.t.Fatal(err)
	}
	c, err := f.b.NewConsumer(f.ctx, cfg.Name, "w", ConsumerConfig{MaxInFlight: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// fetchAll fetches exactly n deliveries, in offset order.
func fetchAll(f *fixture, c Consumer, n int) []Delivery {
	f.t.Helper()
	var out []Delivery
	for len(out) < n {
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		ds, err := c.Fetch(ctx, n-len(out))
		cancel()
		if err != nil {
			f.t.Fatalf("fetched %d of %d: %v", len(out), n, err)
		}
		out = append(out, ds...)
	}
	for i := 1; i < len(out); i++ {
		if out[i].Offset <= out[i-1].Offset {
			f.t.Fatalf("deliveries out of order: %d after %d", out[i].Offset, out[i-1].Offset)
		}
	}
	return out
}

// TestBoundsWorkRetentionCountsUnsettled: under RetainWork, MaxMessages counts
// the messages not settled below the lowest unsettled one, so room frees exactly
// as the oldest work is acknowledged, and a message acknowledged out of order
// frees nothing until those before it are settled.
func TestBoundsWorkRetentionCountsUnsettled(t *testing.T) {
	f := setup(t)
	c := workStream(f, StreamConfig{Name: "jobs", MaxMessages: 4})
	pub := func() error {
		_, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte("job")})
		return err
	}
	for range 4 {
		if err := pub(); err != nil {
			t.Fatal(err)
		}
	}
	asFull(t, pub())
	ds := fetchAll(f, c, 4) // in flight: still unsettled
	asFull(t, pub())
	if err := c.Ack(f.ctx, ds[3]); err != nil {
		t.Fatal(err)
	}
	asFull(t, pub()) // offsets 0..2 are unsettled: the floor has not moved
	if err := c.Ack(f.ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	if err := pub(); err != nil {
		t.Fatalf("after the oldest message was acknowledged: %v", err)
	}
	asFull(t, pub())
	for _, d := range ds[1:3] {
		if err := c.Ack(f.ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// Settled: 0..3; unsettled: offset 4. Three more fit.
	for i := range 3 {
		if err := pub(); err != nil {
			t.Fatalf("publish %d after acknowledging 0..3: %v", i, err)
		}
	}
	asFull(t, pub())
}

func TestBoundsBlockedPublishEntersWhenWorkIsAcked(t *testing.T) {
	f := setup(t)
	c := workStream(f, StreamConfig{Name: "jobs", MaxMessages: 4, Overflow: OverflowBlock, BlockTimeout: 30 * time.Second})
	for i := range 4 {
		if _, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		pos Position
		err error
	}
	done := make(chan result, 1)
	go func() {
		pos, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte("blocked")})
		done <- result{pos, err}
	}()
	eventually(t, 5*time.Second, "the fifth publish never blocked", func() bool {
		return f.streamInfo("jobs").Counters.Blocked == 1
	})
	// The consumer works concurrently: take everything, acknowledge the oldest.
	ds := fetchAll(f, c, 4)
	select {
	case r := <-done:
		t.Fatalf("publish returned %+v, %v while every message was unsettled", r.pos, r.err)
	default:
	}
	if err := c.Ack(f.ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked publish did not enter after a message was acknowledged")
	}
	if r.err != nil || r.pos.Offset != 4 {
		t.Fatalf("blocked publish: %+v, %v; want offset 4", r.pos, r.err)
	}
	cn := f.streamInfo("jobs").Counters
	if cn.Blocked != 1 || cn.BlockedTime <= 0 || cn.Rejected != 0 {
		t.Fatalf("counters %+v: want one publish blocked for a while, none rejected", cn)
	}
	// The message that waited is delivered like any other.
	got := fetchAll(f, c, 1)
	if got[0].Offset != 4 || string(got[0].Body) != "blocked" {
		t.Fatalf("delivered %d %q", got[0].Offset, got[0].Body)
	}
}

func TestBoundsBlockedPublishEndsWithItsContext(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", MaxMessages: 1, Overflow: OverflowBlock, BlockTimeout: MaxBlockTimeout})
	if _, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("only")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.b.Publish(ctx, "s", Message{Body: []byte("never")})
		done <- err
	}()
	eventually(t, 5*time.Second, "the publish never blocked", func() bool {
		return f.streamInfo("s").Counters.Blocked == 1
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked publish after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked publish outlived its context")
	}
	f.checkBodies("s", 0, []string{"only"})
}

func TestBoundsOverflowDropOldestOnlyWithLimits(t *testing.T) {
	f := setup(t)
	_, err := f.b.CreateStream(f.ctx, StreamConfig{Name: "w", Retention: Retention{Policy: RetainWork}, Overflow: OverflowDropOldest})
	wantInvalid(t, "create work + drop_oldest", err, "StreamConfig.Overflow")
	if _, err := f.b.Stream(f.ctx, "w"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("a refused stream exists: %v", err)
	}
	f.create(StreamConfig{Name: "work", Retention: Retention{Policy: RetainWork}})
	_, err = f.b.UpdateStream(f.ctx, StreamConfig{Name: "work", Overflow: OverflowDropOldest})
	wantInvalid(t, "update work stream to drop_oldest", err, "StreamConfig.Overflow")
	f.create(StreamConfig{Name: "log", Overflow: OverflowDropOldest})
	_, err = f.b.UpdateStream(f.ctx, StreamConfig{Name: "log", Retention: Retention{Policy: RetainWork}})
	wantInvalid(t, "update drop_oldest stream to work", err, "StreamConfig.Overflow")
	if got := f.streamInfo("work").Config; got.Overflow != OverflowReject {
		t.Fatalf("work stream changed by a refused update: %+v", got)
	}
	if got := f.streamInfo("log").Config; got.Retention.Policy == RetainWork {
		t.Fatalf("drop_oldest stream changed by a refused update: %+v", got)
	}
}

// TestBoundsOverflowDropOldestKeepsNewestWithinBound: under drop_oldest no
// publish fails, the partition is within its bounds after every publish, the
// dropped count is what went, and the newest messages are all there.
func TestBoundsOverflowDropOldestKeepsNewestWithinBound(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     StreamConfig
		n       int
		batch   int
		sizes   []int // body sizes, in turn
		minKept int64
	}{
		{"MaxMessages", StreamConfig{MaxMessages: 100, SegmentBytes: 4096}, 1000, 1, []int{100}, 20},
		{"MaxMessages batches", StreamConfig{MaxMessages: 100, SegmentBytes: 4096}, 1000, 7, []int{100}, 20},
		{"MaxBytes", StreamConfig{MaxBytes: 3 * 4096, SegmentBytes: 4096}, 1000, 1, []int{100}, 20},
		// A bound smaller than a segment holds: the partition must not keep
		// more than MaxMessages because they all sit in the active segment.
		{"MaxMessages below one segment", StreamConfig{MaxMessages: 10}, 200, 1, []int{100}, 1},
		// A message larger than the room left in the active segment.
		{"MaxBytes with large messages", StreamConfig{MaxBytes: 2 * 4096, SegmentBytes: 4096}, 60, 1, []int{3900, 5000, 100}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			cfg := tc.cfg
			cfg.Name, cfg.Overflow = "s", OverflowDropOldest
			f.create(cfg)
			var bodies []string
			for i := 0; i < tc.n; i += tc.batch {
				var msgs []Message
				for j := i; j < min(i+tc.batch, tc.n); j++ {
					bodies = append(bodies, fmt.Sprintf("%04d|%s", j, bytes.Repeat([]byte{'a' + byte(j%26)}, tc.sizes[j%len(tc.sizes)])))
					msgs = append(msgs, Message{Body: []byte(bodies[j])})
				}
				pos, err := f.b.PublishBatch(f.ctx, "s", msgs)
				if err != nil {
					t.Fatalf("publish %d under drop_oldest: %v", i, err)
				}
				if pos[0].Offset != int64(i) {
					t.Fatalf("publish %d at %+v", i, pos[0])
				}
				info := f.streamInfo("s")
				if cfg.MaxMessages > 0 && info.Messages > cfg.MaxMessages {
					t.Fatalf("after publish %d: %d messages, over MaxMessages=%d (%+v)", i, info.Messages, cfg.MaxMessages, info.Partitions[0])
				}
				if cfg.MaxBytes > 0 && info.Bytes > cfg.MaxBytes {
					t.Fatalf("after publish %d: %d bytes, over MaxBytes=%d (%+v)", i, info.Bytes, cfg.MaxBytes, info.Partitions[0])
				}
			}
			info := f.streamInfo("s")
			p := info.Partitions[0]
			if p.HighWatermark != int64(tc.n) || p.StartOffset == 0 {
				t.Fatalf("after %d publishes: %+v", tc.n, p)
			}
			if c := info.Counters; c.Dropped != p.StartOffset || c.Rejected != 0 || c.Blocked != 0 {
				t.Fatalf("counters %+v: want Dropped = start offset %d, nothing rejected or blocked", c, p.StartOffset)
			}
			// Whole segments go: at least the newest full segment's worth is kept.
			if kept := p.HighWatermark - p.StartOffset; kept < tc.minKept {
				t.Fatalf("only %d messages kept", kept)
			}
			f.checkBodies("s", 0, bodies[p.StartOffset:])
		})
	}
}

// TestBoundsRejectedProducerGetsInAfterRetryAfter: a producer refused by a full
// partition of a stream with MaxAge that waits RetryAfter finds room, once
// retention has run: the hint must not promise room that never comes.
func TestBoundsRejectedProducerGetsInAfterRetryAfter(t *testing.T) {
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	b, err := Open(t.TempDir(), &Options{now: clk.now, RetentionInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const maxAge = 10 * time.Second
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "s", MaxMessages: 3, Retention: Retention{MaxAge: maxAge}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.Publish(ctx, "s", Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(2 * time.Second)
	_, err = b.Publish(ctx, "s", Message{Body: []byte("refused")})
	fe := asFull(t, err)
	if fe.RetryAfter <= 0 || fe.RetryAfter > maxAge {
		t.Fatalf("RetryAfter %v, want in (0, MaxAge=%v]", fe.RetryAfter, maxAge)
	}
	clk.advance(fe.RetryAfter + time.Millisecond)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := b.Publish(ctx, "s", Message{Body: []byte("after RetryAfter")})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrStreamFull) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			info, _ := b.Stream(ctx, "s")
			t.Fatalf("still full %v after waiting RetryAfter=%v and every message older than MaxAge=%v: %v (%+v)",
				time.Since(deadline.Add(-3*time.Second)).Round(time.Second), fe.RetryAfter, maxAge, err, info.Partitions)
		}
		time.Sleep(10 * time.Millisecond) // retention runs every 10 ms
	}
}

// TestBoundsMessageLargerThanMaxBytesIsInvalid: a message that can never fit in
// a partition is an invalid argument naming it, not a full stream to retry.
func TestBoundsMessageLargerThanMaxBytesIsInvalid(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", SegmentBytes: 4096, MaxBytes: 8192})
	_, err := f.b.Publish(f.ctx, "s", Message{Body: make([]byte, 9000)})
	if errors.Is(err, ErrStreamFull) {
		t.Fatalf("a message larger than MaxBytes: %v, want ErrInvalid, not a full stream to retry", err)
	}
	wantInvalid(t, "Publish of 9000 bytes with MaxBytes=8192", err, "Message")
	_, err = f.b.PublishBatch(f.ctx, "s", []Message{{Body: make([]byte, 5000)}, {Body: make([]byte, 5000)}})
	wantInvalid(t, "PublishBatch of 10000 bytes with MaxBytes=8192", err, "msgs")
	if n := f.total("s"); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}

func TestBoundsPublishBatchRejectIsAllOrNothing(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", Partitions: 2, MaxMessages: 10})
	batch := func(n int, part func(i int) int, tag string) []Message {
		msgs := make([]Message, n)
		for i := range msgs {
			msgs[i] = Message{Body: []byte(fmt.Sprintf("%s-%d", tag, i)), Partition: ToPartition(part(i))}
		}
		return msgs
	}
	p0 := func(int) int { return 0 }
	if _, err := f.b.PublishBatch(f.ctx, "s", batch(7, p0, "a")); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{}, {}}
	for i := range 7 {
		want[0] = append(want[0], fmt.Sprintf("a-%d", i))
	}
	// Five to partition 0 (three fit) and five to partition 1 (all fit): refused whole.
	pos, err := f.b.PublishBatch(f.ctx, "s", batch(10, func(i int) int { return i % 2 }, "b"))
	fe := asFull(t, err)
	if fe.Partition != 0 || fe.Limit != "MaxMessages" || fe.Bound != 10 || pos != nil {
		t.Fatalf("%+v, positions %v: want partition 0 at MaxMessages=10 and no positions", fe, pos)
	}
	info := f.streamInfo("s")
	if info.Partitions[0].HighWatermark != 7 || info.Partitions[1].HighWatermark != 0 {
		t.Fatalf("a refused batch stored something: %+v", info.Partitions)
	}
	if info.Counters.Rejected != 1 {
		t.Fatalf("counters %+v: want the batch counted once as rejected", info.Counters)
	}
	// More messages than MaxMessages can never fit: invalid, not full.
	_, err = f.b.PublishBatch(f.ctx, "s", batch(11, func(int) int { return 1 }, "c"))
	if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrStreamFull) {
		t.Fatalf("batch of 11 with MaxMessages=10: %v, want ErrInvalid", err)
	}
	// What fits is stored.
	pos, err = f.b.PublishBatch(f.ctx, "s", batch(3, p0, "d"))
	if err != nil || pos[0].Offset != 7 || pos[2].Offset != 9 {
		t.Fatalf("batch that fits: %v, %v", pos, err)
	}
	for i := range 3 {
		want[0] = append(want[0], fmt.Sprintf("d-%d", i))
	}
	f.checkBodies("s", 0, want[0])
	f.checkBodies("s", 1, want[1])
}

func TestBoundsConfigValidationNamesField(t *testing.T) {
	f := setup(t)
	work := Retention{Policy: RetainWork}
	for _, tc := range []struct {
		name  string
		cfg   StreamConfig
		field string
	}{
		{"MaxBytes under two segments", StreamConfig{SegmentBytes: 4096, MaxBytes: 8191}, "StreamConfig.MaxBytes"},
		{"MaxBytes under two default segments", StreamConfig{MaxBytes: 8000}, "StreamConfig.MaxBytes"},
		{"MaxBytes negative", StreamConfig{MaxBytes: -1}, "StreamConfig.MaxBytes"},
		{"MaxBytes too large", StreamConfig{MaxBytes: MaxMaxBytes + 1}, "StreamConfig.MaxBytes"},
		{"MaxMessages negative", StreamConfig{MaxMessages: -1}, "StreamConfig.MaxMessages"},
		{"MaxMessages too large", StreamConfig{MaxMessages: MaxMaxMessages + 1}, "StreamConfig.MaxMessages"},
		{"Overflow unknown", StreamConfig{Overflow: "spill"}, "StreamConfig.Overflow"},
		{"Overflow drop_oldest with work", StreamConfig{Overflow: OverflowDropOldest, Retention: work}, "StreamConfig.Overflow"},
		{"BlockTimeout negative", StreamConfig{BlockTimeout: -time.Second}, "StreamConfig.BlockTimeout"},
		{"BlockTimeout under 1ms", StreamConfig{BlockTimeout: time.Millisecond - 1}, "StreamConfig.BlockTimeout"},
		{"BlockTimeout too long", StreamConfig{BlockTimeout: MaxBlockTimeout + 1}, "StreamConfig.BlockTimeout"},
		{"DedupeWindow negative", StreamConfig{DedupeWindow: -time.Minute}, "StreamConfig.DedupeWindow"},
		{"DedupeWindow too short", StreamConfig{DedupeWindow: MinDedupeWindow - 1}, "StreamConfig.DedupeWindow"},
		{"DedupeWindow too long", StreamConfig{DedupeWindow: MaxDedupeWindow + 1}, "StreamConfig.DedupeWindow"},
		{"DedupeMaxKeys negative", StreamConfig{DedupeMaxKeys: -1}, "StreamConfig.DedupeMaxKeys"},
		{"DedupeMaxKeys too many", StreamConfig{DedupeMaxKeys: MaxDedupeMaxKeys + 1}, "StreamConfig.DedupeMaxKeys"},
	} {
		tc.cfg.Name = "s"
		wantInvalid(t, tc.name+": Validate", tc.cfg.Validate(), tc.field)
		_, err := f.b.CreateStream(f.ctx, tc.cfg)
		wantInvalid(t, tc.name+": CreateStream", err, tc.field)
	}
	if list, _ := f.b.ListStreams(f.ctx); len(list) != 0 {
		t.Fatalf("refused configs created streams: %+v", list)
	}
	// The limits themselves are accepted.
	for i, cfg := range []StreamConfig{
		{SegmentBytes: 4096, MaxBytes: 8192},
		{MaxBytes: MaxMaxBytes, MaxMessages: MaxMaxMessages},
		{MaxMessages: 1, Overflow: OverflowBlock, BlockTimeout: time.Millisecond},
		{BlockTimeout: MaxBlockTimeout, DedupeWindow: MinDedupeWindow, DedupeMaxKeys: 1},
		{DedupeWindow: MaxDedupeWindow, DedupeMaxKeys: MaxDedupeMaxKeys, Overflow: OverflowDropOldest},
	} {
		cfg.Name = fmt.Sprintf("ok%d", i)
		if _, err := f.b.CreateStream(f.ctx, cfg); err != nil {
			t.Errorf("config at the limits %+v: %v", cfg, err)
		}
	}
	// UpdateStream checks the same rules against the stream's fixed fields.
	f.create(StreamConfig{Name: "u", SegmentBytes: 4096})
	for _, tc := range []struct {
		cfg   StreamConfig
		field string
	}{
		{StreamConfig{MaxBytes: 8191}, "StreamConfig.MaxBytes"},
		{StreamConfig{MaxMessages: -5}, "StreamConfig.MaxMessages"},
		{StreamConfig{Overflow: "spill"}, "StreamConfig.Overflow"},
		{StreamConfig{BlockTimeout: MaxBlockTimeout + 1}, "StreamConfig.BlockTimeout"},
		{StreamConfig{DedupeWindow: MaxDedupeWindow + 1}, "StreamConfig.DedupeWindow"},
		{StreamConfig{DedupeMaxKeys: MaxDedupeMaxKeys + 1}, "StreamConfig.DedupeMaxKeys"},
	} {
		tc.cfg.Name = "u"
		_, err := f.b.UpdateStream(f.ctx, tc.cfg)
		wantInvalid(t, fmt.Sprintf("update %+v", tc.cfg), err, tc.field)
	}
	if got := f.streamInfo("u").Config; got.MaxBytes != DefaultMaxBytes || got.MaxMessages != DefaultMaxMessages || got.Overflow != OverflowReject {
		t.Fatalf("refused updates changed the config: %+v", got)
	}
}

func TestBoundsUpdateStreamRaisingMaxMessagesLetsProducerIn(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", MaxMessages: 3})
	var acked []string
	pub := func(body string) error {
		_, err := f.b.Publish(f.ctx, "s", Message{Body: []byte(body)})
		if err == nil {
			acked = append(acked, body)
		}
		return err
	}
	for i := range 3 {
		if err := pub(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	asFull(t, pub("refused"))
	if _, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", MaxMessages: 5}); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 5; i++ {
		if err := pub(fmt.Sprint(i)); err != nil {
			t.Fatalf("publish %d after raising MaxMessages to 5: %v", i, err)
		}
	}
	if fe := asFull(t, pub("refused")); fe.Bound != 5 {
		t.Fatalf("%+v: want the new bound 5", fe)
	}
	// Lowering the bound below what is stored refuses publishes but loses nothing.
	if _, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", MaxMessages: 2}); err != nil {
		t.Fatal(err)
	}
	asFull(t, pub("refused"))
	f.checkBodies("s", 0, acked)

	// A producer blocked for room enters as soon as the bound is raised.
	if _, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", Overflow: OverflowBlock, BlockTimeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("waited")})
		done <- err
	}()
	eventually(t, 5*time.Second, "the publish never blocked", func() bool {
		return f.streamInfo("s").Counters.Blocked == 1
	})
	if _, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", MaxMessages: 6}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("blocked publish after raising the bound: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked publish did not enter when the bound was raised")
	}
	f.checkBodies("s", 0, append(acked, "waited"))
}

// TestBoundsBackpressureKeepsMemoryBounded runs producers that offer far more
// than the one slow consumer takes, on a RetainWork stream that blocks when full:
// the producers must be slowed to the consumer's pace, the heap must stay flat,
// the bound must hold, and no acknowledged publish may be lost.
func TestBoundsBackpressureKeepsMemoryBounded(t *testing.T) {
	run, maxMessages := 12*time.Second, int64(5000)
	if testing.Short() {
		run, maxMessages = 3*time.Second, 1000
	}
	const (
		producers = 8
		parts     = 2
		bodyBytes = 1 << 10
		heapBound = 64 << 20
		// The consumer takes perTick messages every tick: 500 a second, a tenth
		// or less of what the producers publish when nothing holds them back
		// (about 7000 a second with the race detector on two cores).
		perTick = 5
		tick    = 10 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), run+time.Minute)
	defer cancel()
	b, err := Open(t.TempDir(), &Options{RetentionInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "bp", Partitions: parts, Retention: Retention{Policy: RetainWork},
		MaxMessages: maxMessages, MaxBytes: 64 << 20, SegmentBytes: 1 << 20, Overflow: OverflowBlock,
		BlockTimeout: time.Second, Sync: SyncNever}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "bp", SubscriptionConfig{Name: "slow", Lease: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	cons, err := b.NewConsumer(ctx, "bp", "slow", ConsumerConfig{MaxInFlight: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()

	// acked[p][off] is the id (1-based) of the message acknowledged there, and
	// consumed[p][off] the id the consumer read there.
	var mu sync.Mutex
	acked := make([][]uint64, parts)
	consumed := make([][]uint64, parts)
	set := func(s [][]uint64, p int, off int64, id uint64) {
		for int64(len(s[p])) <= off {
			s[p] = append(s[p], 0)
		}
		s[p][off] = id
	}
	body := func(id uint64) []byte {
		b := make([]byte, bodyBytes)
		copy(b, fmt.Sprintf("%016x|", id))
		for i := 17; i < len(b); i++ {
			b[i] = byte(id >> (8 * (i % 8)))
		}
		return b
	}
	idOf := func(b []byte) (uint64, bool) {
		var id uint64
		if len(b) != bodyBytes {
			return 0, false
		}
		if _, err := fmt.Sscanf(string(b[:17]), "%016x|", &id); err != nil {
			return 0, false
		}
		return id, bytes.Equal(b, body(id))
	}

	stop := make(chan struct{})
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	var wg sync.WaitGroup
	var published, timeouts atomic.Int64
	for w := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := uint64(w)<<40 | seq + 1
				pos, err := b.Publish(pctx, "bp", Message{Body: body(id)})
				switch {
				case err == nil:
					published.Add(1)
					mu.Lock()
					set(acked, pos.Partition, pos.Offset, id)
					mu.Unlock()
				case errors.Is(err, ErrStreamFull):
					timeouts.Add(1) // stored nothing: retry with a new id
				case pctx.Err() != nil:
					return
				default:
					t.Errorf("producer %d: %v", w, err)
					return
				}
			}
		}()
	}
	var taken atomic.Int64
	consErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				consErr <- nil
				return
			case <-tk.C:
			}
			fctx, fcancel := context.WithTimeout(ctx, tick)
			ds, err := cons.Fetch(fctx, perTick)
			fcancel()
			if err != nil && fctx.Err() == nil {
				consErr <- err
				return
			}
			for _, d := range ds {
				id, ok := idOf(d.Body)
				if !ok {
					consErr <- fmt.Errorf("delivery %d/%d holds a garbled body", d.Partition, d.Offset)
					return
				}
				mu.Lock()
				set(consumed, d.Partition, d.Offset, id)
				mu.Unlock()
				if err := cons.Ack(ctx, d); err != nil {
					consErr <- err
					return
				}
				taken.Add(1)
			}
		}
	}()

	// Sample the heap: every sample checks the bound; every fifth follows a GC
	// and is kept to compare the start of the run with its end.
	var settled []uint64
	var peak uint64
	start := time.Now()
	for i := 0; time.Since(start) < run; i++ {
		time.Sleep(100 * time.Millisecond) // the sampling period, not synchronisation
		if i%5 == 4 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if i%5 == 4 {
			settled = append(settled, ms.HeapInuse)
		}
		if ms.HeapInuse > heapBound {
			t.Errorf("heap in use %d MiB after %v, over %d MiB", ms.HeapInuse>>20, time.Since(start).Round(time.Second), heapBound>>20)
			break
		}
		// The bound holds: high watermark (read first) less the floor (read after,
		// so no lower) is at most MaxMessages in every partition.
		info, err := b.Stream(ctx, "bp")
		if err != nil {
			t.Fatal(err)
		}
		sub, err := b.Subscription(ctx, "bp", "slow")
		if err != nil {
			t.Fatal(err)
		}
		for p, pi := range info.Partitions {
			if n := pi.HighWatermark - sub.Partitions[p].Floor; n > maxMessages {
				t.Errorf("partition %d holds %d unsettled messages, over MaxMessages=%d", p, n, maxMessages)
			}
		}
	}
	close(stop)
	pcancel()
	wg.Wait()
	if err := <-consErr; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := b.Stream(ctx, "bp")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: %d published, %d consumed, %d publishes timed out; counters %+v; peak heap %d MiB, settled samples (MiB) %v",
		run, published.Load(), taken.Load(), timeouts.Load(), info.Counters, peak>>20, mib(settled))
	if info.Counters.Blocked == 0 {
		t.Fatal("no publish ever blocked: the test did not exercise backpressure")
	}
	if published.Load() < parts*maxMessages || taken.Load() == 0 {
		t.Fatalf("%d published, %d consumed: the stream never filled", published.Load(), taken.Load())
	}
	if n := len(settled); n >= 6 {
		first, last := slices.Max(settled[:n/3]), slices.Max(settled[n-n/3:])
		if last > first+first/2+8<<20 {
			t.Errorf("heap grows under sustained backpressure: %d MiB at the start, %d MiB at the end", first>>20, last>>20)
		}
	}

	// Every acknowledged publish was either read by the consumer at its position,
	// or is still stored there.
	for p := range parts {
		firstLeft := int64(-1)
		for off, id := range acked[p] {
			if id == 0 {
				continue
			}
			if off < len(consumed[p]) && consumed[p][off] != 0 {
				if consumed[p][off] != id {
					t.Fatalf("%d/%d: acknowledged id %x, consumer read id %x", p, off, id, consumed[p][off])
				}
				continue
			}
			if firstLeft < 0 {
				firstLeft = int64(off)
			}
		}
		if firstLeft < 0 {
			continue
		}
		r, err := b.NewReader(ctx, "bp", ReaderConfig{Partition: p, Start: AtOffset(firstLeft)})
		if err != nil {
			t.Fatal(err)
		}
		for off := firstLeft; off < int64(len(acked[p])); off++ {
			rec, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("%d/%d: %v", p, off, err)
			}
			if rec.Offset != off {
				t.Fatalf("partition %d: offset %d read where %d was acknowledged and not consumed", p, rec.Offset, off)
			}
			id, ok := idOf(rec.Body)
			if !ok || (acked[p][off] != 0 && id != acked[p][off]) {
				t.Fatalf("%d/%d: acknowledged id %x, stored %x (valid %v)", p, off, acked[p][off], id, ok)
			}
		}
		r.Close()
	}
}

func mib(xs []uint64) []uint64 {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		out[i] = x >> 20
	}
	return out
}
