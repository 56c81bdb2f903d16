package logstore

import (
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// TestRollSealsTheActiveSegment: Roll seals a non-empty active segment (so that
// retention can remove it), is a no-op on an empty one, keeps every batch
// readable, and survives a reopen.
func TestRollSealsTheActiveSegment(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.SegmentBytes = 1 << 20
	p := mustOpen(t, cfg)
	ctx := ctxT(t)
	if err := p.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.Stats().Segments; n != 1 {
		t.Fatalf("Roll of an empty segment made %d segments, want 1", n)
	}
	appendBatches(t, p, "a", 5)
	if err := p.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	appendBatches(t, p, "b", 3)
	st := p.Stats()
	if st.Segments != 2 {
		t.Fatalf("%d segments after a roll, want 2", st.Segments)
	}
	if got := len(readAll(t, p, 0)); int64(got) != st.HighWatermark {
		t.Fatalf("read %d records, want %d", got, st.HighWatermark)
	}
	// Retention can now remove what was the active segment.
	removed, err := p.ApplyRetention(Retention{CapMessages: st.HighWatermark - 1}, time.Now())
	if err != nil || removed != 1 {
		t.Fatalf("retention removed %d, %v; want the rolled segment", removed, err)
	}
	hw, start := p.HighWatermark(), p.StartOffset()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = mustOpen(t, cfg)
	defer p.Close()
	if p.HighWatermark() != hw || p.StartOffset() != start {
		t.Fatalf("after reopen [%d, %d), want [%d, %d)", p.StartOffset(), p.HighWatermark(), start, hw)
	}
}
