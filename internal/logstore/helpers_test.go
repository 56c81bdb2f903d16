package logstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
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
	return Config{Dir: "/data/p0", FS: fs, SegmentBytes: 8 << 10, IndexIntervalBytes: 256, Logger: quietLogger}
}

// quietLogger drops the engine's reports, which the damage tests provoke by the
// hundred; tests that check a report use captureLogs.
var quietLogger = slog.New(slog.DiscardHandler)

// logBuffer collects log output; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureLogs points cfg's logger at a buffer and returns it.
func captureLogs(cfg *Config) *logBuffer {
	b := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(b, nil))
	return b
}

// eventually waits until cond holds, failing the test after a deadline. It polls:
// the conditions it serves (a background sync happened) have no event to wait on.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// segmentPaths lists the .log files of the partition in cfg, oldest first.
func segmentPaths(t testing.TB, cfg Config) []string {
	t.Helper()
	names, err := cfg.FS.ReadDir(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, logSuffix) {
			out = append(out, filepath.Join(cfg.Dir, n))
		}
	}
	return out
}

// appendBatches appends n batches of 1 to 4 records tagged "<prefix><i>" and
// returns the encoded batches as sent (base offset 0).
func appendBatches(t testing.TB, p *Partition, prefix string, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range n {
		b := testBatch(fmt.Sprintf("%s%d", prefix, i), 1+i%4, int64(1000+i))
		out = append(out, bytes.Clone(b))
		if _, err := p.Append(ctxT(t), b); err != nil {
			t.Fatalf("append %s%d: %v", prefix, i, err)
		}
	}
	return out
}

// storedBatch is one batch read back from a partition.
type storedBatch struct {
	base int64
	next int64
	data []byte // a copy, as stored (base offset patched in)
}

// readOnce makes one Read and checks what a consumer relies on: it returns whole
// batches that verify, the first holding off and each later one starting where the
// previous ended; more than maxBytes only as a single batch; and next is the end of
// the last batch. Below the high watermark it returns data.
func readOnce(p *Partition, off int64, maxBytes int) ([]storedBatch, int64, error) {
	hw := p.HighWatermark()
	data, next, err := p.Read(off, maxBytes, nil)
	if err != nil {
		return nil, next, fmt.Errorf("Read(%d, %d): %w", off, maxBytes, err)
	}
	if len(data) == 0 {
		if off < hw {
			return nil, next, fmt.Errorf("Read(%d) below the high watermark %d returned no data", off, hw)
		}
		if next != off {
			return nil, next, fmt.Errorf("Read(%d) at the high watermark returned next %d", off, next)
		}
		return nil, next, nil
	}
	var out []storedBatch
	expect := int64(-1)
	for rest := data; len(rest) > 0; {
		size, err := batch.PeekSize(rest)
		if err != nil || size > len(rest) {
			return out, next, fmt.Errorf("Read(%d) returned a partial batch (%d bytes left): %v", off, len(rest), err)
		}
		h, err := batch.Verify(rest[:size])
		if err != nil {
			return out, next, fmt.Errorf("Read(%d) returned a bad batch: %w", off, err)
		}
		if len(out) == 0 && (h.BaseOffset > off || h.NextOffset() <= off) {
			return out, next, fmt.Errorf("Read(%d) returned first batch [%d, %d)", off, h.BaseOffset, h.NextOffset())
		}
		if len(out) > 0 && h.BaseOffset != expect {
			return out, next, fmt.Errorf("Read(%d): batch at %d after one ending at %d", off, h.BaseOffset, expect)
		}
		expect = h.NextOffset()
		out = append(out, storedBatch{base: h.BaseOffset, next: expect, data: bytes.Clone(rest[:size])})
		rest = rest[size:]
	}
	if len(out) > 1 && len(data) > maxBytes {
		return out, next, fmt.Errorf("Read(%d, %d) returned %d bytes in %d batches", off, maxBytes, len(data), len(out))
	}
	if next != expect {
		return out, next, fmt.Errorf("Read(%d) returned next %d, batches end at %d", off, next, expect)
	}
	return out, next, nil
}

// readBatches reads every batch from off up to the high watermark with reads of at
// most maxBytes, each checked by readOnce.
func readBatches(p *Partition, off int64, maxBytes int) ([]storedBatch, error) {
	var out []storedBatch
	for hw := p.HighWatermark(); off < hw; {
		got, next, err := readOnce(p, off, maxBytes)
		out = append(out, got...)
		if err != nil {
			return out, err
		}
		off = next
	}
	return out, nil
}

// sameBatch reports whether a stored batch holds exactly what was sent: every byte
// but the base offset, which the log assigns.
func sameBatch(stored, sent []byte) bool {
	return len(stored) == len(sent) && len(sent) >= 8 && bytes.Equal(stored[8:], sent[8:])
}

// decodeBatches decodes the records of batches back to back, copying them.
func decodeBatches(data []byte) ([]batch.Record, error) {
	var out []batch.Record
	for len(data) > 0 {
		size, err := batch.PeekSize(data)
		if err != nil {
			return out, err
		}
		it, err := batch.NewIter(data[:min(size, len(data))])
		if err != nil {
			return out, err
		}
		for it.Next() {
			r := *it.Record()
			r.Key, r.Value, r.Headers = bytes.Clone(r.Key), bytes.Clone(r.Value), nil
			out = append(out, r)
		}
		if err := it.Err(); err != nil {
			return out, err
		}
		data = data[size:]
	}
	return out, nil
}

// batchTag returns the key of the first record of a batch, which the tests use to
// name batches.
func batchTag(b []byte) (string, error) {
	it, err := batch.NewIter(b)
	if err != nil {
		return "", err
	}
	if !it.Next() {
		return "", fmt.Errorf("batch without records: %v", it.Err())
	}
	return string(it.Record().Key), nil
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
