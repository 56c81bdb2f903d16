package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// sentLog is what a test appended: batch bytes as sent, by base offset.
type sentLog map[int64][]byte

// appendMixed appends n batches of varied sizes (1 to 40 records of 10 to 200
// bytes, so some batches span several index intervals) and records them.
func appendMixed(t testing.TB, p *Partition, sent sentLog, n int) {
	t.Helper()
	for i := range n {
		recs := make([]batch.Record, 1+(i*7)%40)
		for j := range recs {
			recs[j] = batch.Record{Timestamp: int64(i), Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{byte(j)}, 10+(i*j*13)%190)}
		}
		b := batch.Append(nil, recs)
		c := bytes.Clone(b)
		base, err := p.Append(ctxT(t), b)
		if err != nil {
			t.Fatal(err)
		}
		sent[base] = c
	}
}

// check compares batches read back with what was sent at their offsets.
func (s sentLog) check(got []storedBatch) error {
	for _, b := range got {
		if !sameBatch(b.data, s[b.base]) {
			return fmt.Errorf("batch at %d does not match what was appended there", b.base)
		}
	}
	return nil
}

// TestReadContract reads from every offset with limits from 1 byte up, across
// sealed segments and the active one, for logs of mixed batch sizes and of uniform
// ones (which put batch boundaries at every distance from the read window's end):
// every Read returns the batch holding the offset, whole and verified, and never
// more than maxBytes unless it is one batch. Small limits once made Read report
// healthy sealed segments corrupt and quarantine them; huge ones made it panic.
func TestReadContract(t *testing.T) {
	shapes := map[string]func(p *Partition, sent sentLog){
		"mixed": func(p *Partition, sent sentLog) { appendMixed(t, p, sent, 120) },
	}
	// Batch sizes growing a byte at a time put batch boundaries at every distance
	// from the end of a read window.
	shapes["growing"] = func(p *Partition, sent sentLog) {
		for i := range 200 {
			b := batch.Append(nil, []batch.Record{{Value: bytes.Repeat([]byte{'v'}, i)}})
			c := bytes.Clone(b)
			base, err := p.Append(ctxT(t), b)
			if err != nil {
				t.Fatal(err)
			}
			sent[base] = c
		}
	}
	for n := 1; n <= 8; n++ {
		shapes[fmt.Sprintf("uniform-%d", n)] = func(p *Partition, sent sentLog) {
			for i := range 60 {
				b := testBatch(fmt.Sprintf("b%03d", i), n, int64(i))
				c := bytes.Clone(b)
				base, err := p.Append(ctxT(t), b)
				if err != nil {
					t.Fatal(err)
				}
				sent[base] = c
			}
		}
	}
	for name, fill := range shapes {
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewMem()
			p := mustOpen(t, memConfig(fs))
			defer p.Close()
			sent := sentLog{}
			fill(p, sent)
			hw := p.HighWatermark()
			for _, maxBytes := range []int{1, 11, 12, 13, 100, 300, 1000, 5000, math.MaxInt} {
				for off := int64(0); off <= hw; off++ {
					got, _, err := readOnce(p, off, maxBytes)
					if err != nil {
						t.Fatal(err)
					}
					if err := sent.check(got); err != nil {
						t.Fatalf("Read(%d, %d): %v", off, maxBytes, err)
					}
				}
			}
			if st := p.Stats(); st.StartOffset != 0 || st.HighWatermark != hw {
				t.Fatalf("reads changed the log: %+v", st)
			}
			for _, name := range mustReadDir(t, fs, "/data/p0") {
				if strings.HasSuffix(name, badSuffix) {
					t.Fatalf("a healthy segment was quarantined: %s", name)
				}
			}
		})
	}
}

// TestReadAfterIndexIntervalShrinks reopens a log with a smaller IndexIntervalBytes
// than it was written with: the sealed segments keep their sparse indexes, and
// every offset must still be found.
func TestReadAfterIndexIntervalShrinks(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	cfg.IndexIntervalBytes = 4 << 10
	p := mustOpen(t, cfg)
	sent := sentLog{}
	appendMixed(t, p, sent, 120)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.IndexIntervalBytes = 64
	p = mustOpen(t, cfg)
	defer p.Close()
	for _, maxBytes := range []int{1, 100, 64 << 10} {
		for off := range p.HighWatermark() {
			got, _, err := readOnce(p, off, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := sent.check(got); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestReadBounds(t *testing.T) {
	p := mustOpen(t, memConfig(vfs.NewMem()))
	appendBatches(t, p, "b", 3) // offsets [0, 6)
	hw := p.HighWatermark()
	if data, next, err := p.Read(hw, 100, nil); err != nil || data != nil || next != hw {
		t.Fatalf("Read at the high watermark = %d bytes, next %d, %v; want nothing, %d", len(data), next, err, hw)
	}
	for _, off := range []int64{hw + 1, -1, math.MaxInt64} {
		if _, _, err := p.Read(off, 100, nil); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Read(%d) = %v, want ErrOutOfRange", off, err)
		}
	}
	if _, _, err := p.Read(0, 0, nil); err == nil {
		t.Fatal("Read with maxBytes 0 succeeded")
	}
	// Read uses the caller's buffer when it is big enough.
	buf := make([]byte, 64<<10)
	data, _, err := p.Read(0, 1<<10, buf)
	if err != nil || len(data) == 0 || &data[0] != &buf[0] {
		t.Fatalf("Read into a large buffer: %d bytes, %v, aliasing %v", len(data), err, len(data) > 0 && &data[0] == &buf[0])
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Read(0, 100, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v, want ErrClosed", err)
	}
	if _, err := p.Append(ctxT(t), testBatch("x", 1, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestAppendSeveralBatches checks that one Append of several batches stores them
// at consecutive offsets, and that Append rejects what is not a valid batch
// without touching the log.
func TestAppendSeveralBatches(t *testing.T) {
	p := mustOpen(t, memConfig(vfs.NewMem()))
	defer p.Close()
	a, b := testBatch("a", 2, 1), testBatch("b", 3, 2)
	base, err := p.Append(ctxT(t), a, b)
	if err != nil || base != 0 {
		t.Fatalf("Append = %d, %v", base, err)
	}
	got := readAll(t, p, 0)
	if len(got) != 5 || string(got[1].Value) != "a-1" || string(got[2].Value) != "b-0" || got[4].Offset != 4 {
		t.Fatalf("read %+v", got)
	}
	bad := testBatch("c", 1, 0)
	bad[len(bad)-1] ^= 1
	for name, args := range map[string][][]byte{
		"none":        nil,
		"crc":         {bad},
		"truncated":   {testBatch("c", 1, 0)[:40]},
		"one bad one": {testBatch("c", 1, 0), bad},
	} {
		if _, err := p.Append(ctxT(t), args...); err == nil {
			t.Fatalf("Append(%s) succeeded", name)
		}
	}
	if hw := p.HighWatermark(); hw != 5 {
		t.Fatalf("rejected appends moved the high watermark to %d", hw)
	}
}

// TestOffsetForTime looks up timestamps across sealed segments and the active one.
func TestOffsetForTime(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	p := mustOpen(t, cfg)
	defer p.Close()
	// Batch i has 2 records with timestamp 1000+10*i.
	for i := range 300 {
		if _, err := p.Append(ctxT(t), testBatch(fmt.Sprint(i), 2, int64(1000+10*i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ ts, want int64 }{
		{0, 0}, {1000, 0}, {1001, 2}, {1010, 2}, {1500, 100}, {3990, 598}, {3991, 600}, {1 << 50, 600},
	} {
		got, err := p.OffsetForTime(time.UnixMilli(tc.ts))
		if err != nil || got != tc.want {
			t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", tc.ts, got, err, tc.want)
		}
	}
}

func mustReadDir(t testing.TB, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}
