package sluice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// gateFS is an in-memory file system with a gate: once armed, the next Sync (or
// WriteAt) of a file under a directory stops until the test releases it, so that
// a test can hold a partition's writer at a known point.
type gateFS struct {
	*vfs.Mem
	mu      sync.Mutex
	prefix  string // armed: files under this directory
	op      string // "sync" or "write"
	entered chan struct{}
	release chan struct{}
}

func newGateFS() *gateFS { return &gateFS{Mem: vfs.NewMem()} }

// arm stops the next op ("sync" or "write") on a file under dir. It returns a
// channel closed once an operation is stopped, and the function that lets it go
// (also called at cleanup, so that no writer stays stuck).
func (g *gateFS) arm(t *testing.T, dir, op string) (<-chan struct{}, func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prefix, g.op = filepath.Clean(dir)+"/", op
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	rel := g.release
	release := func() { once.Do(func() { close(rel) }) }
	t.Cleanup(release)
	return g.entered, release
}

func (g *gateFS) pass(name, op string) {
	g.mu.Lock()
	stop := g.prefix != "" && g.op == op && strings.HasPrefix(name, g.prefix)
	entered, release := g.entered, g.release
	if stop {
		g.prefix = "" // one operation only
	}
	g.mu.Unlock()
	if stop {
		close(entered)
		<-release
	}
}

func (g *gateFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &gateFile{File: f, g: g, name: filepath.Clean(name)}, nil
}

func (g *gateFS) Create(name string) (vfs.File, error) {
	f, err := g.Mem.Create(name)
	return g.wrap(name, f, err)
}

func (g *gateFS) OpenAppend(name string) (vfs.File, error) {
	f, err := g.Mem.OpenAppend(name)
	return g.wrap(name, f, err)
}

func (g *gateFS) OpenWrite(name string) (vfs.File, error) {
	f, err := g.Mem.OpenWrite(name)
	return g.wrap(name, f, err)
}

func (g *gateFS) Open(name string) (vfs.File, error) {
	f, err := g.Mem.Open(name)
	return g.wrap(name, f, err)
}

type gateFile struct {
	vfs.File
	g    *gateFS
	name string
}

func (f *gateFile) Sync() error {
	f.g.pass(f.name, "sync")
	return f.File.Sync()
}

func (f *gateFile) WriteAt(p []byte, off int64) (int, error) {
	f.g.pass(f.name, "write")
	return f.File.WriteAt(p, off)
}

// waitFor waits for ch until a deadline.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("after 10s: %s", what)
	}
}

// TestReviewPublishTimedOutAfterTheWriteIsNotStoredTwice: a publish whose
// context ends after the partition's writer took its message (here: while the
// group is being fsynced) returns ctx.Err(), yet the message is stored. Its
// idempotency key must stay known, so that the retry the Producer makes for an
// unknown outcome is answered as a duplicate instead of storing it again.
func TestReviewPublishTimedOutAfterTheWriteIsNotStoredTwice(t *testing.T) {
	publishers := map[string]func(b *Broker, ctx context.Context, m Message) (Position, error){
		"Publish": func(b *Broker, ctx context.Context, m Message) (Position, error) {
			return b.Publish(ctx, "s", m)
		},
		"PublishBatch": func(b *Broker, ctx context.Context, m Message) (Position, error) {
			ps, err := b.PublishBatch(ctx, "s", []Message{m})
			if len(ps) == 1 {
				return ps[0], err
			}
			return Position{}, err
		},
	}
	for name, publish := range publishers {
		t.Run(name, func(t *testing.T) {
			ctx, stop := context.WithTimeout(context.Background(), time.Minute)
			defer stop()
			fs := newGateFS()
			b, err := Open("/data", &Options{fs: fs, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := b.CreateStream(ctx, StreamConfig{Name: "s"}); err != nil { // SyncAlways
				t.Fatal(err)
			}
			// Two groups first: the writer's preallocation (and its sync) is done
			// after the first, so the next sync is the next group's.
			for range 2 {
				if _, err := b.Publish(ctx, "s", Message{Body: []byte("warm-up")}); err != nil {
					t.Fatal(err)
				}
			}
			entered, release := fs.arm(t, "/data/streams/s/0", "sync")
			defer release() // before b.Close, which waits for the writer
			actx, cancel := context.WithCancel(ctx)
			type result struct {
				pos Position
				err error
			}
			res := make(chan result, 1)
			msg := Message{Body: []byte("order 1"), IdempotencyKey: "order-1"}
			go func() {
				pos, err := publish(b, actx, msg)
				res <- result{pos, err}
			}()
			waitFor(t, entered, "the writer never synced the keyed message")
			cancel() // the attempt times out while its message is being synced
			// The attempt returns now with ctx's error (its outcome unknown to the
			// caller), or, if the broker waits for the outcome it already started,
			// once the sync finishes.
			var first result
			select {
			case first = <-res:
				release()
			case <-time.After(2 * time.Second):
				release()
				first = <-res
			}
			if first.err != nil && !errors.Is(first.err, context.Canceled) {
				t.Fatalf("first attempt: %+v, %v; want context.Canceled or its outcome", first.pos, first.err)
			}
			// The producer retries the unknown outcome with the same key.
			pos, err := publish(b, ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			info, err := b.Stream(ctx, "s")
			if err != nil {
				t.Fatal(err)
			}
			if rec := readAt(t, b, "s", Position{Offset: 2}); keyOf(rec) != "order-1" {
				t.Fatalf("offset 2 holds key %q: the timed-out attempt was expected to be stored", keyOf(rec))
			}
			if !pos.Duplicate || pos.Offset != 2 || info.Messages != 3 {
				t.Fatalf("retry after a timed-out attempt that was stored at offset 2: %+v, stream holds %d messages; "+
					"want a duplicate of offset 2 and 3 messages", pos, info.Messages)
			}
		})
	}
}

// TestReviewRefusedKeyedPublishesDoNotEvictAcceptedKeys: a keyed publish that
// is refused (here for room) stores nothing and adds no key; it must not make the
// index forget a key it accepted while it holds fewer than DedupeMaxKeys.
func TestReviewRefusedKeyedPublishesDoNotEvictAcceptedKeys(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", MaxMessages: 5, DedupeMaxKeys: 4, Sync: SyncNever})
	orig, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("k0"), IdempotencyKey: "k0"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		if _, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("k%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("no key")}); err != nil {
		t.Fatal(err)
	}
	// The stream is full: a producer's keyed publish is refused.
	if _, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: "x"}); !errors.Is(err, ErrStreamFull) {
		t.Fatalf("publish into a full stream: %v, want ErrStreamFull", err)
	}
	c := f.streamInfo("s").Counters
	// Room comes back; the producer of k0, which did not hear its answer, retries.
	if _, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", MaxMessages: 100}); err != nil {
		t.Fatal(err)
	}
	pos, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("k0"), IdempotencyKey: "k0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DedupeEvicted != 0 || pos != (Position{orig.Partition, orig.Offset, true}) {
		t.Fatalf("4 keys accepted with DedupeMaxKeys=4, then one publish refused: counters %+v; "+
			"retry of k0 got %+v, want a duplicate of %+v", c, pos, orig)
	}
}

// TestReviewDedupeSnapshotWithClaimInFlightAfterPowerLoss: a snapshot taken
// while a publish holds a claim covers its partition only up to the claim's
// floor, yet holds an entry past it. If a power failure then takes the log back
// to between the two, new keyed messages reuse the entry's offset; after a crash
// before the next snapshot, the rebuild must index them.
func TestReviewDedupeSnapshotWithClaimInFlightAfterPowerLoss(t *testing.T) {
	ctx := context.Background()
	fs := newGateFS()
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	quiet := slog.New(slog.DiscardHandler)
	open := func() *Broker {
		t.Helper()
		b, err := Open("/data", &Options{fs: fs, now: clk.now, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// kill stops a broker without letting it write a new snapshot; what it wrote
	// to its files stays (as in the page cache after kill -9).
	kill := func(b *Broker) {
		fs.SetSyncError(errors.New("killed"))
		b.Close()
		fs.SetSyncError(nil)
	}
	b1 := open()
	if _, err := b1.CreateStream(ctx, StreamConfig{Name: "s", Partitions: 2, Sync: SyncNever}); err != nil {
		t.Fatal(err)
	}
	// A batch claims c (partition 0) and d (partition 1); c is written at 0 while
	// the write of d is held, so both claims stay in flight.
	entered, release := fs.arm(t, "/data/streams/s/1", "write")
	batchDone := make(chan error, 1)
	go func() {
		_, err := b1.PublishBatch(ctx, "s", []Message{
			{Body: []byte("c"), IdempotencyKey: "c", Partition: ToPartition(0)},
			{Body: []byte("d"), IdempotencyKey: "d", Partition: ToPartition(1)},
		})
		batchDone <- err
	}()
	waitFor(t, entered, "the batch never wrote to partition 1")
	eventually(t, 10*time.Second, "c never reached partition 0", func() bool {
		info, err := b1.Stream(ctx, "s")
		return err == nil && info.Partitions[0].HighWatermark == 1
	})
	k2, err := b1.Publish(ctx, "s", Message{Body: []byte("k2"), IdempotencyKey: "k2", Partition: ToPartition(0)})
	if err != nil || k2.Offset != 1 {
		t.Fatalf("k2: %+v, %v", k2, err)
	}
	b1.mu.RLock()
	s := b1.streams["s"]
	b1.mu.RUnlock()
	if err := b1.saveDedupe(s, true); err != nil {
		t.Fatal(err)
	}
	data, err := fs.ReadFile("/data/streams/s/" + dedupeFile)
	if err != nil {
		t.Fatal(err)
	}
	covered, entries, err := decodeDedupe(data)
	if err != nil || len(covered) != 2 || covered[0] != 0 || len(entries) != 1 || entries[0].ref != makeRef(0, 1) {
		t.Fatalf("snapshot: covered %v, entries %+v, %v; want partition 0 covered to 0 (c's claim) and k2 at 1", covered, entries, err)
	}
	// Power fails: the unsynced messages are lost, the snapshot stays.
	fs.Crash(nil)
	release()
	kill(b1)
	<-batchDone

	b2 := open()
	if info, _ := b2.Stream(ctx, "s"); info.Partitions[0].HighWatermark != 0 {
		t.Fatalf("after the power failure partition 0 holds %d messages, want 0", info.Partitions[0].HighWatermark)
	}
	var acked []Position
	for _, key := range []string{"k3", "k4"} {
		pos, err := b2.Publish(ctx, "s", Message{Body: []byte(key), IdempotencyKey: key, Partition: ToPartition(0)})
		if err != nil || pos.Duplicate {
			t.Fatalf("%s: %+v, %v", key, pos, err)
		}
		acked = append(acked, pos)
	}
	kill(b2) // before b2's first snapshot

	b3 := open()
	defer b3.Close()
	for i, key := range []string{"k3", "k4"} {
		pos, err := b3.Publish(ctx, "s", Message{Body: []byte(key), IdempotencyKey: key, Partition: ToPartition(0)})
		if err != nil {
			t.Fatal(err)
		}
		if want := (Position{acked[i].Partition, acked[i].Offset, true}); pos != want {
			t.Fatalf("%s, acknowledged at %+v before the crash: retry got %+v, want %+v", key, acked[i], pos, want)
		}
	}
}

// TestReviewDedupeMaxKeysLoweredKeepsOneBound: the shards of a dedupe index are
// chosen when the stream opens. Lowered by UpdateStream, DedupeMaxKeys is split
// exactly among them (never more keys than the bound); once the stream reopens,
// a bound below 65,536 is one exact bound ("oldest" over the whole index).
func TestReviewDedupeMaxKeysLoweredKeepsOneBound(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", DedupeMaxKeys: 1 << 16, Sync: SyncNever})
	if _, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", DedupeMaxKeys: 100}); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("a%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if c := f.streamInfo("s").Counters; c.DedupeKeys > 100 {
		t.Fatalf("300 keys with DedupeMaxKeys=100 before a reopen: counters %+v, want at most 100 held", c)
	}
	f.reopen()
	for i := range 100 {
		if _, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("k%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: fmt.Sprintf("k%d", i)})
		if err != nil || !pos.Duplicate {
			t.Fatalf("k%d after a reopen with DedupeMaxKeys=100: %+v, %v; want a duplicate", i, pos, err)
		}
	}
}

// TestReviewSnapshotWithMorePartitionsIsIgnored: a dedupe snapshot that decodes
// but names a partition the stream does not have is a bad snapshot: Open warns
// and rebuilds from the log rather than panicking.
func TestReviewSnapshotWithMorePartitionsIsIgnored(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", Sync: SyncNever})
	pos, err := f.b.Publish(f.ctx, "s", Message{IdempotencyKey: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.b.Close(); err != nil {
		t.Fatal(err)
	}
	snap := encodeDedupe([]int64{0, 0}, []dentry{{hash: keyHash("b"), ref: makeRef(1, 0), ms: time.Now().UnixMilli()}})
	if err := os.WriteFile(filepath.Join(f.dir, streamsDir, "s", dedupeFile), snap, 0o644); err != nil {
		t.Fatal(err)
	}
	var b *Broker
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Open with a snapshot of 2 partitions for a stream of 1 panicked: %v", r)
			}
		}()
		b, err = Open(f.dir, &Options{Logger: slog.New(slog.DiscardHandler)})
	}()
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	got, err := b.Publish(f.ctx, "s", Message{IdempotencyKey: "a"})
	if err != nil || got != (Position{pos.Partition, pos.Offset, true}) {
		t.Fatalf("a after the rebuild: %+v, %v; want a duplicate of %+v", got, err, pos)
	}
}

// refusingClient refuses the first publishes with a *StreamFullError carrying a
// RetryAfter hint, and records when each attempt came.
type refusingClient struct {
	Client
	hint   time.Duration
	refuse int

	mu    sync.Mutex
	times []time.Time
}

func (c *refusingClient) Publish(ctx context.Context, stream string, msg Message) (Position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.times = append(c.times, time.Now())
	if len(c.times) <= c.refuse {
		return Position{}, &StreamFullError{Stream: stream, Limit: "MaxMessages", Bound: 1, RetryAfter: c.hint}
	}
	return Position{Offset: 1}, nil
}

// TestReviewProducerWaitsAtLeastRetryAfter: ProducerConfig says the wait between
// attempts is "at least a refused publish's RetryAfter hint (up to RetryMax)".
func TestReviewProducerWaitsAtLeastRetryAfter(t *testing.T) {
	const hint = 100 * time.Millisecond
	c := &refusingClient{hint: hint, refuse: 5}
	p, err := NewProducer(c, "s", ProducerConfig{RetryInitial: time.Millisecond, RetryMax: time.Second, MaxAttempts: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(context.Background(), Message{Body: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var short []string
	for i := 1; i < len(c.times); i++ {
		if d := c.times[i].Sub(c.times[i-1]); d < hint {
			short = append(short, fmt.Sprintf("attempt %d came %v after a refusal with RetryAfter=%v", i+1, d.Round(time.Millisecond), hint))
		}
	}
	if len(short) > 0 {
		t.Fatal(strings.Join(short, "\n"))
	}
}

// TestReviewDeadLetterOfAnOldMessageIsKept: DefaultDeadLetterStream keeps dead
// letters 30 days. A dead letter carries its original's time, so a message older
// than that (replayed, or published with its own old Time) is dead-lettered into
// an active segment that is all "older than MaxAge": the retention pass must not
// seal and remove it at once.
func TestReviewDeadLetterOfAnOldMessageIsKept(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "jobs"})
	if _, err := f.b.CreateSubscription(f.ctx, "jobs", SubscriptionConfig{Name: "w", MaxDeliveries: 1}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-31 * 24 * time.Hour)
	if _, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte("job"), Time: old}); err != nil {
		t.Fatal(err)
	}
	c, err := f.b.NewConsumer(f.ctx, "jobs", "w", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ds := fetchAll(f, c, 1)
	if err := c.Nack(f.ctx, ds[0], NackOptions{Reason: "boom"}); err != nil {
		t.Fatal(err)
	}
	const dlq = "jobs.w.dlq"
	eventually(t, 5*time.Second, "no dead letter", func() bool { return f.total(dlq) == 1 })
	f.b.applyRetention() // the broker's next retention pass
	if n := f.total(dlq); n != 1 {
		t.Fatalf("the dead letter written a moment ago was removed by retention: %s holds %d messages", dlq, n)
	}
}
