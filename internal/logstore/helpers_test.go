package logstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// testBatch encodes n records whose values are "<tag>-<i>".
func testBatch(tag string, n int, ts int64) []byte {
	recs := make([]batch.Record, n)
	for i := range recs {
		recs[i] = batch.Record{Timestamp: ts, Key: []byte(tag), Value: []byte(fmt.Sprintf("%s-%d", tag, i))}
	}
	return batch.Append(nil, recs)
}

// readAll reads every record of p from off to the high watermark.
func readAll(t testing.TB, p *Partition, off int64) []batch.Record {
	t.Helper()
	var out []batch.Record
	hw := p.HighWatermark()
	for off < hw {
		data, next, err := p.Read(off, 64<<10, nil)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		for len(data) > 0 {
			size, err := batch.PeekSize(data)
			if err != nil {
				t.Fatal(err)
			}
			it, err := batch.NewIter(data[:size])
			if err != nil {
				t.Fatal(err)
			}
			for it.Next() {
				r := *it.Record()
				if r.Offset < off {
					continue
				}
				r.Key, r.Value = append([]byte(nil), r.Key...), append([]byte(nil), r.Value...)
				out = append(out, r)
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			data = data[size:]
		}
		off = next
	}
	return out
}

func memConfig(fs *vfs.Mem) Config {
	return Config{Dir: "/data/p0", FS: fs, SegmentBytes: 8 << 10, IndexIntervalBytes: 256}
}

func mustOpen(t testing.TB, cfg Config) *Partition {
	t.Helper()
	p, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
