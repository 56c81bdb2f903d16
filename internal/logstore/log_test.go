package logstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

func TestAppendReadAcrossSegmentsAndReopen(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	p := mustOpen(t, cfg)
	ctx := ctxT(t)
	var want []string
	for i := range 200 {
		tag := fmt.Sprintf("b%d", i)
		base, err := p.Append(ctx, testBatch(tag, 3, int64(1000+i)))
		if err != nil {
			t.Fatal(err)
		}
		if base != int64(3*i) {
			t.Fatalf("batch %d got base %d, want %d", i, base, 3*i)
		}
		for j := range 3 {
			want = append(want, fmt.Sprintf("%s-%d", tag, j))
		}
	}
	check := func(p *Partition) {
		t.Helper()
		got := readAll(t, p, 0)
		if len(got) != len(want) {
			t.Fatalf("read %d records, want %d", len(got), len(want))
		}
		for i, r := range got {
			if r.Offset != int64(i) || string(r.Value) != want[i] {
				t.Fatalf("record %d = offset %d %q, want %q", i, r.Offset, r.Value, want[i])
			}
		}
		// Reads from the middle start at the right record.
		mid := readAll(t, p, 301)
		if len(mid) != len(want)-301 || string(mid[0].Value) != want[301] {
			t.Fatalf("read from 301: %d records, first %q", len(mid), mid[0].Value)
		}
	}
	check(p)
	if st := p.Stats(); st.Segments < 3 {
		t.Fatalf("want several segments, have %+v", st)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = mustOpen(t, cfg)
	defer p.Close()
	check(p)
	off, err := p.OffsetForTime(time.UnixMilli(1100))
	if err != nil || off != 300 {
		t.Fatalf("OffsetForTime(1100) = %d, %v; want 300", off, err)
	}
}
