package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// writeFile replaces a file's content, durably.
func writeFile(t testing.TB, fs vfs.FS, name string, data []byte) {
	t.Helper()
	putFile(t, fs.Create, name, data)
}

// appendFile appends data to a file, durably: damage that a crash cannot undo.
func appendFile(t testing.TB, fs vfs.FS, name string, data []byte) {
	t.Helper()
	putFile(t, fs.OpenAppend, name, data)
}

// putFile opens name with open, writes data and syncs it.
func putFile(t testing.TB, open func(string) (vfs.File, error), name string, data []byte) {
	t.Helper()
	f, err := open(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, fs vfs.FS, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealedLog builds a closed partition on vfs.Mem with at least five segments and
// returns its config and what was appended.
func sealedLog(t testing.TB) (Config, sentLog) {
	t.Helper()
	cfg := memConfig(vfs.NewMem())
	p := mustOpen(t, cfg)
	sent := sentLog{}
	appendMixed(t, p, sent, 150)
	if st := p.Stats(); st.Segments < 5 {
		t.Fatalf("want at least 5 segments, have %+v", st)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg, sent
}

// checkAll reads the whole partition and compares it with sent.
func checkAll(t testing.TB, p *Partition, sent sentLog) {
	t.Helper()
	got, err := readBatches(p, p.StartOffset(), 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	if err := sent.check(got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sent) {
		t.Fatalf("read %d batches, appended %d", len(got), len(sent))
	}
}

// TestTornTailTruncated damages the end of the active segment the ways a crash or
// a preallocating file system can, and checks that Open drops exactly the damage:
// the file is cut back to its last whole batch, every batch before it is intact,
// and the next append takes the offset after it. (A tail of zeros only is the clean
// end of a preallocated segment: TestZeroTailIsCleanEnd.)
func TestTornTailTruncated(t *testing.T) {
	next := func(hw int64) []byte {
		b := testBatch("next", 3, 5)
		batch.SetBaseOffset(b, hw)
		return b
	}
	tests := []struct {
		name string
		tail func(hw int64) []byte
	}{
		{"garbage", func(int64) []byte { return bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, 40) }},
		{"zeros then garbage", func(int64) []byte { return append(make([]byte, 4096), 1) }},
		{"zeros then a batch", func(hw int64) []byte { return append(make([]byte, 100), next(hw)...) }},
		{"length field only", func(hw int64) []byte { return next(hw)[:7] }},
		{"header only", func(hw int64) []byte { return next(hw)[:batch.HeaderSize] }},
		{"half a batch", func(hw int64) []byte { b := next(hw); return b[:len(b)/2] }},
		{"all but one byte", func(hw int64) []byte { b := next(hw); return b[:len(b)-1] }},
		{"bad crc", func(hw int64) []byte { b := next(hw); b[len(b)-1] ^= 1; return b }},
		{"wrong base offset", func(hw int64) []byte { b := next(hw); batch.SetBaseOffset(b, hw+1); return b }},
		{"repeated batch", func(hw int64) []byte { b := next(hw); batch.SetBaseOffset(b, hw-3); return b }},
		{"good batch then garbage", nil}, // the good batch survives; see below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, sent := sealedLog(t)
			logs := captureLogs(&cfg)
			segs := segmentPaths(t, cfg)
			active := segs[len(segs)-1]
			before := readFile(t, cfg.FS, active)
			p := mustOpen(t, cfg)
			hw := p.HighWatermark()
			p.Close()

			wantHW := hw
			if tt.tail == nil {
				good := next(hw)
				sent[hw] = bytes.Clone(good)
				wantHW += 3
				before = append(before, good...)
				appendFile(t, cfg.FS, active, append(good, 0xff, 0xff, 0xff))
			} else {
				appendFile(t, cfg.FS, active, tt.tail(hw))
			}

			p = mustOpen(t, cfg)
			defer func() { p.Close() }()
			if got := p.HighWatermark(); got != wantHW {
				t.Fatalf("high watermark %d after recovery, want %d", got, wantHW)
			}
			if after := readFile(t, cfg.FS, active); !bytes.Equal(after, before) {
				t.Fatalf("active segment is %d bytes after recovery, want the %d it had", len(after), len(before))
			}
			if !strings.Contains(logs.String(), "truncating torn tail") {
				t.Fatalf("recovery did not report the truncation; logs:\n%s", logs)
			}
			checkAll(t, p, sent)
			b := testBatch("after", 2, 9)
			sent[wantHW] = bytes.Clone(b)
			if base, err := p.Append(ctxT(t), b); err != nil || base != wantHW {
				t.Fatalf("append after recovery = %d, %v; want %d", base, err, wantHW)
			}
			p.Close()
			p = mustOpen(t, cfg)
			checkAll(t, p, sent)
		})
	}
}

// TestTornTailOfOnlySegment covers a log whose every byte is torn: it recovers
// empty and starts at offset 0.
func TestTornTailOfOnlySegment(t *testing.T) {
	cfg := memConfig(vfs.NewMem())
	p := mustOpen(t, cfg)
	p.Close()
	appendFile(t, cfg.FS, segmentName(cfg.Dir, 0), testBatch("torn", 2, 1)[:50])
	p = mustOpen(t, cfg)
	defer p.Close()
	if hw := p.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d, want 0", hw)
	}
	if base, err := p.Append(ctxT(t), testBatch("a", 1, 1)); err != nil || base != 0 {
		t.Fatalf("append = %d, %v", base, err)
	}
}

// TestLeftoverTmpRemoved checks that a half-written atomic file (an index whose
// write was interrupted) is removed on Open and does not disturb the log.
func TestLeftoverTmpRemoved(t *testing.T) {
	cfg, sent := sealedLog(t)
	tmp := indexName(segmentPaths(t, cfg)[1]) + ".tmp"
	writeFile(t, cfg.FS, tmp, []byte("half an ind"))
	p := mustOpen(t, cfg)
	defer p.Close()
	if cfg.FS.Exists(tmp) {
		t.Fatal("the .tmp file is still there")
	}
	checkAll(t, p, sent)
}

// TestDamagedIndexRebuilt damages the index of a sealed segment in the ways Open
// can detect and checks that the index is rebuilt, byte for byte, and that every
// offset reads correctly.
func TestDamagedIndexRebuilt(t *testing.T) {
	entry := func(b []byte, i int) []byte { return b[i*entrySize : (i+1)*entrySize] }
	tests := []struct {
		name   string
		damage func(idx []byte) []byte // nil result: remove the file
	}{
		{"missing", func([]byte) []byte { return nil }},
		{"empty", func([]byte) []byte { return []byte{} }},
		{"partial entry", func(b []byte) []byte { return b[:len(b)-5] }},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte{0xee}, len(b)) }},
		{"first entry not at the start", func(b []byte) []byte { binary.BigEndian.PutUint32(entry(b, 0)[4:], 7); return b }},
		{"entries out of order", func(b []byte) []byte {
			e1, e2 := bytes.Clone(entry(b, 1)), bytes.Clone(entry(b, 2))
			copy(entry(b, 1), e2)
			copy(entry(b, 2), e1)
			return b
		}},
		{"last entry past the end", func(b []byte) []byte {
			binary.BigEndian.PutUint32(entry(b, len(b)/entrySize-1)[4:], 1<<30)
			return b
		}},
		{"last entry off a batch start", func(b []byte) []byte {
			e := entry(b, len(b)/entrySize-1)[4:]
			binary.BigEndian.PutUint32(e, binary.BigEndian.Uint32(e)+1)
			return b
		}},
		{"timestamps out of order", func(b []byte) []byte { binary.BigEndian.PutUint64(entry(b, 2)[8:], 1<<62); return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, sent := sealedLog(t)
			logs := captureLogs(&cfg)
			idx := indexName(segmentPaths(t, cfg)[1])
			orig := readFile(t, cfg.FS, idx)
			if len(orig) < 3*entrySize {
				t.Fatalf("index has %d entries; the cases need 3", len(orig)/entrySize)
			}
			if d := tt.damage(bytes.Clone(orig)); d == nil {
				if err := cfg.FS.Remove(idx); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, cfg.FS, idx, d)
			}
			p := mustOpen(t, cfg)
			defer p.Close()
			if !strings.Contains(logs.String(), "rebuilding segment index") {
				t.Fatalf("the damage went unnoticed; logs:\n%s", logs)
			}
			if got := readFile(t, cfg.FS, idx); !bytes.Equal(got, orig) {
				t.Fatalf("rebuilt index differs from the original:\n got %x\nwant %x", got, orig)
			}
			for off := range p.HighWatermark() {
				got, _, err := readOnce(p, off, 1)
				if err != nil {
					t.Fatal(err)
				}
				if err := sent.check(got); err != nil {
					t.Fatal(err)
				}
			}
			checkAll(t, p, sent)
		})
	}
}

// TestIndexDamageUndetectedByOpen damages an index entry in a way its structure
// does not reveal (a middle entry pointing a byte past its batch). Open trusts it;
// the damage shows when a read through that entry fails to verify. The data itself
// is healthy, so the segment must not be quarantined: the index is rebuilt and the
// read succeeds.
func TestIndexDamageUndetectedByOpen(t *testing.T) {
	cfg, sent := sealedLog(t)
	seg := segmentPaths(t, cfg)[1]
	idx := readFile(t, cfg.FS, indexName(seg))
	e := idx[entrySize+4 : entrySize+8] // position of entry 1
	binary.BigEndian.PutUint32(e, binary.BigEndian.Uint32(e)+1)
	writeFile(t, cfg.FS, indexName(seg), idx)
	p := mustOpen(t, cfg)
	defer p.Close()
	for off := range p.HighWatermark() {
		got, _, err := readOnce(p, off, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := sent.check(got); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.FS.Exists(seg + badSuffix) {
		t.Fatal("a healthy segment was quarantined for a damaged index")
	}
	checkAll(t, p, sent)
}

// flipInFirstBatch flips a bit in the last record byte of a segment's first batch,
// where only the CRC can notice it.
func flipInFirstBatch(t testing.TB, fs vfs.FS, seg string) {
	t.Helper()
	data := readFile(t, fs, seg)
	size, err := batch.PeekSize(data)
	if err != nil {
		t.Fatal(err)
	}
	data[size-2] ^= 0x04
	writeFile(t, fs, seg, data)
}

// segmentRange returns the offsets [base, next) a segment file holds.
func segmentRange(t testing.TB, fs vfs.FS, seg string) (int64, int64) {
	t.Helper()
	data := readFile(t, fs, seg)
	var first, next int64 = -1, -1
	for len(data) > 0 {
		size, err := batch.PeekSize(data)
		if err != nil {
			t.Fatal(err)
		}
		h, err := batch.ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		if first < 0 {
			first = h.BaseOffset
		}
		next = h.NextOffset()
		data = data[size:]
	}
	return first, next
}

// checkQuarantined checks that the segment is renamed .bad with its index gone,
// and that reading the partition skips exactly its offsets: everything else is
// there, and none of its bytes are served.
func checkQuarantined(t testing.TB, p *Partition, cfg Config, seg string, sent sentLog, lost [2]int64) {
	t.Helper()
	fs := cfg.FS
	if !fs.Exists(seg+badSuffix) || fs.Exists(seg) || fs.Exists(indexName(seg)) {
		t.Fatalf("after quarantine: .bad %v, .log %v, .index %v; want only .bad",
			fs.Exists(seg+badSuffix), fs.Exists(seg), fs.Exists(indexName(seg)))
	}
	var got []storedBatch
	off := p.StartOffset()
	if lost[0] == 0 {
		if off != lost[1] {
			t.Fatalf("StartOffset %d after losing the first segment [0, %d)", off, lost[1])
		}
		if _, _, err := p.Read(0, 100, nil); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Read(0) = %v, want ErrOutOfRange", err)
		}
	}
	for off < p.HighWatermark() {
		data, next, err := p.Read(off, 4<<10, nil)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		for len(data) > 0 {
			size, _ := batch.PeekSize(data)
			h, err := batch.Verify(data[:size])
			if err != nil {
				t.Fatalf("Read(%d) returned a bad batch: %v", off, err)
			}
			if h.BaseOffset < lost[1] && h.NextOffset() > lost[0] {
				t.Fatalf("Read(%d) returned batch [%d, %d) of the quarantined segment", off, h.BaseOffset, h.NextOffset())
			}
			got = append(got, storedBatch{base: h.BaseOffset, next: h.NextOffset(), data: data[:size]})
			data = data[size:]
		}
		off = next
	}
	if err := sent.check(got); err != nil {
		t.Fatal(err)
	}
	want := 0
	for base := range sent {
		if base < lost[0] || base >= lost[1] {
			want++
		}
	}
	if len(got) != want {
		t.Fatalf("read %d batches outside the quarantined range, want %d", len(got), want)
	}
}

// TestBitFlipInSealedSegment flips a bit in a sealed segment whose index is
// intact, so that Open does not notice: the read that meets it gets ErrCorrupt and
// no data, the segment is quarantined, and later reads, also after a reopen, skip
// its offsets and serve everything else.
func TestBitFlipInSealedSegment(t *testing.T) {
	for _, which := range []int{0, 2} {
		t.Run(fmt.Sprintf("segment %d", which), func(t *testing.T) {
			cfg, sent := sealedLog(t)
			logs := captureLogs(&cfg)
			seg := segmentPaths(t, cfg)[which]
			lo, hi := segmentRange(t, cfg.FS, seg)
			flipInFirstBatch(t, cfg.FS, seg)
			p := mustOpen(t, cfg)
			defer func() { p.Close() }()
			hw := p.HighWatermark()

			data, _, err := p.Read(lo, 4<<10, nil)
			if !errors.Is(err, ErrCorrupt) || data != nil {
				t.Fatalf("Read(%d) of the flipped batch = %d bytes, %v; want no data and ErrCorrupt", lo, len(data), err)
			}
			if !strings.Contains(logs.String(), "corrupt data in segment") {
				t.Fatalf("corruption not reported; logs:\n%s", logs)
			}
			checkQuarantined(t, p, cfg, seg, sent, [2]int64{lo, hi})
			if which > 0 {
				// A read inside the lost range continues at the next segment.
				data, next, err := p.Read(lo+1, 4<<10, nil)
				h, _ := batch.ParseHeader(data)
				if err != nil || h.BaseOffset != hi || next <= hi {
					t.Fatalf("Read(%d) in the quarantined range = base %d, next %d, %v; want data from %d", lo+1, h.BaseOffset, next, err, hi)
				}
			}
			if base, err := p.Append(ctxT(t), testBatch("after", 1, 1)); err != nil || base != hw {
				t.Fatalf("append after the quarantine = %d, %v; want %d", base, err, hw)
			}
			sent[hw] = testBatch("after", 1, 1)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			p = mustOpen(t, cfg)
			checkQuarantined(t, p, cfg, seg, sent, [2]int64{lo, hi})
		})
	}
}

// TestBitFlipInSealedSegmentWithoutIndex: with the index gone, Open scans the
// segment to rebuild it, finds the flipped bit and quarantines the segment at once.
func TestBitFlipInSealedSegmentWithoutIndex(t *testing.T) {
	cfg, sent := sealedLog(t)
	logs := captureLogs(&cfg)
	seg := segmentPaths(t, cfg)[2]
	lo, hi := segmentRange(t, cfg.FS, seg)
	flipInFirstBatch(t, cfg.FS, seg)
	if err := cfg.FS.Remove(indexName(seg)); err != nil {
		t.Fatal(err)
	}
	p := mustOpen(t, cfg)
	defer p.Close()
	if !strings.Contains(logs.String(), "quarantined") {
		t.Fatalf("quarantine not reported; logs:\n%s", logs)
	}
	checkQuarantined(t, p, cfg, seg, sent, [2]int64{lo, hi})
	if st := p.Stats(); st.Segments != len(segmentPaths(t, cfg)) {
		t.Fatalf("Stats counts %d segments, the directory has %d", st.Segments, len(segmentPaths(t, cfg)))
	}
}

// TestQuarantinedRangeAtTheEnd: when the quarantined segment is the last sealed
// one and the active segment is empty, a reader inside the lost range is at the
// end of the log: it gets no data and the high watermark as next, not an error,
// and it gets the next append.
func TestQuarantinedRangeAtTheEnd(t *testing.T) {
	cfg, _ := sealedLog(t)
	segs := segmentPaths(t, cfg)
	last := segs[len(segs)-2]
	lo, _ := segmentRange(t, cfg.FS, last)
	writeFile(t, cfg.FS, segs[len(segs)-1], nil) // the active segment lost its (unsynced) data
	flipInFirstBatch(t, cfg.FS, last)
	if err := cfg.FS.Remove(indexName(last)); err != nil {
		t.Fatal(err)
	}
	p := mustOpen(t, cfg)
	defer p.Close()
	if !cfg.FS.Exists(last + badSuffix) {
		t.Fatal("the damaged segment was not quarantined")
	}
	hw := p.HighWatermark()
	for _, off := range []int64{lo, lo + 1, hw - 1} {
		data, next, err := p.Read(off, 1<<10, nil)
		if err != nil || len(data) != 0 || next != hw {
			t.Fatalf("Read(%d) in the lost range at the end = %d bytes, next %d, %v; want nothing, next %d", off, len(data), next, err, hw)
		}
	}
	if _, err := p.Append(ctxT(t), testBatch("new", 1, 1)); err != nil {
		t.Fatal(err)
	}
	got, _, err := readOnce(p, hw, 1<<10)
	if err != nil || len(got) != 1 {
		t.Fatalf("Read(%d) after an append = %d batches, %v", hw, len(got), err)
	}
	data, next, err := p.Read(lo, 1<<10, nil)
	if h, _ := batch.ParseHeader(data); err != nil || h.BaseOffset != hw || next != hw+1 {
		t.Fatalf("Read(%d) = batch at %d, next %d, %v; want the new batch at %d", lo, h.BaseOffset, next, err, hw)
	}
}
