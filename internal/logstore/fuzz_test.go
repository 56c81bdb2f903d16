package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// recoverBase is the log FuzzRecover damages: four segments of a partition with
// 4 KiB segments and a 256-byte index interval, built once per process.
var recoverBase = sync.OnceValues(func() (map[string][]byte, sentLog) {
	fs := vfs.NewMem()
	cfg := fuzzConfig(fs)
	p, err := Open(cfg)
	if err != nil {
		panic(err)
	}
	sent := sentLog{}
	for i := range 60 {
		recs := make([]batch.Record, 1+i%5)
		for j := range recs {
			recs[j] = batch.Record{Timestamp: int64(i), Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{byte(i)}, 20+(i*j*7)%80)}
		}
		b := batch.Append(nil, recs)
		c := bytes.Clone(b)
		base, err := p.Append(context.Background(), b)
		if err != nil {
			panic(err)
		}
		sent[base] = c
	}
	if err := p.Close(); err != nil {
		panic(err)
	}
	files := map[string][]byte{}
	names, _ := fs.ReadDir(cfg.Dir)
	for _, n := range names {
		files[n], _ = fs.ReadFile(filepath.Join(cfg.Dir, n))
	}
	return files, sent
})

func fuzzConfig(fs vfs.FS) Config {
	return Config{Dir: "/data/p0", FS: fs, SegmentBytes: MinSegmentBytes, IndexIntervalBytes: 256, Logger: quietLogger}
}

// Damage operations, 4 bytes each: file, kind, position (2 bytes, big-endian).
const (
	opTruncate = iota // cut the file at position
	opFlip            // flip bit (kind>>4)&7 of the byte at position
	opRemove          // remove the file
	opGarbage         // append position%64+1 bytes of value kind
	opKinds
)

// applyDamage applies the operations in ops to the files of the base log, sorted
// by name, and returns the damaged files.
func applyDamage(ops []byte) map[string][]byte {
	base, _ := recoverBase()
	files := map[string][]byte{}
	var names []string
	for n, b := range base {
		files[n] = bytes.Clone(b)
		names = append(names, n)
	}
	sort.Strings(names)
	for len(ops) >= 4 && len(names) > 0 {
		i := int(ops[0]) % len(names)
		name, kind, pos := names[i], ops[1], int(ops[2])<<8|int(ops[3])
		ops = ops[4:]
		data := files[name]
		switch kind % opKinds {
		case opTruncate:
			files[name] = data[:pos%(len(data)+1)]
		case opFlip:
			if len(data) > 0 {
				data[pos%len(data)] ^= 1 << (kind >> 4 & 7)
			}
		case opRemove:
			delete(files, name)
			names = append(names[:i], names[i+1:]...)
		case opGarbage:
			files[name] = append(data, bytes.Repeat([]byte{kind}, pos%64+1)...)
		}
	}
	return files
}

// FuzzRecover damages the files of a small log (truncations, bit flips, removed
// files, appended garbage, in any mix) and opens it. Open must not panic; it may
// fail, but if it succeeds, every Read returns whole batches that verify and hold
// exactly what was appended at their offsets, or ErrCorrupt (after which the
// segment is quarantined and reading goes on), and the log takes a new append.
// Run with:
//
//	go test -run '^$' -fuzz FuzzRecover -fuzztime 20s ./internal/logstore
func FuzzRecover(f *testing.F) {
	// The seeds name files by their index in the sorted listing: 0 the first index,
	// 1 the first segment, ..., 6 the active segment.
	if files, _ := recoverBase(); len(files) != 7 {
		f.Fatalf("the base log has %d files; the seeds expect 4 segments and 3 indexes", len(files))
	}
	f.Add([]byte{})
	f.Add([]byte{6, opTruncate, 0x01, 0x00})       // the active segment cut short
	f.Add([]byte{1, opFlip | 0x30, 0x00, 0x40})    // a bit of the first segment
	f.Add([]byte{0, opRemove, 0, 0})               // an index removed
	f.Add([]byte{2, opFlip, 0x00, 0x17})           // a bit of an index
	f.Add([]byte{3, opGarbage | 0x70, 0x00, 0x20}) // garbage after a sealed segment
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			return
		}
		fs := vfs.NewMem()
		cfg := fuzzConfig(fs)
		if err := fs.MkdirAll(cfg.Dir); err != nil {
			t.Fatal(err)
		}
		for name, data := range applyDamage(ops) {
			writeFile(t, fs, filepath.Join(cfg.Dir, name), data)
		}
		p, err := Open(cfg)
		if err != nil {
			return
		}
		defer p.Close()
		_, sent := recoverBase()
		var end int64
		for base, b := range sent {
			h, _ := batch.ParseHeader(b)
			end = max(end, base+int64(h.NumRecords))
		}
		hw := p.HighWatermark()
		if start := p.StartOffset(); start > hw || hw > end {
			t.Fatalf("recovered log [%d, %d) from a log of [0, %d)", start, hw, end)
		}
		off := p.StartOffset()
		for corrupt := 0; off < hw; {
			data, next, err := p.Read(off, 1+int(off%3)*700, nil)
			switch {
			case errors.Is(err, ErrCorrupt):
				if data != nil {
					t.Fatalf("Read(%d) returned data with ErrCorrupt", off)
				}
				if corrupt++; corrupt > 8 {
					t.Fatalf("Read(%d) keeps failing: %v", off, err)
				}
				continue
			case errors.Is(err, ErrOutOfRange):
				// The segment holding off was quarantined and it was the first.
				if start := p.StartOffset(); start <= off {
					t.Fatalf("Read(%d) out of range with StartOffset %d: %v", off, start, err)
				}
				off = p.StartOffset()
				continue
			case err != nil:
				t.Fatalf("Read(%d): %v", off, err)
			}
			if len(data) == 0 {
				// Only at the end of the log: off is in a lost range before it.
				if next != hw {
					t.Fatalf("Read(%d) returned no data and next %d below the high watermark %d", off, next, hw)
				}
				off = next
				continue
			}
			expect := int64(-1)
			for rest := data; len(rest) > 0; {
				size, err := batch.PeekSize(rest)
				if err != nil || size > len(rest) {
					t.Fatalf("Read(%d) returned a partial batch", off)
				}
				h, err := batch.Verify(rest[:size])
				if err != nil {
					t.Fatalf("Read(%d) returned a bad batch: %v", off, err)
				}
				if expect >= 0 && h.BaseOffset != expect {
					t.Fatalf("Read(%d): batch at %d after one ending at %d", off, h.BaseOffset, expect)
				}
				if expect < 0 && h.NextOffset() <= off {
					t.Fatalf("Read(%d) returned batch [%d, %d) before the offset", off, h.BaseOffset, h.NextOffset())
				}
				// The leader epoch is not covered by the CRC: compare after it.
				if want := sent[h.BaseOffset]; len(want) != size || !bytes.Equal(rest[16:size], want[16:]) {
					t.Fatalf("Read(%d) returned a batch at %d that differs from the one appended there", off, h.BaseOffset)
				}
				expect = h.NextOffset()
				rest = rest[size:]
			}
			if next != expect {
				t.Fatalf("Read(%d) returned next %d, batches end at %d", off, next, expect)
			}
			off = next
		}
		base, err := p.Append(ctxT(t), testBatch("after", 2, 1))
		if err != nil || base != hw {
			t.Fatalf("append after recovery = %d, %v; want %d", base, err, hw)
		}
		if got, _, err := readOnce(p, base, 1<<10); err != nil || len(got) != 1 {
			t.Fatalf("reading the new batch back: %d batches, %v", len(got), err)
		}
	})
}
