package sluice

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublish measures durable publish (SyncAlways: acknowledged after
// fdatasync) through the embedded API, by message size and concurrent publishers.
// Compare its MB/s with BenchmarkDiskSeqWriteSync in internal/diskcheck, run in the
// same invocation.
func BenchmarkPublish(b *testing.B) {
	for _, size := range []int{100, 1024} {
		for _, pubs := range []int{1, 64, 512} {
			b.Run(fmt.Sprintf("size=%d/publishers=%d", size, pubs), func(b *testing.B) {
				benchPublish(b, size, pubs)
			})
		}
	}
}

func benchPublish(b *testing.B, size, pubs int) {
	br, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	if _, err := br.CreateStream(ctx, StreamConfig{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := br.Publish(ctx, "bench", Message{Body: body}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkRead measures a reader draining a partition from the page cache, with
// every record copied out for the caller.
func BenchmarkRead(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			br, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			ctx := context.Background()
			if _, err := br.CreateStream(ctx, StreamConfig{Name: "bench", Sync: SyncNever}); err != nil {
				b.Fatal(err)
			}
			const n = 200000
			msgs := make([]Message, 1000)
			for i := range msgs {
				msgs[i] = Message{Body: make([]byte, size)}
			}
			for i := 0; i < n; i += len(msgs) {
				if _, err := br.PublishBatch(ctx, "bench", msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			var r Reader
			for i := range b.N {
				if i%n == 0 {
					if r != nil {
						r.Close()
					}
					r, err = br.NewReader(ctx, "bench", ReaderConfig{})
					if err != nil {
						b.Fatal(err)
					}
				}
				if _, err := r.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// rssBytes reads the resident set size of this process.
func rssBytes(t testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}
