package sluice

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

func openProcessed(t *testing.T, dir string, cfg ProcessedLogConfig) *ProcessedLog {
	t.Helper()
	l, err := OpenProcessedLog(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// processOnce runs Process with a handler that counts its runs in runs[id].
func processOnce(t *testing.T, s ProcessedStore, id string, runs map[string]int) bool {
	t.Helper()
	ran, err := s.Process(context.Background(), id, func(context.Context) error {
		runs[id]++
		return nil
	})
	if err != nil {
		t.Fatalf("Process(%q): %v", id, err)
	}
	return ran
}

// A consumer crashes after its effect and before its ack, nacks after recording,
// fails before its effect, restarts, and sees producer duplicates that the
// stream's dedupe forgot: every message still has exactly one effect.
func TestProcessedLogWithBrokerOneEffectPerMessageDespiteRedeliveries(t *testing.T) {
	f := setup(t)
	// DedupeMaxKeys 1: a retried publish arriving after another key is stored
	// twice, as one arriving after the DedupeWindow would be.
	f.create(StreamConfig{Name: "orders", Partitions: 2, DedupeMaxKeys: 1})
	if _, err := f.b.CreateSubscription(f.ctx, "orders", SubscriptionConfig{Name: "billing", Lease: 200 * time.Millisecond,
		MaxDeliveries: 100, BackoffInitial: time.Millisecond, BackoffMax: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	const n = 30
	stored := 0
	for i := range n {
		m := Message{Key: fmt.Appendf(nil, "customer-%d", i%7), Body: fmt.Appendf(nil, "order-%d", i)}
		if i%2 == 0 {
			m.IdempotencyKey = fmt.Sprintf("order-%d", i)
		}
		if _, err := f.b.Publish(f.ctx, "orders", m); err != nil {
			t.Fatal(err)
		}
		stored++
	}
	for _, i := range []int{0, 4, 8} { // the producer retries three publishes late
		pos, err := f.b.Publish(f.ctx, "orders", Message{Body: fmt.Appendf(nil, "order-%d", i), IdempotencyKey: fmt.Sprintf("order-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if pos.Duplicate {
			t.Fatalf("retry of order-%d caught by the stream's dedupe; the test needs it stored twice", i)
		}
		stored++
	}

	dir := filepath.Join(t.TempDir(), "processed")
	effects := map[string]int{} // by order
	errFlaky := errors.New("payment service unavailable")
	var (
		acked       = map[[2]int64]bool{} // partition, offset
		seen        = map[[2]int64]bool{}
		redelivered int // deliveries with Deliveries > 1
		skipped     int // Process calls that did not run fn
		unsettled   int // first deliveries left for a redelivery: crashed or nacked
		afterRecord int // of them, those whose id was recorded
	)
	// run consumes until stop says so; on a first delivery it crashes after the
	// effect (no ack), nacks after recording, or fails before the effect.
	run := func(stop func() bool) {
		pl := openProcessed(t, dir, ProcessedLogConfig{})
		defer pl.Close()
		c, err := f.b.NewConsumer(f.ctx, "orders", "billing", ConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for !stop() {
			ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
			ds, err := c.Fetch(ctx, 10)
			cancel()
			if err != nil {
				t.Fatalf("fetch: %v (acked %d of %d)", err, len(acked), stored)
			}
			for _, d := range ds {
				at := [2]int64{int64(d.Partition), d.Offset}
				seen[at] = true
				if d.Deliveries > 1 {
					redelivered++
				}
				behaviour := -1 // process and ack
				if d.Deliveries == 1 {
					behaviour = int(d.Offset % 4)
				}
				ran, err := pl.Process(f.ctx, MessageID(d.Record), func(context.Context) error {
					if behaviour == 2 {
						return errFlaky // before any effect
					}
					effects[string(d.Body)]++
					return nil
				})
				switch {
				case errors.Is(err, errFlaky):
					if !ran {
						t.Fatal("fn failed but Process says it did not run")
					}
					if err := c.Nack(f.ctx, d, NackOptions{Reason: err.Error()}); err != nil {
						t.Fatal(err)
					}
					unsettled++
					continue
				case err != nil:
					t.Fatal(err)
				case !ran:
					skipped++
				}
				switch behaviour {
				case 0: // crash after the effect: no ack, the lease expires
					unsettled++
					afterRecord++
				case 1: // a failure after the effect was recorded
					if err := c.Nack(f.ctx, d, NackOptions{Reason: "ack lost"}); err != nil {
						t.Fatal(err)
					}
					unsettled++
					afterRecord++
				default:
					if err := c.Ack(f.ctx, d); err == nil {
						acked[at] = true
					} else if !errors.Is(err, ErrStaleLease) {
						t.Fatal(err)
					}
				}
			}
		}
	}
	// First the consumer sees everything once, then it restarts with its
	// ProcessedLog reopened and works through the redeliveries.
	run(func() bool { return len(seen) == stored })
	run(func() bool { return len(acked) == stored })

	for i := range n {
		if got := effects[fmt.Sprintf("order-%d", i)]; got != 1 {
			t.Errorf("order-%d: %d effects, want 1", i, got)
		}
	}
	if len(effects) != n {
		t.Errorf("effects for %d orders, want %d: %v", len(effects), n, effects)
	}
	// The test exercised what it claims to: every crashed or nacked first delivery
	// came back, and the redeliveries after a recorded effect (crash, nack) and
	// one copy of each duplicate publish were skipped.
	if redelivered < unsettled || unsettled < stored/2 {
		t.Fatalf("%d redeliveries for %d unsettled first deliveries of %d messages", redelivered, unsettled, stored)
	}
	if min := afterRecord + stored - n; skipped < min {
		t.Fatalf("%d runs skipped, want at least %d", skipped, min)
	}
	t.Logf("%d messages (%d distinct), %d redeliveries, %d runs skipped", stored, n, redelivered, skipped)
}

func TestProcessedLogReopenKeepsIDs(t *testing.T) {
	dir := t.TempDir()
	runs := map[string]int{}
	l := openProcessed(t, dir, ProcessedLogConfig{})
	for _, id := range []string{"a", "b", "c"} {
		if !processOnce(t, l, id, runs) {
			t.Fatalf("%s did not run the first time", id)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Process(context.Background(), "d", func(context.Context) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Process after Close: %v, want ErrClosed", err)
	}
	l = openProcessed(t, dir, ProcessedLogConfig{})
	if st := l.Stats(); st.IDs != 3 || st.LogBytes == 0 {
		t.Fatalf("after reopen: %+v, want 3 ids and a log", st)
	}
	for _, id := range []string{"a", "b", "c"} {
		if processOnce(t, l, id, runs) {
			t.Fatalf("%s ran again after reopen", id)
		}
	}
	if !processOnce(t, l, "d", runs) {
		t.Fatal("new id d did not run")
	}
	if _, err := OpenProcessedLog(dir, ProcessedLogConfig{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open of the same directory: %v, want ErrLocked", err)
	}
	for id, n := range runs {
		if n != 1 {
			t.Errorf("%s ran %d times", id, n)
		}
	}
}

func init() { crashModes["processed"] = processedChild }

// The child records ids from several goroutines and prints each once Process
// returned; the parent kills it with SIGKILL, reopens the log and checks that
// every printed id is remembered.
func TestProcessedLogKill9KeepsRecordedIDs(t *testing.T) {
	dir := t.TempDir()
	recorded := map[string]bool{}
	for run := range 3 {
		n := 0
		runChild(t, dir, "processed", run, time.Duration(100+100*run)*time.Millisecond, func(id string) {
			recorded[id] = true
			n++
		})
		t.Logf("run %d: %d ids recorded before SIGKILL", run, n)

		l := openProcessed(t, dir, ProcessedLogConfig{})
		if st := l.Stats(); st.IDs < len(recorded) {
			t.Fatalf("%d ids remembered, %d were recorded", st.IDs, len(recorded))
		}
		for id := range recorded {
			ran, err := l.Process(context.Background(), id, func(context.Context) error { return nil })
			if err != nil || ran {
				t.Fatalf("recorded id %s: ran=%v err=%v after kill -9", id, ran, err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(recorded) < 50 {
		t.Fatalf("only %d ids recorded over 3 runs: the test did not exercise the log", len(recorded))
	}
}

// processedChild records ids until it is killed, printing each once recorded.
func processedChild(dir, run string) {
	l, err := OpenProcessedLog(dir, ProcessedLogConfig{SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	os.Stdout.WriteString("ready\n")
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%s-w%d-%d", run, w, i)
				if _, err := l.Process(context.Background(), id, func(context.Context) error { return nil }); err != nil {
					fmt.Fprintln(os.Stderr, "child process:", err)
					os.Exit(2)
				}
				out.Lock()
				os.Stdout.WriteString(id + "\n") // one write: a line is whole or absent
				out.Unlock()
			}
		}()
	}
	select {}
}

// A power failure keeps every id recorded before it, whatever it does to the
// writes in flight, and the log reopens cleanly after it.
func TestProcessedLogPowerLossKeepsRecordedIDs(t *testing.T) {
	fsys := vfs.NewMem()
	cfg := ProcessedLogConfig{SegmentBytes: MinProcessedSegmentBytes, fs: fsys, Logger: slog.New(slog.DiscardHandler)}
	recorded := map[string]bool{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for run := range 5 {
		l, err := OpenProcessedLog("/processed", cfg)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for id := range recorded {
			if ran, err := l.Process(context.Background(), id, func(context.Context) error { return nil }); ran || err != nil {
				t.Fatalf("run %d: recorded id %s: ran=%v err=%v after the power failure", run, id, ran, err)
			}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var enough sync.Once
		crash, reached := make(chan struct{}), make(chan struct{})
		target := len(recorded) + 40
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-crash:
						return
					default:
					}
					id := fmt.Sprintf("r%d-w%d-%d", run, w, i)
					if _, err := l.Process(context.Background(), id, func(context.Context) error { return nil }); err != nil {
						return // the crash reached this record
					}
					mu.Lock()
					recorded[id] = true
					if len(recorded) >= target {
						enough.Do(func() { close(reached) })
					}
					mu.Unlock()
				}
			})
		}
		<-reached // crash while the workers record more
		fsys.Crash(rng)
		close(crash)
		wg.Wait()
		l.Close() // fails: the files are gone with the crash
	}
}

// After a failed sync the log runs no handler until it is reopened: an effect it
// could not record would be repeated by every redelivery.
func TestProcessedLogStopsAfterAFailedWrite(t *testing.T) {
	fsys := vfs.NewMem()
	cfg := ProcessedLogConfig{fs: fsys, Logger: slog.New(slog.DiscardHandler)}
	l, err := OpenProcessedLog("/processed", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	runs := map[string]int{}
	processOnce(t, l, "a", runs)
	fsys.SetSyncError(errors.New("EIO"))
	ran, err := l.Process(context.Background(), "b", func(context.Context) error { runs["b"]++; return nil })
	if !ran || !errors.Is(err, ErrPartitionFailed) {
		t.Fatalf("failed sync: ran=%v err=%v, want ran and ErrPartitionFailed", ran, err)
	}
	fsys.SetSyncError(nil)
	ran, err = l.Process(context.Background(), "c", func(context.Context) error { runs["c"]++; return nil })
	if ran || runs["c"] != 0 || !errors.Is(err, ErrPartitionFailed) {
		t.Fatalf("after the failure: ran=%v err=%v, want nothing run and ErrPartitionFailed", ran, err)
	}
	l.Close()
	l, err = OpenProcessedLog("/processed", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if processOnce(t, l, "a", runs) || !processOnce(t, l, "c", runs) {
		t.Fatal("after reopen: want a remembered and c run")
	}
}

func TestProcessedLogWindowForgetsOldIDsAndRemovesTheirSegments(t *testing.T) {
	dir := t.TempDir()
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	cfg := ProcessedLogConfig{Window: time.Hour, SegmentBytes: MinProcessedSegmentBytes, now: clk.now}
	runs := map[string]int{}
	l := openProcessed(t, dir, cfg)
	for i := range 200 { // several segments of ids
		processOnce(t, l, fmt.Sprintf("old-%d", i), runs)
	}
	clk.advance(30 * time.Minute)
	processOnce(t, l, "new", runs)
	before := l.Stats()
	if before.IDs != 201 {
		t.Fatalf("%+v, want 201 ids", before)
	}

	clk.advance(59 * time.Minute) // old-*: 89 minutes, new: 59 minutes
	if processOnce(t, l, "new", runs) {
		t.Fatal("new ran again within the window")
	}
	if !processOnce(t, l, "old-7", runs) {
		t.Fatal("old-7 was not forgotten after the window")
	}
	// Recording old-7 applied retention too: the segments of old-* are gone.
	after := l.Stats()
	if after.IDs != 2 || after.LogBytes >= before.LogBytes/2 {
		t.Fatalf("after the window: %+v, before: %+v; want 2 ids and the old segments removed", after, before)
	}

	// A restart reads back only what is within the window.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openProcessed(t, dir, cfg)
	if st := l.Stats(); st.IDs != 2 {
		t.Fatalf("after reopen: %+v, want 2 ids", st)
	}
	if processOnce(t, l, "new", runs) || processOnce(t, l, "old-7", runs) {
		t.Fatal("an id within the window ran again after reopen")
	}
	if !processOnce(t, l, "old-8", runs) {
		t.Fatal("old-8 remembered after reopen")
	}
	// The window is counted from the recording, late by at most 2 s.
	clk.advance(time.Hour - time.Second)
	if processOnce(t, l, "old-8", runs) {
		t.Fatal("old-8 forgotten a second before its window ended")
	}
	clk.advance(3 * time.Second)
	if !processOnce(t, l, "old-8", runs) {
		t.Fatal("old-8 remembered 2 s after its window ended")
	}
}

func TestProcessedLogMaxIDsForgetsOldestAndCountsIt(t *testing.T) {
	dir := t.TempDir()
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	runs := map[string]int{}
	l := openProcessed(t, dir, ProcessedLogConfig{MaxIDs: 3, now: clk.now})
	for _, id := range []string{"a", "b", "c", "d"} {
		processOnce(t, l, id, runs)
	}
	if st := l.Stats(); st.IDs != 3 || st.ForgottenEarly != 1 {
		t.Fatalf("%+v, want 3 ids and 1 forgotten early", st)
	}
	if processOnce(t, l, "d", runs) {
		t.Fatal("d ran again")
	}
	clk.advance(30 * time.Minute)
	if !processOnce(t, l, "a", runs) { // forgotten early: runs again, and b goes
		t.Fatal("a was not forgotten")
	}
	if st := l.Stats(); st.IDs != 3 || st.ForgottenEarly != 2 {
		t.Fatalf("%+v, want 3 ids and 2 forgotten early", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Read back with the same bound: the newest three.
	l = openProcessed(t, dir, ProcessedLogConfig{MaxIDs: 3, now: clk.now})
	for _, id := range []string{"c", "d", "a"} {
		if processOnce(t, l, id, runs) {
			t.Fatalf("%s ran again after reopen", id)
		}
	}
	if !processOnce(t, l, "b", runs) {
		t.Fatal("b, forgotten early, was remembered after reopen")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Read back with room for all: a and b are in the log twice (a, b, c, d at the
	// start, a and b 30 minutes later). When their first records leave the
	// window, they stay.
	l = openProcessed(t, dir, ProcessedLogConfig{MaxIDs: 10, Window: time.Hour, now: clk.now})
	if st := l.Stats(); st.IDs != 4 {
		t.Fatalf("after reopen with room: %+v, want a, b, c, d", st)
	}
	clk.advance(31 * time.Minute)
	if st := l.Stats(); st.IDs != 2 {
		t.Fatalf("an hour after a, b, c, d: %+v, want the second a and b", st)
	}
	if processOnce(t, l, "a", runs) || processOnce(t, l, "b", runs) {
		t.Fatal("a or b ran again although its second record is within the window")
	}
	if !processOnce(t, l, "c", runs) {
		t.Fatal("c was not forgotten after the window")
	}
}

func TestProcessedLogConcurrentSameIDRunsOnce(t *testing.T) {
	l := openProcessed(t, t.TempDir(), ProcessedLogConfig{})
	ctx := context.Background()
	for _, failFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("failFirst=%v", failFirst), func(t *testing.T) {
			id := fmt.Sprintf("job-%v", failFirst)
			var runs, ranTrue, failed atomic.Int32
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					ran, err := l.Process(ctx, id, func(context.Context) error {
						n := runs.Add(1)
						once.Do(func() { close(entered) })
						<-release
						if failFirst && n == 1 {
							return errors.New("first attempt fails")
						}
						return nil
					})
					switch {
					case err != nil:
						failed.Add(1)
					case ran:
						ranTrue.Add(1)
					}
				})
			}
			<-entered // one runs fn; the others wait for it or have not started
			close(release)
			wg.Wait()
			wantRuns := int32(1)
			if failFirst {
				wantRuns = 2
			}
			if runs.Load() != wantRuns || ranTrue.Load() != 1 || failed.Load() != wantRuns-1 {
				t.Fatalf("fn ran %d times, %d successes, %d failures; want %d runs and 1 success",
					runs.Load(), ranTrue.Load(), failed.Load(), wantRuns)
			}
		})
	}
}

func TestProcessedLogFailedOrPanickingFnIsNotRecorded(t *testing.T) {
	dir := t.TempDir()
	l := openProcessed(t, dir, ProcessedLogConfig{})
	ctx := context.Background()
	errBoom := errors.New("boom")
	ran, err := l.Process(ctx, "x", func(context.Context) error { return errBoom })
	if !ran || err != errBoom {
		t.Fatalf("failing fn: ran=%v err=%v, want true and fn's error itself", ran, err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic did not reach the caller")
			}
		}()
		l.Process(ctx, "x", func(context.Context) error { panic("handler bug") })
	}()
	if st := l.Stats(); st.IDs != 0 {
		t.Fatalf("%+v after failures, want no ids", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openProcessed(t, dir, ProcessedLogConfig{})
	runs := map[string]int{}
	if !processOnce(t, l, "x", runs) || processOnce(t, l, "x", runs) {
		t.Fatal("x: want a run after the failures, then a skip")
	}
	// A caller waiting for a same-id run gives up with its context.
	release, started, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		l.Process(ctx, "slow", func(context.Context) error { close(started); <-release; return nil })
	}()
	<-started
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if ran, err := l.Process(wctx, "slow", func(context.Context) error { return nil }); ran || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting caller: ran=%v err=%v, want its context's error", ran, err)
	}
	close(release)
	<-finished
}

func TestProcessedLogConfigValidate(t *testing.T) {
	tests := []struct {
		cfg   ProcessedLogConfig
		field string // "" for valid
	}{
		{ProcessedLogConfig{}, ""},
		{ProcessedLogConfig{Window: time.Second, MaxIDs: 1, SegmentBytes: MinProcessedSegmentBytes}, ""},
		{ProcessedLogConfig{Window: MaxProcessedWindow, MaxIDs: MaxProcessedMaxIDs, SegmentBytes: MaxProcessedSegmentBytes}, ""},
		{ProcessedLogConfig{Window: 999 * time.Millisecond}, "ProcessedLogConfig.Window"},
		{ProcessedLogConfig{Window: -time.Hour}, "ProcessedLogConfig.Window"},
		{ProcessedLogConfig{Window: MaxProcessedWindow + time.Second}, "ProcessedLogConfig.Window"},
		{ProcessedLogConfig{MaxIDs: -1}, "ProcessedLogConfig.MaxIDs"},
		{ProcessedLogConfig{MaxIDs: MaxProcessedMaxIDs + 1}, "ProcessedLogConfig.MaxIDs"},
		{ProcessedLogConfig{SegmentBytes: MinProcessedSegmentBytes - 1}, "ProcessedLogConfig.SegmentBytes"},
		{ProcessedLogConfig{SegmentBytes: MaxProcessedSegmentBytes + 1}, "ProcessedLogConfig.SegmentBytes"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		var ie *InvalidError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.field != "" && (!errors.As(err, &ie) || ie.Field != tc.field || !errors.Is(err, ErrInvalid)):
			t.Errorf("%+v: %v, want an *InvalidError for %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := OpenProcessedLog(t.TempDir(), ProcessedLogConfig{MaxIDs: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("open with a bad config: %v", err)
	}
	l := openProcessed(t, t.TempDir(), ProcessedLogConfig{})
	for _, id := range []string{"", strings.Repeat("x", MaxProcessedIDBytes+1)} {
		ran, err := l.Process(context.Background(), id, func(context.Context) error { t.Fatal("ran"); return nil })
		var ie *InvalidError
		if ran || !errors.As(err, &ie) || ie.Field != "id" {
			t.Errorf("id of %d bytes: ran=%v err=%v", len(id), ran, err)
		}
	}
}

func TestMessageID(t *testing.T) {
	keyed := Record{Stream: "orders", Partition: 3, Offset: 17,
		Headers: []Header{{Key: "trace", Value: []byte("t")}, {Key: IdempotencyKeyHeader, Value: []byte("order-9")}}}
	plain := Record{Stream: "orders", Partition: 3, Offset: 17}
	tests := []struct {
		r    Record
		want string
	}{
		{keyed, "key:orders/order-9"},
		{plain, "orders/3/17"},
		// A key that looks like the offset form stays in the key form.
		{Record{Stream: "o", Headers: []Header{{Key: IdempotencyKeyHeader, Value: []byte("x/1/2")}}}, "key:o/x/1/2"},
		{Record{Stream: "key", Partition: 0, Offset: 5}, "key/0/5"},
	}
	for _, tc := range tests {
		if got := MessageID(tc.r); got != tc.want {
			t.Errorf("MessageID(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
	// The same key on another stream is another message.
	other := keyed
	other.Stream = "refunds"
	if MessageID(other) == MessageID(keyed) {
		t.Error("the same idempotency key on two streams gave one id")
	}
}

// A fake database/sql driver: tables of id → counter, changed only by
// transactions, which apply their writes on commit and discard them on rollback.
// A claim holds a lock on its row until its transaction ends, and a second claim
// of the row waits for it, as a unique key does in a real database.
type fakeDB struct {
	mu          sync.Mutex
	cond        *sync.Cond
	tables      map[string]map[string]int64 // committed rows
	locks       map[string]*fakeTx          // "table/id" claimed by an open transaction
	failCommits int                         // the next commits fail without applying
}

func newFakeDB(t *testing.T) (*fakeDB, *sql.DB) {
	f := &fakeDB{tables: map[string]map[string]int64{}, locks: map[string]*fakeTx{}}
	f.cond = sync.NewCond(&f.mu)
	db := sql.OpenDB(f)
	t.Cleanup(func() { db.Close() })
	return f, db
}

func (f *fakeDB) row(table, id string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.tables[table][id]
	return n, ok
}

func (f *fakeDB) Connect(context.Context) (driver.Conn, error) { return &fakeConn{db: f}, nil }
func (f *fakeDB) Driver() driver.Driver                        { return fakeDriver{f} }

type fakeDriver struct{ db *fakeDB }

func (d fakeDriver) Open(string) (driver.Conn, error) { return &fakeConn{db: d.db}, nil }

type fakeConn struct {
	db *fakeDB
	tx *fakeTx
}

type fakeTx struct {
	c      *fakeConn
	writes []fakeWrite
	locked []string
}

type fakeWrite struct {
	table, id string
	add       int64 // 0 inserts the row with 0
}

var (
	fakeClaim = regexp.MustCompile(`^INSERT INTO (\w+) \(id\) VALUES \(\$1\) ON CONFLICT DO NOTHING$`)
	fakeIncr  = regexp.MustCompile(`^INSERT INTO (\w+) \(id, n\) VALUES \(\$1, 1\) ON CONFLICT \(id\) DO UPDATE SET n = \w+\.n \+ 1$`)
)

func (c *fakeConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("fakesql: Prepare is not supported")
}
func (c *fakeConn) Close() error { return nil }

func (c *fakeConn) Begin() (driver.Tx, error) {
	if c.tx != nil {
		return nil, errors.New("fakesql: transaction already open")
	}
	c.tx = &fakeTx{c: c}
	return c.tx, nil
}

func (c *fakeConn) ExecContext(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.tx == nil {
		return nil, errors.New("fakesql: statements run in transactions only")
	}
	if len(args) != 1 {
		return nil, fmt.Errorf("fakesql: %d arguments, want 1", len(args))
	}
	id, ok := args[0].Value.(string)
	if !ok {
		return nil, fmt.Errorf("fakesql: argument %T, want a string", args[0].Value)
	}
	f := c.db
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := fakeIncr.FindStringSubmatch(query); m != nil {
		c.tx.writes = append(c.tx.writes, fakeWrite{table: m[1], id: id, add: 1})
		return driver.RowsAffected(1), nil
	}
	m := fakeClaim.FindStringSubmatch(query)
	if m == nil {
		return nil, fmt.Errorf("fakesql: unsupported statement %q", query)
	}
	key := m[1] + "/" + id
	for f.locks[key] != nil && f.locks[key] != c.tx {
		f.cond.Wait()
	}
	if _, done := f.tables[m[1]][id]; done || f.locks[key] == c.tx {
		return driver.RowsAffected(0), nil
	}
	f.locks[key] = c.tx
	c.tx.locked = append(c.tx.locked, key)
	c.tx.writes = append(c.tx.writes, fakeWrite{table: m[1], id: id})
	return driver.RowsAffected(1), nil
}

func (tx *fakeTx) Commit() error {
	f := tx.c.db
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failCommits > 0 {
		f.failCommits--
		tx.endLocked()
		return errors.New("fakesql: commit failed (connection lost)")
	}
	for _, w := range tx.writes {
		if f.tables[w.table] == nil {
			f.tables[w.table] = map[string]int64{}
		}
		f.tables[w.table][w.id] += w.add
	}
	tx.endLocked()
	return nil
}

func (tx *fakeTx) Rollback() error {
	f := tx.c.db
	f.mu.Lock()
	defer f.mu.Unlock()
	tx.endLocked()
	return nil
}

// endLocked releases the transaction's claims. Lock held: fakeDB.mu.
func (tx *fakeTx) endLocked() {
	for _, k := range tx.locked {
		delete(tx.c.db.locks, k)
	}
	tx.c.tx = nil
	tx.c.db.cond.Broadcast()
}

const (
	testClaim = "INSERT INTO processed (id) VALUES ($1) ON CONFLICT DO NOTHING"
	testIncr  = "INSERT INTO effects (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = effects.n + 1"
)

func TestSQLTxStoreEffectAndClaimCommitTogether(t *testing.T) {
	f, db := newFakeDB(t)
	store := SQLTxStore(db, testClaim)
	ctx := context.Background()
	errDown := errors.New("downstream failed")
	attempt := 0
	// handle is the handler of one delivery: its effect is a row in effects, made
	// in the transaction; the first attempt fails after making it.
	handle := func(id string) (bool, error) {
		return store.Process(ctx, id, func(ctx context.Context, tx *sql.Tx) error {
			attempt++
			if _, err := tx.ExecContext(ctx, testIncr, id); err != nil {
				return err
			}
			if attempt == 1 {
				return errDown
			}
			return nil
		})
	}
	if ran, err := handle("orders/0/1"); !ran || !errors.Is(err, errDown) {
		t.Fatalf("failing fn: ran=%v err=%v", ran, err)
	}
	_, claimed := f.row("processed", "orders/0/1")
	_, effect := f.row("effects", "orders/0/1")
	if claimed || effect {
		t.Fatalf("after a failed fn: claimed=%v effect=%v, want both rolled back", claimed, effect)
	}
	// The redelivery runs it again; the next one is a repeat.
	if ran, err := handle("orders/0/1"); !ran || err != nil {
		t.Fatalf("redelivery: ran=%v err=%v", ran, err)
	}
	if ran, err := handle("orders/0/1"); ran || err != nil {
		t.Fatalf("repeat: ran=%v err=%v, want skipped", ran, err)
	}
	if n, _ := f.row("effects", "orders/0/1"); n != 1 {
		t.Fatalf("%d effects, want 1", n)
	}
	if _, ok := f.row("processed", "orders/0/1"); !ok {
		t.Fatal("id not recorded")
	}

	// A commit that fails applies nothing, and the next delivery runs again.
	f.mu.Lock()
	f.failCommits = 1
	f.mu.Unlock()
	if ran, err := handle("orders/0/2"); !ran || err == nil {
		t.Fatalf("failed commit: ran=%v err=%v", ran, err)
	}
	if ran, err := handle("orders/0/2"); !ran || err != nil {
		t.Fatalf("after a failed commit: ran=%v err=%v", ran, err)
	}
	if n, _ := f.row("effects", "orders/0/2"); n != 1 {
		t.Fatalf("%d effects after a failed commit and a retry, want 1", n)
	}

	// A panicking fn rolls back and releases its claim.
	func() {
		defer func() { recover() }()
		store.Process(ctx, "orders/0/3", func(context.Context, *sql.Tx) error { panic("handler bug") })
	}()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if ran, err := store.Process(tctx, "orders/0/3", func(context.Context, *sql.Tx) error { return nil }); !ran || err != nil {
		t.Fatalf("after a panic: ran=%v err=%v", ran, err)
	}
}

func TestSQLTxStoreConcurrentSameIDRunsOnce(t *testing.T) {
	f, db := newFakeDB(t)
	store := SQLTxStore(db, testClaim)
	var ran atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := store.Process(context.Background(), "key:orders/o-1", func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, testIncr, "o-1")
				return err
			})
			if err != nil {
				t.Error(err)
			}
			if ok {
				ran.Add(1)
			}
		})
	}
	wg.Wait()
	if n, _ := f.row("effects", "o-1"); ran.Load() != 1 || n != 1 {
		t.Fatalf("fn ran %d times, %d effects; want 1", ran.Load(), n)
	}
}

func TestTxStoreRequiresEveryFunction(t *testing.T) {
	_, err := TxStore[int]{}.Process(context.Background(), "x", func(context.Context, int) error { return nil })
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty TxStore: %v, want ErrInvalid", err)
	}
}

// BenchmarkProcessedLogMemory measures the heap a ProcessedLog holds per id once
// Open has read back n ids (the same structure Process fills).
func BenchmarkProcessedLogMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			writeProcessedIDs(b, filepath.Join(dir, "log"), n)
			var perID float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				l, err := OpenProcessedLog(dir, ProcessedLogConfig{})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if st := l.Stats(); st.IDs != n {
					b.Fatalf("%d ids read back, want %d", st.IDs, n)
				}
				perID = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				l.Close()
			}
			b.ReportMetric(perID, "bytes/id")
		})
	}
}

// writeProcessedIDs writes the log of n recorded ids of MessageID's length, 1000
// to a batch.
func writeProcessedIDs(b *testing.B, dir string, n int) {
	p, err := logstore.Open(logstore.Config{Dir: dir, Sync: logstore.SyncNever, SegmentBytes: DefaultProcessedSegmentBytes})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	now := time.Now().UnixMilli()
	recs := make([]batch.Record, 0, 1000)
	for i := 0; i < n; {
		recs = recs[:0]
		for ; len(recs) < cap(recs) && i < n; i++ {
			recs = append(recs, batch.Record{Timestamp: now, Key: fmt.Appendf(nil, "orders/%d/%d", i%16, i)})
		}
		if _, err := p.Append(context.Background(), batch.Append(nil, recs)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessedLogProcess records new ids from parallel handlers (each
// Process waits for its fdatasync, shared by a group commit).
func BenchmarkProcessedLogProcess(b *testing.B) {
	l, err := OpenProcessedLog(b.TempDir(), ProcessedLogConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var seq atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Process(context.Background(), fmt.Sprintf("orders/0/%d", seq.Add(1)), func(context.Context) error { return nil }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
