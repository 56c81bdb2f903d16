package logstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// TestRetention removes old segments by age, size and count, and checks what a
// consumer sees: the log starts later, reads before the start are out of range,
// everything kept reads back unchanged, the removal survives a reopen and a crash,
// and the bound is met without removing more than needed.
func TestRetention(t *testing.T) {
	const batches = 600 // batch i has timestamp 1000+i (ms); about 9 segments
	tests := []struct {
		name string
		r    Retention
		now  time.Time
	}{
		{"age", Retention{MaxAge: time.Second}, time.UnixMilli(1000 + 300 + 1000)}, // keeps timestamps from 1300
		{"bytes", Retention{MaxBytes: 20 << 10}, time.UnixMilli(0)},
		{"messages", Retention{MaxMessages: 500}, time.UnixMilli(0)},
		{"everything sealed", Retention{MaxAge: time.Millisecond}, time.UnixMilli(1 << 50)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			cfg := memConfig(fs)
			p := mustOpen(t, cfg)
			defer func() { p.Close() }()
			sent := sentLog{}
			for i := range batches {
				b := testBatch(fmt.Sprint(i), 1+i%3, int64(1000+i))
				c := append([]byte(nil), b...)
				base, err := p.Append(ctxT(t), b)
				if err != nil {
					t.Fatal(err)
				}
				sent[base] = c
			}
			before := p.Stats()
			removed, err := p.ApplyRetention(tt.r, tt.now)
			if err != nil || removed == 0 {
				t.Fatalf("ApplyRetention = %d, %v; want some segments removed", removed, err)
			}
			after := p.Stats()
			if after.Segments != before.Segments-removed || after.HighWatermark != before.HighWatermark {
				t.Fatalf("stats %+v after removing %d of %+v", after, removed, before)
			}
			start := p.StartOffset()
			if files := segmentPaths(t, cfg); len(files) != after.Segments || fs.Exists(indexName(segmentName(cfg.Dir, 0))) {
				t.Fatalf("%d segment files (and an old index: %v) for %d segments", len(files), fs.Exists(indexName(segmentName(cfg.Dir, 0))), after.Segments)
			}
			switch {
			case tt.r.MaxMessages > 0:
				checkBound(t, "messages", after.HighWatermark-start, tt.r.MaxMessages, p)
			case tt.r.MaxBytes > 0:
				checkBound(t, "bytes", after.Bytes, tt.r.MaxBytes, p)
			case tt.r.MaxAge == time.Millisecond:
				if after.Segments != 1 {
					t.Fatalf("%d segments left; every sealed one is expired", after.Segments)
				}
			default: // removed segments had expired; the oldest kept one has not
				bound := tt.now.Add(-tt.r.MaxAge).UnixMilli()
				for base, b := range sent {
					if h, _ := batch.ParseHeader(b); base < start && h.MaxTimestamp >= bound {
						t.Fatalf("removed batch at %d with timestamp %d, not older than %d", base, h.MaxTimestamp, bound)
					}
				}
				if after.OldestTimestamp < bound {
					t.Fatalf("kept a segment whose newest record (%d) is older than %d", after.OldestTimestamp, bound)
				}
			}
			check := func(when string) {
				t.Helper()
				if _, _, err := p.Read(start-1, 1<<10, nil); !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("%s: Read before the start = %v, want ErrOutOfRange", when, err)
				}
				got, err := readBatches(p, start, 4<<10)
				if err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if err := sent.check(got); err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if n := countFrom(sent, start); len(got) != n {
					t.Fatalf("%s: read %d batches from %d, want %d", when, len(got), start, n)
				}
			}
			check("after retention")
			fs.Crash(nil) // the removal must be durable without Close
			p.Close()
			p = mustOpen(t, cfg)
			if got := p.StartOffset(); got != start {
				t.Fatalf("after a crash the log starts at %d, retention had moved it to %d", got, start)
			}
			check("after a crash")
		})
	}
}

// checkBound checks that the partition still holds at least bound (of what) and
// that removing its oldest segment would have gone below: retention removed what
// it had to and no more.
func checkBound(t *testing.T, what string, have, bound int64, p *Partition) {
	t.Helper()
	if have < bound {
		t.Fatalf("%d %s left, below the bound %d", have, what, bound)
	}
	p.mu.RLock()
	s := p.segs[0]
	p.mu.RUnlock()
	s.mu.Lock()
	first := map[string]int64{"bytes": s.size, "messages": s.next - s.base}[what]
	s.mu.Unlock()
	if have-first >= bound {
		t.Fatalf("%d %s left; without the oldest segment (%d) the bound %d would still hold", have, what, first, bound)
	}
}

func countFrom(sent sentLog, start int64) int {
	n := 0
	for base := range sent {
		if base >= start {
			n++
		}
	}
	return n
}

func TestRetentionKeepsTheActiveSegment(t *testing.T) {
	p := mustOpen(t, memConfig(vfs.NewMem()))
	defer p.Close()
	appendBatches(t, p, "a", 3)
	if n, err := p.ApplyRetention(Retention{MaxAge: time.Nanosecond, MaxBytes: 1, MaxMessages: 1}, time.UnixMilli(1<<50)); err != nil || n != 0 {
		t.Fatalf("ApplyRetention on a single segment = %d, %v", n, err)
	}
	if got := readAll(t, p, 0); len(got) != 6 {
		t.Fatalf("read %d records, want 6", len(got))
	}
	p.Close()
	if _, err := p.ApplyRetention(Retention{MaxBytes: 1}, time.Now()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ApplyRetention after Close = %v", err)
	}
}
