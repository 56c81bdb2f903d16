package sluice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// dedupeLog collects a broker's log lines; safe for concurrent use.
type dedupeLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *dedupeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *dedupeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// total returns the messages a stream holds, over its partitions.
func (f *fixture) total(stream string) int64 {
	f.t.Helper()
	return f.streamInfo(stream).Messages
}

// readAt returns the record at pos.
func readAt(t *testing.T, b *Broker, stream string, pos Position) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := b.NewReader(ctx, stream, ReaderConfig{Partition: pos.Partition, Start: AtOffset(pos.Offset)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rec, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("read %+v: %v", pos, err)
	}
	if rec.Offset != pos.Offset {
		t.Fatalf("read %+v: got offset %d", pos, rec.Offset)
	}
	return rec
}

// keyOf returns the idempotency key a stored record carries.
func keyOf(rec Record) string {
	for _, h := range rec.Headers {
		if h.Key == IdempotencyKeyHeader {
			return string(h.Value)
		}
	}
	return ""
}

func TestDedupeDuplicateReturnsOriginalAndStoresNothing(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "orders", Partitions: 8})
	orig := map[string]Position{}
	used := map[int]bool{}
	for i := range 20 {
		key := fmt.Sprintf("order-%d", i)
		pos, err := f.b.Publish(f.ctx, "orders", Message{Body: []byte("first " + key), IdempotencyKey: key})
		if err != nil || pos.Duplicate {
			t.Fatalf("first publish of %s: %+v, %v", key, pos, err)
		}
		orig[key] = pos
		used[pos.Partition] = true
		// Keyless messages without a key move the round-robin between publishes.
		if _, err := f.b.Publish(f.ctx, "orders", Message{Body: []byte("filler")}); err != nil {
			t.Fatal(err)
		}
	}
	if len(used) < 2 {
		t.Fatalf("20 idempotency keys all placed in partitions %v: not spread by their hash", used)
	}
	before := f.streamInfo("orders")
	for key, want := range orig {
		// A retry finds the original, whatever its body or placement says.
		for _, m := range []Message{
			{Body: []byte("retry " + key), IdempotencyKey: key},
			{Body: []byte("retry " + key), IdempotencyKey: key, Partition: ToPartition((want.Partition + 1) % 8)},
			{Body: []byte("retry " + key), IdempotencyKey: key, Key: []byte("some key")},
		} {
			pos, err := f.b.Publish(f.ctx, "orders", m)
			if err != nil || pos != (Position{Partition: want.Partition, Offset: want.Offset, Duplicate: true}) {
				t.Fatalf("retry of %s: %+v, %v; want %+v as a duplicate", key, pos, err, want)
			}
		}
	}
	after := f.streamInfo("orders")
	for p := range after.Partitions {
		if after.Partitions[p].HighWatermark != before.Partitions[p].HighWatermark {
			t.Fatalf("partition %d grew from %d to %d on duplicates", p, before.Partitions[p].HighWatermark, after.Partitions[p].HighWatermark)
		}
	}
	if c := after.Counters; c.Duplicates != 60 || c.DedupeKeys != 20 || c.DedupeEvicted != 0 {
		t.Fatalf("counters %+v: want 60 duplicates of 20 keys", c)
	}
	for key, pos := range orig {
		if rec := readAt(t, f.b, "orders", pos); string(rec.Body) != "first "+key || keyOf(rec) != key {
			t.Fatalf("%+v holds %q with key %q, want the first publish of %s", pos, rec.Body, keyOf(rec), key)
		}
	}
}

func TestDedupeKeyForgottenAfterWindowIsStoredAnewInSamePartition(t *testing.T) {
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	b := openWithClock(t, t.TempDir(), clk)
	defer b.Close()
	ctx := context.Background()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "s", Partitions: 8, DedupeWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	pub := func(body string) Position {
		t.Helper()
		pos, err := b.Publish(ctx, "s", Message{Body: []byte(body), IdempotencyKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	first := pub("first")
	clk.advance(time.Minute - time.Millisecond)
	if pos := pub("retry"); pos != (Position{first.Partition, first.Offset, true}) {
		t.Fatalf("retry within the window: %+v, want %+v as a duplicate", pos, first)
	}
	clk.advance(2 * time.Millisecond) // just past the window of the first
	second := pub("second")
	if second.Duplicate || second.Partition != first.Partition || second.Offset != first.Offset+1 {
		t.Fatalf("publish after the window: %+v; want stored anew after %+v, in the same partition", second, first)
	}
	if pos := pub("retry"); pos != (Position{second.Partition, second.Offset, true}) {
		t.Fatalf("retry of the new original: %+v, want %+v", pos, second)
	}
	if rec := readAt(t, b, "s", second); string(rec.Body) != "second" {
		t.Fatalf("new original holds %q", rec.Body)
	}
}

// TestDedupeSurvivesRestart checks each way the index is rebuilt on open: from
// the snapshot written at close, from the log alone, and from the log when the
// snapshot is damaged. Keys older than the window are not restored.
func TestDedupeSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, path string)
		warning bool
	}{
		{"snapshot", func(*testing.T, string) {}, false},
		{"no snapshot", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"bit flip", func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x10
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"truncated", func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data[:len(data)-30], 0o644); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
			logs := &dedupeLog{}
			open := func() *Broker {
				t.Helper()
				b, err := Open(dir, &Options{now: clk.now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			ctx := context.Background()
			b := open()
			defer func() { b.Close() }()
			if _, err := b.CreateStream(ctx, StreamConfig{Name: "s", Partitions: 3, DedupeWindow: 10 * time.Minute}); err != nil {
				t.Fatal(err)
			}
			publish := func(key string) Position {
				t.Helper()
				pos, err := b.Publish(ctx, "s", Message{Body: []byte(key), IdempotencyKey: key})
				if err != nil {
					t.Fatal(err)
				}
				return pos
			}
			old, recent := map[string]Position{}, map[string]Position{}
			for i := range 10 {
				old[fmt.Sprintf("old-%d", i)] = publish(fmt.Sprintf("old-%d", i))
			}
			clk.advance(6 * time.Minute)
			for i := range 10 {
				recent[fmt.Sprintf("new-%d", i)] = publish(fmt.Sprintf("new-%d", i))
				if _, err := b.Publish(ctx, "s", Message{Body: []byte("keyless")}); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			snap := filepath.Join(dir, streamsDir, "s", dedupeFile)
			if _, err := os.Stat(snap); err != nil {
				t.Fatalf("no snapshot after close: %v", err)
			}
			tc.damage(t, snap)
			// The old keys are 11 minutes old, past the window; the new ones 5.
			clk.advance(5 * time.Minute)
			b = open()
			if warned := strings.Contains(logs.String(), "ignoring dedupe snapshot"); warned != tc.warning {
				t.Fatalf("warning about the snapshot: %v, want %v; log:\n%s", warned, tc.warning, logs.String())
			}
			info, err := b.Stream(ctx, "s")
			if err != nil {
				t.Fatal(err)
			}
			if info.Counters.DedupeKeys != len(recent) {
				t.Fatalf("%d keys restored, want the %d within the window", info.Counters.DedupeKeys, len(recent))
			}
			for key, want := range recent {
				if pos := publish(key); pos != (Position{want.Partition, want.Offset, true}) {
					t.Fatalf("after reopen, %s: %+v, want %+v as a duplicate", key, pos, want)
				}
			}
			for key, was := range old {
				if pos := publish(key); pos.Duplicate || pos.Partition != was.Partition {
					t.Fatalf("after reopen, %s (past its window): %+v, want stored anew in partition %d", key, pos, was.Partition)
				}
			}
			if got := brokerMessages(t, b, "s"); got != 40 {
				t.Fatalf("stream holds %d messages, want 30 before the restart and 10 re-stored old keys", got)
			}
		})
	}
}

func brokerMessages(t *testing.T, b *Broker, stream string) int64 {
	t.Helper()
	info, err := b.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return info.Messages
}

// TestDedupeSnapshotAheadOfTheLogAfterPowerLoss: a dedupe snapshot is written
// while the log has acknowledged but unsynced messages (SyncNever, as SyncInterval
// between syncs); power fails and the log loses them, the snapshot survives.
// After the restart new keyed messages take the lost offsets and become durable;
// then the broker crashes again before its next snapshot. Every key acknowledged
// and still stored must be found after the second restart.
func TestDedupeSnapshotAheadOfTheLogAfterPowerLoss(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	quiet := slog.New(slog.DiscardHandler)
	// crash drops what was not synced, and keeps the old broker from writing
	// anything (its Close would save a snapshot) to the disk after the crash.
	crash := func(b *Broker) {
		fs.Crash(nil)
		fs.SetSyncError(errors.New("power is off"))
		b.Close()
		fs.SetSyncError(nil)
	}
	b1, err := Open("/data", &Options{fs: fs, now: clk.now, Logger: quiet, RetentionInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b1.CreateStream(ctx, StreamConfig{Name: "s", SegmentBytes: 4096, Sync: SyncNever}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := b1.Publish(ctx, "s", Message{Body: []byte("lost"), IdempotencyKey: fmt.Sprintf("lost-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(dedupeSnapshotEvery + time.Second)
	eventually(t, 10*time.Second, "no snapshot of the 10 keys", func() bool {
		data, err := fs.ReadFile("/data/streams/s/" + dedupeFile)
		if err != nil {
			return false
		}
		_, e, err := decodeDedupe(data)
		return err == nil && len(e) == 10
	})
	crash(b1)

	b2, err := Open("/data", &Options{fs: fs, now: clk.now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := b2.Stream(ctx, "s"); info.Messages != 0 {
		t.Fatalf("after the power loss the log holds %d messages, want the unsynced 10 lost", info.Messages)
	}
	acked := map[string]Position{}
	for i := range 10 {
		key := fmt.Sprintf("kept-%d", i)
		pos, err := b2.Publish(ctx, "s", Message{Body: []byte("kept"), IdempotencyKey: key})
		if err != nil || pos.Duplicate {
			t.Fatalf("%s: %+v, %v", key, pos, err)
		}
		acked[key] = pos
	}
	// Roll the segment: the full one is synced, so the keyed messages are durable.
	for {
		if _, err := b2.Publish(ctx, "s", Message{Body: make([]byte, 200)}); err != nil {
			t.Fatal(err)
		}
		if info, _ := b2.Stream(ctx, "s"); info.Partitions[0].Segments > 1 {
			break
		}
	}
	crash(b2) // within the first RetentionInterval after the restart

	b3, err := Open("/data", &Options{fs: fs, now: clk.now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close()
	for key, want := range acked {
		if rec := readAt(t, b3, "s", want); keyOf(rec) != key {
			t.Fatalf("%+v holds key %q after the second crash, want %s", want, keyOf(rec), key)
		}
	}
	var errs []string
	for key, want := range acked {
		pos, err := b3.Publish(ctx, "s", Message{Body: []byte("retry"), IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if pos != (Position{want.Partition, want.Offset, true}) {
			errs = append(errs, fmt.Sprintf("%s stored at %+v, published again: %+v", key, want, pos))
		}
	}
	// A key whose message the power failure lost is stored anew, once.
	var again []Position
	for range 3 {
		pos, err := b3.Publish(ctx, "s", Message{Body: []byte("lost, again"), IdempotencyKey: "lost-0"})
		if err != nil {
			t.Fatal(err)
		}
		again = append(again, pos)
	}
	if again[1] != (Position{again[0].Partition, again[0].Offset, true}) || again[2] != again[1] {
		errs = append(errs, fmt.Sprintf("lost-0 published three times after the second restart: %+v, want one store and two duplicates", again))
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		t.Fatalf("idempotency keys not found after a power loss and a crash:\n%s", strings.Join(errs, "\n"))
	}
}

func TestDedupeConcurrentSameKeyStoresOnce(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", Partitions: 4, Sync: SyncNever})
	const goroutines, rounds = 16, 20
	for round := range rounds {
		key := fmt.Sprintf("key-%d", round)
		start := make(chan struct{})
		var wg sync.WaitGroup
		pos := make([]Position, goroutines)
		errs := make([]error, goroutines)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				m := Message{Body: []byte(fmt.Sprint(g)), IdempotencyKey: key}
				if g%4 == 3 { // some in batches, with a key of their own
					ps, err := f.b.PublishBatch(f.ctx, "s", []Message{m, {Body: []byte("own"), IdempotencyKey: fmt.Sprintf("%s-own-%d", key, g)}})
					if err == nil {
						pos[g] = ps[0]
					}
					errs[g] = err
					return
				}
				pos[g], errs[g] = f.b.Publish(f.ctx, "s", m)
			}()
		}
		close(start)
		wg.Wait()
		stored := 0
		for g := range goroutines {
			if errs[g] != nil {
				t.Fatalf("round %d goroutine %d: %v", round, g, errs[g])
			}
			if pos[g].Partition != pos[0].Partition || pos[g].Offset != pos[0].Offset {
				t.Fatalf("round %d: positions differ: %+v and %+v", round, pos[0], pos[g])
			}
			if !pos[g].Duplicate {
				stored++
			}
		}
		if stored != 1 {
			t.Fatalf("round %d: %d publishes of one key reported stored, want 1", round, stored)
		}
	}
	info := f.streamInfo("s")
	owns := goroutines / 4
	if want := int64(rounds * (1 + owns)); info.Messages != want {
		t.Fatalf("stream holds %d messages, want %d (one per key)", info.Messages, want)
	}
	if c := info.Counters; c.Duplicates != rounds*(goroutines-1) {
		t.Fatalf("counters %+v: want %d duplicates", c, rounds*(goroutines-1))
	}
	// Each key stored exactly once.
	seen := map[string]int{}
	for _, pi := range info.Partitions {
		for _, rec := range f.readN("s", pi.ID, Earliest(), int(pi.HighWatermark)) {
			seen[keyOf(rec)]++
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("key %q stored %d times", k, n)
		}
	}
}

func TestDedupePublishBatchRepeatsAndEarlierKeys(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", Partitions: 3})
	a, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("a"), IdempotencyKey: "a"})
	if err != nil {
		t.Fatal(err)
	}
	before := f.total("s")
	msgs := []Message{
		{Body: []byte("a again"), IdempotencyKey: "a"},
		{Body: []byte("b"), IdempotencyKey: "b"},
		{Body: []byte("b again"), IdempotencyKey: "b"},
		{Body: []byte("c"), IdempotencyKey: "c", Partition: ToPartition(2)},
		{Body: []byte("keyless")},
		{Body: []byte("a third time"), IdempotencyKey: "a"},
		{Body: []byte("c again"), IdempotencyKey: "c"},
	}
	pos, err := f.b.PublishBatch(f.ctx, "s", msgs)
	if err != nil {
		t.Fatal(err)
	}
	dup := func(p Position) Position { return Position{p.Partition, p.Offset, true} }
	if pos[0] != dup(a) || pos[5] != dup(a) {
		t.Fatalf("earlier key a: %+v and %+v, want %+v", pos[0], pos[5], dup(a))
	}
	for i, first := range map[int]int{2: 1, 6: 3} {
		if pos[first].Duplicate || pos[i] != dup(pos[first]) {
			t.Fatalf("repeat %d of message %d: %+v, %+v", i, first, pos[i], pos[first])
		}
	}
	if pos[3].Partition != 2 || pos[4].Duplicate {
		t.Fatalf("positions %+v", pos)
	}
	if got := f.total("s"); got != before+3 {
		t.Fatalf("batch stored %d messages, want 3 (b, c, keyless)", got-before)
	}
	for _, i := range []int{1, 3, 4} {
		if rec := readAt(t, f.b, "s", pos[i]); string(rec.Body) != string(msgs[i].Body) || keyOf(rec) != msgs[i].IdempotencyKey {
			t.Fatalf("message %d at %+v: %q key %q", i, pos[i], rec.Body, keyOf(rec))
		}
	}
	// The same batch again: every keyed message is a duplicate of its original.
	again, err := f.b.PublishBatch(f.ctx, "s", msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if i == 4 {
			continue
		}
		if want := dup(pos[i]); again[i] != want {
			t.Fatalf("retried batch message %d: %+v, want %+v", i, again[i], want)
		}
	}
	if got := f.total("s"); got != before+4 {
		t.Fatalf("retried batch stored %d messages, want only the keyless one", got-before-3)
	}
}

// TestDedupeDuplicatesAnsweredWhenFull: a producer retrying a publish it did not
// hear back from learns the original position even when the partition is full.
func TestDedupeDuplicatesAnsweredWhenFull(t *testing.T) {
	for _, overflow := range []OverflowPolicy{OverflowReject, OverflowBlock} {
		t.Run(string(overflow), func(t *testing.T) {
			f := setup(t)
			f.create(StreamConfig{Name: "s", MaxMessages: 2, Overflow: overflow, BlockTimeout: MaxBlockTimeout})
			var orig []Position
			for i := range 2 {
				pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprint(i)})
				if err != nil {
					t.Fatal(err)
				}
				orig = append(orig, pos)
			}
			pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: "1"})
			if err != nil || pos != (Position{orig[1].Partition, orig[1].Offset, true}) {
				t.Fatalf("retry into a full stream: %+v, %v; want the original %+v", pos, err, orig[1])
			}
			ps, err := f.b.PublishBatch(f.ctx, "s", []Message{{IdempotencyKey: "0"}, {IdempotencyKey: "1"}})
			if err != nil || !ps[0].Duplicate || !ps[1].Duplicate {
				t.Fatalf("batch of duplicates into a full stream: %+v, %v", ps, err)
			}
			if c := f.streamInfo("s").Counters; c.Blocked != 0 || c.Rejected != 0 {
				t.Fatalf("counters %+v: a duplicate waited or was refused", c)
			}
		})
	}
}

func TestDedupeMaxKeysForgetsOldest(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", DedupeMaxKeys: 100, Sync: SyncNever})
	orig := map[int]Position{}
	for i := range 150 {
		pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("k%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		orig[i] = pos
	}
	if c := f.streamInfo("s").Counters; c.DedupeKeys != 100 || c.DedupeEvicted != 50 {
		t.Fatalf("counters %+v: want 100 keys held and 50 evicted", c)
	}
	for i := 149; i >= 50; i-- { // duplicates add no key: nothing more is evicted
		pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("k%d", i)})
		if err != nil || pos != (Position{orig[i].Partition, orig[i].Offset, true}) {
			t.Fatalf("k%d, among the newest 100: %+v, %v; want a duplicate of %+v", i, pos, err, orig[i])
		}
	}
	for i := range 50 {
		pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("k%d", i)})
		if err != nil || pos.Duplicate || pos.Offset != int64(150+i) {
			t.Fatalf("k%d, evicted: %+v, %v; want stored anew at %d", i, pos, err, 150+i)
		}
	}
	if c := f.streamInfo("s").Counters; c.DedupeKeys != 100 || c.DedupeEvicted != 100 || c.Duplicates != 100 {
		t.Fatalf("counters %+v", c)
	}
}

func TestDedupeMessageValidation(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", DedupeWindow: time.Hour})
	now := time.Now()
	for _, tc := range []struct {
		name  string
		msg   Message
		field string
	}{
		{"time before the window", Message{IdempotencyKey: "k", Time: now.Add(-2 * time.Hour)}, "Time"},
		{"time after the window", Message{IdempotencyKey: "k", Time: now.Add(2 * time.Hour)}, "Time"},
		{"reserved header", Message{Headers: []Header{{Key: IdempotencyKeyHeader, Value: []byte("k")}}}, "Headers"},
		{"reserved header with a key", Message{IdempotencyKey: "k", Headers: []Header{{Key: IdempotencyKeyHeader, Value: []byte("k")}}}, "Headers"},
		{"key too long", Message{IdempotencyKey: strings.Repeat("k", MaxIdempotencyKeyBytes+1)}, "IdempotencyKey"},
	} {
		_, err := f.b.Publish(f.ctx, "s", tc.msg)
		wantInvalid(t, tc.name, err, "Message."+tc.field)
		_, err = f.b.PublishBatch(f.ctx, "s", []Message{{Body: []byte("fine")}, tc.msg})
		wantInvalid(t, tc.name+" in a batch", err, "msgs[1]."+tc.field)
	}
	if n := f.total("s"); n != 0 {
		t.Fatalf("invalid publishes stored %d messages", n)
	}
	// An old time is fine without a key, and a key of the longest length is fine.
	if _, err := f.b.Publish(f.ctx, "s", Message{Time: now.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: strings.Repeat("k", MaxIdempotencyKeyBytes), Time: now.Add(-59 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
}

func TestDedupeDeadLetterKeepsKeyUnderItsOwnName(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "jobs"})
	if _, err := f.b.CreateSubscription(f.ctx, "jobs", SubscriptionConfig{Name: "w", MaxDeliveries: 1}); err != nil {
		t.Fatal(err)
	}
	orig, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte("job"), IdempotencyKey: "job-1", Headers: []Header{{Key: "h", Value: []byte("v")}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.b.NewConsumer(f.ctx, "jobs", "w", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	fail := func() {
		t.Helper()
		ds := fetchAll(f, c, 1)
		if err := c.Nack(f.ctx, ds[0], NackOptions{Reason: "boom"}); err != nil {
			t.Fatal(err)
		}
	}
	fail()
	const dlq = "jobs.w.dlq"
	eventually(t, 5*time.Second, "no dead letter", func() bool { return f.total(dlq) == 1 })
	rec := readAt(t, f.b, dlq, Position{Partition: 0, Offset: 0})
	h := map[string]string{}
	for _, kv := range rec.Headers {
		h[kv.Key] = string(kv.Value)
	}
	if _, ok := h[IdempotencyKeyHeader]; ok || h[HeaderDLQIdempotencyKey] != "job-1" || h["h"] != "v" {
		t.Fatalf("dead letter headers %v: want the key under %s only", h, HeaderDLQIdempotencyKey)
	}
	dls, _, err := f.b.DeadLetters(f.ctx, "jobs", "w", DeadLetterQuery{})
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters: %+v, %v", dls, err)
	}
	want := []Header{{Key: "h", Value: []byte("v")}, {Key: IdempotencyKeyHeader, Value: []byte("job-1")}}
	if m := dls[0].Message; !slices.EqualFunc(m.Headers, want, func(a, b Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) ||
		dls[0].Source != (Position{orig.Partition, orig.Offset, false}) {
		t.Fatalf("dead letter %+v: want headers %v and source %+v", dls[0], want, orig)
	}
	// Redriven and failed again: a second dead letter, not taken for a duplicate.
	if n, _, err := f.b.RedriveDeadLetters(f.ctx, "jobs", "w", RedriveOptions{}); err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	fail()
	eventually(t, 5*time.Second, "the second dead-lettering was dropped", func() bool { return f.total(dlq) == 2 })
	if c := f.streamInfo(dlq).Counters; c.Duplicates != 0 {
		t.Fatalf("dead-letter stream counters %+v", c)
	}
	// The source stream still knows the key.
	if pos, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte("job"), IdempotencyKey: "job-1"}); err != nil || pos != (Position{orig.Partition, orig.Offset, true}) {
		t.Fatalf("publishing job-1 again: %+v, %v; want a duplicate of %+v", pos, err, orig)
	}
}
