package logstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// TestSyncInterval: appends are acknowledged and visible at once, before any
// sync; the background sync then makes them durable without further appends, and
// a clean Close keeps everything.
func TestSyncInterval(t *testing.T) {
	fs := newSyncTracker()
	cfg := memConfig(fs.Mem)
	cfg.FS = fs
	cfg.Sync, cfg.SyncInterval = SyncInterval, 2*time.Millisecond
	p := mustOpen(t, cfg)
	l := newLedger()
	rng := rand.New(rand.NewPCG(1, 1))
	l.appendAcked(t, p, rng, "", 50, func(base int64) {
		if hw := p.HighWatermark(); hw <= base {
			t.Fatalf("acknowledged batch at %d is not visible: high watermark %d", base, hw)
		}
	})
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
	// With nothing appended meanwhile, the ticker alone makes every acknowledged
	// batch durable.
	segs := segmentPaths(t, cfg)
	active := segs[len(segs)-1]
	eventually(t, "a background sync covers the active segment", func() bool { return fs.durable(active) })
	fs.Crash(rand.New(rand.NewPCG(2, 2)))
	p.Close()
	p = mustOpen(t, cfg)
	if err := checkRecovered(p, l); err != nil {
		t.Fatalf("after a crash following the interval sync: %v", err)
	}
	// A clean Close keeps what was acknowledged since.
	l.appendAcked(t, p, rng, "b", 20, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	fs.Crash(nil) // keeps only synced bytes: Close must have synced
	p = mustOpen(t, cfg)
	defer p.Close()
	if err := checkRecovered(p, l); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

// TestSyncNever: appends are acknowledged and visible without a single sync, and
// Close syncs them. (A crash before Close loses them: that is the policy.)
func TestSyncNever(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.Sync = SyncNever
	cfg.SegmentBytes = 1 << 20 // no roll, whose sync would blur the check
	p := mustOpen(t, cfg)
	l := newLedger()
	rng := rand.New(rand.NewPCG(1, 1))
	l.appendAcked(t, p, rng, "", 50, nil)
	if n := fs.Syncs(); n != 0 {
		t.Fatalf("SyncNever synced %d times before Close", n)
	}
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if fs.Syncs() == 0 {
		t.Fatal("Close did not sync")
	}
	fs.Crash(nil)
	p = mustOpen(t, cfg)
	defer p.Close()
	if err := checkRecovered(p, l); err != nil {
		t.Fatalf("after Close and a crash: %v", err)
	}
}

type waitResult struct {
	hw  int64
	err error
}

func waitAsync(ctx context.Context, p *Partition, off int64) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		hw, err := p.Wait(ctx, off)
		ch <- waitResult{hw, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

// TestWait: Wait returns at once below the high watermark, wakes when an append
// passes it, and ends with the context or Close.
func TestWait(t *testing.T) {
	p := mustOpen(t, memConfig(vfs.NewMem()))
	defer p.Close()
	appendBatches(t, p, "a", 2) // offsets [0, 3)
	if hw, err := p.Wait(ctxT(t), 1); err != nil || hw != 3 {
		t.Fatalf("Wait below the high watermark = %d, %v; want 3", hw, err)
	}

	woken := waitAsync(ctxT(t), p, 3)
	base, err := p.Append(ctxT(t), testBatch("b", 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	if r := receive(t, woken); r.err != nil || r.hw != base+2 {
		t.Fatalf("Wait woke with %d, %v; want %d", r.hw, r.err, base+2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := waitAsync(ctx, p, p.HighWatermark())
	cancel()
	if r := receive(t, cancelled); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want context.Canceled", r.err)
	}

	closed := waitAsync(ctxT(t), p, p.HighWatermark())
	p.Close()
	if r := receive(t, closed); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("Wait across Close = %v, want ErrClosed", r.err)
	}
}

// TestTailFollow: a follower blocked in Wait reads every record a concurrent
// publisher appends, in order, as they become visible.
func TestTailFollow(t *testing.T) {
	p := mustOpen(t, memConfig(vfs.NewMem()))
	defer p.Close()
	const batches = 300
	ctx := ctxT(t)
	got := make(chan []string, 1)
	go func() {
		var vals []string
		off := int64(0)
		for len(vals) < batches {
			hw, err := p.Wait(ctx, off)
			if err != nil {
				break
			}
			for off < hw {
				data, next, err := p.Read(off, 1<<10, nil)
				if err != nil {
					got <- append(vals, "read error: "+err.Error())
					return
				}
				recs, err := decodeBatches(data)
				if err != nil {
					got <- append(vals, "decode error: "+err.Error())
					return
				}
				for _, r := range recs {
					vals = append(vals, string(r.Value))
				}
				off = next
			}
		}
		got <- vals
	}()
	for i := range batches {
		if _, err := p.Append(ctxT(t), testBatch(fmt.Sprint(i), 1, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	var vals []string
	select {
	case vals = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("follower did not finish")
	}
	if len(vals) != batches {
		t.Fatalf("follower read %d records, want %d: %v", len(vals), batches, vals[max(0, len(vals)-3):])
	}
	for i, v := range vals {
		if want := fmt.Sprintf("%d-0", i); v != want {
			t.Fatalf("record %d = %q, want %q", i, v, want)
		}
	}
}
