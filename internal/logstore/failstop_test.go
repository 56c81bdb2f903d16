package logstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

var errInjected = errors.New("injected EIO")

// failStopSetup opens a partition on vfs.Mem, has 20 batches acknowledged, then
// makes every sync fail and has publishers append concurrently. It checks what
// every publisher must see: an error wrapping ErrFailed and the cause, and no
// batch made visible by the failed syncs.
func failStopSetup(t *testing.T) (*vfs.Mem, Config, *ledger, *Partition) {
	t.Helper()
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.SegmentBytes = MinSegmentBytes
	p := mustOpen(t, cfg)
	l := newLedger()
	rng := rand.New(rand.NewPCG(1, 2))
	l.appendAcked(t, p, rng, "ok", 20, nil)
	hw := p.HighWatermark()

	fs.SetSyncError(errInjected)
	const publishers = 16
	errs := make([]error, publishers)
	var wg sync.WaitGroup
	for i := range publishers {
		prng := rand.New(rand.NewPCG(3, uint64(i)))
		wg.Go(func() {
			// Large enough that some publishers' groups roll the segment: the sync
			// before a roll fails too.
			for j := range 4 {
				_, err := p.Append(ctxT(t), l.send(fmt.Sprintf("fail%d-%d", i, j), prng))
				if err == nil {
					errs[i] = errors.New("an append was acknowledged while every sync fails")
					return
				}
				if errs[i] == nil {
					errs[i] = err
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrFailed) || !errors.Is(err, errInjected) {
			t.Fatalf("publisher %d got %v; want an error wrapping ErrFailed and the sync error", i, err)
		}
	}
	if got := p.HighWatermark(); got != hw {
		t.Fatalf("high watermark moved from %d to %d without a successful sync", hw, got)
	}
	if err := checkRecovered(p, l); err != nil {
		t.Fatalf("readers of the failed partition: %v", err)
	}
	if data, _, err := p.Read(hw, 1<<20, nil); err != nil || len(data) != 0 {
		t.Fatalf("Read at the high watermark = %d bytes, %v; unsynced data is visible", len(data), err)
	}
	return fs, cfg, l, p
}

// TestFailStop: once a sync fails the partition accepts no more writes, even
// after the disk recovers, and after a reopen everything acknowledged before is
// there (what the failed publishers wrote may be too: they were told it failed,
// not that it is absent).
func TestFailStop(t *testing.T) {
	fs, cfg, l, p := failStopSetup(t)
	fs.SetSyncError(nil)
	if _, err := p.Append(ctxT(t), testBatch("later", 1, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after the failure = %v, want ErrFailed", err)
	}
	p.Close()
	p = mustOpen(t, cfg)
	defer p.Close()
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
	hw := p.HighWatermark()
	if base, err := p.Append(ctxT(t), testBatch("reopened", 1, 1)); err != nil || base != hw {
		t.Fatalf("append after reopening = %d, %v; want %d", base, err, hw)
	}
}

// TestFailStopThenCrash: the machine loses power while the partition is failed.
// Everything acknowledged before the failure survives.
func TestFailStopThenCrash(t *testing.T) {
	fs, cfg, l, p := failStopSetup(t)
	fs.Crash(rand.New(rand.NewPCG(7, 7)))
	fs.SetSyncError(nil)
	p.Close()
	p = mustOpen(t, cfg)
	defer p.Close()
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
}

// TestFailStopSyncInterval: under SyncInterval a failed background sync stops
// writes too; the batches acknowledged before it stay readable.
func TestFailStopSyncInterval(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.Sync, cfg.SyncInterval = SyncInterval, time.Millisecond
	p := mustOpen(t, cfg)
	defer p.Close()
	appendBatches(t, p, "a", 5)
	fs.SetSyncError(errInjected)
	appendBatches(t, p, "b", 1) // acknowledged before its sync, which fails
	eventually(t, "the failed sync stops writes", func() bool {
		_, err := p.Append(ctxT(t), testBatch("probe", 1, 1))
		return errors.Is(err, ErrFailed) && errors.Is(err, errInjected)
	})
	if got := readAll(t, p, 0); len(got) < 12 { // 1+2+3+4+1 records of a, 1 of b
		t.Fatalf("read %d records after the failure", len(got))
	}
}

// TestFailedWriteStops covers a failed write (not sync), through a file system
// whose writes fail: the publisher gets ErrFailed and the cause.
func TestFailedWriteStops(t *testing.T) {
	fs := &failingWrites{Mem: vfs.NewMem()}
	cfg := memConfig(fs.Mem)
	cfg.FS = fs
	p := mustOpen(t, cfg)
	defer p.Close()
	appendBatches(t, p, "a", 3)
	hw := p.HighWatermark()
	fs.fail.Store(true)
	if _, err := p.Append(ctxT(t), testBatch("x", 1, 1)); !errors.Is(err, ErrFailed) || !errors.Is(err, errInjected) {
		t.Fatalf("append with a failing write = %v", err)
	}
	fs.fail.Store(false)
	if _, err := p.Append(ctxT(t), testBatch("y", 1, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after a failed write = %v, want ErrFailed", err)
	}
	if got := p.HighWatermark(); got != hw {
		t.Fatalf("high watermark moved to %d", got)
	}
}
