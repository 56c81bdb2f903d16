package logstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicemq/sluice/internal/batch"
)

// The benchmarks run on the real file system (b.TempDir()), so their figures
// depend on the disk and on what fdatasync costs there; quote them with the
// machine and the command that made them.

// BenchmarkAppend measures publishing one record per Append under SyncAlways, by
// one publisher (every append waits for its own fdatasync) and by 64 concurrent
// ones (group commit shares each fdatasync among the publishers waiting). Bytes/s
// counts record values; msgs/s is acknowledged messages per second.
//
//	go test -run '^$' -bench 'BenchmarkAppend' -benchtime 5s ./internal/logstore
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{100, 1 << 10} {
		for _, publishers := range []int{1, 64} {
			b.Run(fmt.Sprintf("value=%dB/publishers=%d", size, publishers), func(b *testing.B) {
				benchAppend(b, size, publishers)
			})
		}
	}
}

func benchAppend(b *testing.B, size, publishers int) {
	p, err := Open(Config{Dir: b.TempDir(), Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := bytes.Repeat([]byte{'x'}, size)
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	var (
		claimed atomic.Int64
		wg      sync.WaitGroup
	)
	for range publishers {
		wg.Go(func() {
			var buf []byte
			rec := []batch.Record{{Key: []byte("key"), Value: value}}
			for claimed.Add(1) <= int64(b.N) {
				rec[0].Timestamp++
				buf = batch.Append(buf[:0], rec)
				if _, err := p.Append(ctx, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// fillPartition appends about size bytes to the partition in dir, in batches of
// 64 records of 1 KiB, without syncing (SyncNever; Close syncs), and returns the
// number of bytes written.
func fillPartition(b *testing.B, dir string, size int64) int64 {
	b.Helper()
	p, err := Open(Config{Dir: dir, Sync: SyncNever, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]batch.Record, 64)
	for i := range recs {
		recs[i] = batch.Record{Key: []byte(strconv.Itoa(i)), Value: bytes.Repeat([]byte{byte(i)}, 1<<10)}
	}
	var written int64
	for written < size {
		buf := batch.Append(nil, recs)
		if _, err := p.Append(context.Background(), buf); err != nil {
			b.Fatal(err)
		}
		written += int64(len(buf))
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	return written
}

// BenchmarkRead measures sequential reads of a whole 64 MiB partition, written
// beforehand and in the page cache, with 1 MiB reads into one reused buffer.
//
//	go test -run '^$' -bench 'BenchmarkRead' ./internal/logstore
func BenchmarkRead(b *testing.B) {
	dir := b.TempDir()
	size := fillPartition(b, dir, 64<<20)
	p, err := Open(Config{Dir: dir, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, 2<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		var n int64
		for off, hw := p.StartOffset(), p.HighWatermark(); off < hw; {
			data, next, err := p.Read(off, 1<<20, buf)
			if err != nil {
				b.Fatal(err)
			}
			n += int64(len(data))
			off = next
		}
		if n != size {
			b.Fatalf("read %d bytes of %d", n, size)
		}
	}
}

// BenchmarkRecover measures Open (recovery) plus Close of a partition of
// SLUICE_BENCH_RECOVER_BYTES bytes (default 64 MiB, so that CI stays fast) with the
// default 128 MiB segments: Open verifies every batch of the active segment and
// only the index and tail of sealed ones. BENCHMARKS.md quotes it at 1 GiB:
//
//	SLUICE_BENCH_RECOVER_BYTES=1073741824 go test -run '^$' -bench 'BenchmarkRecover' ./internal/logstore
func BenchmarkRecover(b *testing.B) {
	want := int64(64 << 20)
	if s := os.Getenv("SLUICE_BENCH_RECOVER_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("SLUICE_BENCH_RECOVER_BYTES=%q: want a positive byte count", s)
		}
		want = n
	}
	dir := b.TempDir()
	size := fillPartition(b, dir, want)
	// indexes=kept is the usual reopen: the active segment is verified batch by
	// batch, sealed segments through their index and tail. indexes=lost removes
	// every index first, so that every batch of every segment is read and verified:
	// the worst case.
	for _, lose := range []bool{false, true} {
		name := "indexes=kept"
		if lose {
			name = "indexes=lost"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if lose {
					b.StopTimer()
					idx, err := filepath.Glob(filepath.Join(dir, "*"+indexSuffix))
					if err != nil {
						b.Fatal(err)
					}
					for _, f := range idx {
						if err := os.Remove(f); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				p, err := Open(Config{Dir: dir, Logger: quietLogger})
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
