package logstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// TestSyncMakesAcknowledgedBatchesDurable: under every policy, a batch
// acknowledged before Sync returned survives a power failure, across segment
// rolls, while what was appended after the last Sync may or may not.
func TestSyncMakesAcknowledgedBatchesDurable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy SyncPolicy
	}{
		{"always", SyncAlways},
		{"interval", SyncInterval},
		{"never", SyncNever},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(8) {
				fs := vfs.NewMem()
				// 8 KiB segments, so the appends roll several; no background sync
				// within the test's time.
				cfg := memConfig(fs)
				cfg.Sync, cfg.SyncInterval = tc.policy, time.Minute
				p := mustOpen(t, cfg)
				l := newLedger()
				rng := rand.New(rand.NewPCG(seed, 11))
				l.appendAcked(t, p, rng, "synced", 10+rng.IntN(40), nil)
				if err := p.Sync(); err != nil {
					t.Fatal(err)
				}
				// Written after the sync, acknowledged by the log but not by the
				// ledger: a crash may keep or drop these.
				for i := range rng.IntN(5) {
					if _, err := p.Append(ctxT(t), l.send(fmt.Sprint("later", i), rng)); err != nil {
						t.Fatal(err)
					}
				}
				fs.Crash(rng)
				p.Close() // its handles are dead; errors are expected
				p = mustOpen(t, cfg)
				if err := checkRecovered(p, l); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				p.Close()
			}
		})
	}
}

// TestSyncWhileTheWriterRolls: Sync runs beside a writer that appends and rolls
// segments all the time (under the race detector this checks that they share the
// segment list safely); then every batch acknowledged before the last Sync began
// survives a crash that keeps only synced bytes.
func TestSyncWhileTheWriterRolls(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.SegmentBytes = MinSegmentBytes
	cfg.Sync, cfg.SyncInterval = SyncInterval, time.Minute
	p := mustOpen(t, cfg)
	l := newLedger()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		rng := rand.New(rand.NewPCG(uint64(w), 12))
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				tag := fmt.Sprintf("w%d-%d", w, i)
				base, err := p.Append(ctxT(t), l.send(tag, rng))
				if err != nil {
					t.Error(err)
					return
				}
				l.ack(tag, base)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for syncs := 0; syncs < 100 || len(segmentPaths(t, cfg)) < 8; syncs++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d syncs, only %d segments: the writer did not roll while Sync ran", syncs, len(segmentPaths(t, cfg)))
		}
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	// The last batches sit in the active segment, written and not synced.
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	fs.Crash(nil)
	p.Close()
	p = mustOpen(t, cfg)
	defer p.Close()
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
}

// TestSyncFailureStopsThePartition: a failed Sync is returned, wrapping ErrFailed
// and the cause, and the partition takes no more writes; after Close, Sync says
// ErrClosed.
func TestSyncFailureStopsThePartition(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.Sync, cfg.SyncInterval = SyncInterval, time.Minute
	p := mustOpen(t, cfg)
	appendBatches(t, p, "a", 3)
	fs.SetSyncError(errInjected)
	if err := p.Sync(); !errors.Is(err, ErrFailed) || !errors.Is(err, errInjected) {
		t.Fatalf("Sync with a failing disk = %v; want ErrFailed wrapping the cause", err)
	}
	fs.SetSyncError(nil)
	if _, err := p.Append(ctxT(t), testBatch("b", 1, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after a failed Sync = %v; want ErrFailed", err)
	}
	if err := p.Sync(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync after a failed Sync = %v; want ErrFailed", err)
	}
	p.Close()

	p = mustOpen(t, cfg)
	p.Close()
	if err := p.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v; want ErrClosed", err)
	}
}
