package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
)

// Kinds of violation checkRecovered reports.
var (
	errAckLost = errors.New("acknowledged batch lost")
	errPhantom = errors.New("batch nobody sent")
	errDense   = errors.New("offsets not dense")
)

// ledger is what the publishers did: every batch they tried to append, by tag,
// and where the log said it stored those it acknowledged. It is the model the
// crash checks compare a recovered log with.
type ledger struct {
	mu    sync.Mutex
	sent  map[string][]byte // tag -> encoded batch as sent (base offset 0)
	acked map[string]int64  // tag -> base offset
}

func newLedger() *ledger {
	return &ledger{sent: map[string][]byte{}, acked: map[string]int64{}}
}

// send encodes a batch of random records tagged tag, records it as attempted, and
// returns a copy to hand to Append (which patches the base offset in place).
func (l *ledger) send(tag string, rng *rand.Rand) []byte {
	recs := make([]batch.Record, 1+rng.IntN(4))
	for i := range recs {
		size := rng.IntN(400)
		if rng.IntN(60) == 0 {
			size = MinSegmentBytes + rng.IntN(1024) // a batch larger than a segment
		}
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		recs[i] = batch.Record{Timestamp: rng.Int64N(1 << 41), Key: []byte(tag), Value: v}
		if rng.IntN(4) == 0 {
			recs[i].Headers = []batch.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}
		}
	}
	b := batch.Append(nil, recs)
	l.mu.Lock()
	l.sent[tag] = b
	l.mu.Unlock()
	return bytes.Clone(b)
}

func (l *ledger) ack(tag string, base int64) {
	l.mu.Lock()
	l.acked[tag] = base
	l.mu.Unlock()
}

// appendAcked appends n batches tagged prefix0..prefix<n-1>, one at a time, and
// records each acknowledgement; afterEach (if not nil) runs after every one.
func (l *ledger) appendAcked(t testing.TB, p *Partition, rng *rand.Rand, prefix string, n int, afterEach func(base int64)) {
	t.Helper()
	for i := range n {
		tag := fmt.Sprint(prefix, i)
		base, err := p.Append(ctxT(t), l.send(tag, rng))
		if err != nil {
			t.Fatal(err)
		}
		l.ack(tag, base)
		if afterEach != nil {
			afterEach(base)
		}
	}
}

// checkRecovered compares a partition with the ledger and returns the first
// violation of what a publisher was promised:
//   - every acknowledged batch is readable at the offset it was given, byte for byte
//     (errAckLost);
//   - the offsets from StartOffset (0: nothing is deleted here) to the high watermark
//     are dense, and every batch verifies (errDense);
//   - every batch in the log was sent by somebody, once, with that content: a batch
//     in flight at the crash may survive, garbage may not (errPhantom).
func checkRecovered(p *Partition, l *ledger) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if start := p.StartOffset(); start != 0 {
		return fmt.Errorf("%w: log starts at %d", errDense, start)
	}
	stored, err := readBatches(p, 0, 64<<10)
	if err != nil {
		return fmt.Errorf("%w: %w", errDense, err)
	}
	at := map[int64]string{} // base offset -> tag
	for _, b := range stored {
		tag, err := batchTag(b.data)
		if err != nil {
			return fmt.Errorf("%w: batch at %d: %w", errPhantom, b.base, err)
		}
		sent, ok := l.sent[tag]
		switch {
		case !ok:
			return fmt.Errorf("%w: batch at %d tagged %q", errPhantom, b.base, tag)
		case !sameBatch(b.data, sent):
			return fmt.Errorf("%w: batch at %d differs from the %q that was sent", errPhantom, b.base, tag)
		}
		for base, other := range at {
			if other == tag {
				return fmt.Errorf("%w: %q stored twice, at %d and %d", errPhantom, tag, base, b.base)
			}
		}
		at[b.base] = tag
	}
	for tag, base := range l.acked {
		if got, ok := at[base]; !ok || got != tag {
			return fmt.Errorf("%w: %q was acknowledged at offset %d; the recovered log (high watermark %d) has %q there",
				errAckLost, tag, base, p.HighWatermark(), got)
		}
	}
	return nil
}

// crashOpts shapes one crash run.
type crashOpts struct {
	lazy       bool // Config.ackBeforeSync
	publishers int
	rounds     int // publish, crash, recover, check; repeated on the same file system
}

// crashRun publishes concurrently to a partition with small segments on a crashFS,
// which crashes after a random number of file operations, while appends are in
// flight; then it closes the old partition, reopens, and checks the recovered log
// against the ledger; then it appends again, and repeats. It returns the first
// violation (or unexpected error); failing is left to the caller, so that a test
// can also expect a violation.
func crashRun(seed uint64, o crashOpts) error {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	fs := newCrashFS(seed)
	cfg := Config{
		Dir: "/data/p0", FS: fs, SegmentBytes: MinSegmentBytes, IndexIntervalBytes: 256,
		Logger: quietLogger, ackBeforeSync: o.lazy,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := newLedger()
	p, err := Open(cfg)
	if err != nil {
		return err
	}
	defer func() { p.Close() }()
	for round := range o.rounds {
		// About two operations (write, sync) per group commit, more at a roll.
		crashAt := 1 + rng.Int64N(200)
		crashed := fs.arm(crashAt)
		var (
			wg         sync.WaitGroup
			mu         sync.Mutex
			unexpected error
		)
		for pub := range o.publishers {
			prng := rand.New(rand.NewPCG(seed, uint64(round<<16|pub)))
			wg.Go(func() {
				for i := 0; !fs.crashed.Load(); i++ {
					tag := fmt.Sprintf("r%d/p%d/%d", round, pub, i)
					base, err := p.Append(ctx, l.send(tag, prng))
					if err != nil {
						// Before the crash nothing may fail; after it, anything may.
						if !fs.crashed.Load() {
							mu.Lock()
							unexpected = fmt.Errorf("append %s before the crash: %w", tag, err)
							mu.Unlock()
						}
						return
					}
					l.ack(tag, base)
				}
			})
		}
		allDone := make(chan struct{})
		go func() { wg.Wait(); close(allDone) }()
		select {
		case <-crashed:
		case <-allDone: // only if appends failed: reported below
		}
		<-allDone
		p.Close() // may fail: its files are gone
		if unexpected != nil {
			return unexpected
		}
		if p, err = Open(cfg); err != nil {
			return fmt.Errorf("round %d: reopen after the crash: %w", round, err)
		}
		if err := checkRecovered(p, l); err != nil {
			return fmt.Errorf("round %d (crash at operation %d): %w", round, crashAt, err)
		}
		// The recovered partition takes new appends right after its last batch.
		hw := p.HighWatermark()
		tag := fmt.Sprintf("r%d/after", round)
		base, err := p.Append(ctx, l.send(tag, rng))
		if err != nil || base != hw {
			return fmt.Errorf("round %d: append after recovery: base %d, %v; want base %d", round, base, err, hw)
		}
		l.ack(tag, base)
		if err := checkRecovered(p, l); err != nil {
			return fmt.Errorf("round %d, after the post-recovery append: %w", round, err)
		}
	}
	return nil
}

// TestCrashConcurrentPublishers is the durability test of SyncAlways: whatever the
// moment of the crash and wherever the torn write ends, every acknowledged batch
// survives at its offset, offsets stay dense, and nothing that was never sent
// appears.
func TestCrashConcurrentPublishers(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 30
	}
	for seed := range uint64(seeds) {
		if err := crashRun(seed, crashOpts{publishers: 8, rounds: 3}); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// TestCrashCheckCatchesAckBeforeSync runs the same crash test against the
// deliberately lazy engine that acknowledges before it syncs. The check must catch
// it losing acknowledged batches: otherwise the test above proves nothing.
func TestCrashCheckCatchesAckBeforeSync(t *testing.T) {
	const maxSeeds = 200
	for seed := range uint64(maxSeeds) {
		err := crashRun(seed, crashOpts{lazy: true, publishers: 8, rounds: 3})
		if err == nil {
			continue
		}
		if !errors.Is(err, errAckLost) {
			// The lazy engine only loses durability; any other violation is a bug in
			// the engine or in the check.
			t.Fatalf("seed %d: unexpected kind of violation: %v", seed, err)
		}
		t.Logf("caught at seed %d: %v", seed, err)
		return
	}
	t.Fatalf("the crash check did not catch the ack-before-sync engine in %d seeds", maxSeeds)
}
