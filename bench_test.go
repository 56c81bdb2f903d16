package sluice

import (
	"context"
	"fmt"
	"os"
	"runtime"
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
	if _, err := br.CreateStream(ctx, StreamConfig{Name: "bench", MaxMessages: MaxMaxMessages, MaxBytes: MaxMaxBytes}); err != nil {
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
			if _, err := br.CreateStream(ctx, StreamConfig{Name: "bench", Sync: SyncNever, MaxMessages: MaxMaxMessages, MaxBytes: MaxMaxBytes}); err != nil {
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

// BenchmarkPublishIdempotency compares publishes with and without an idempotency
// key (each a new key, so each is stored and indexed), in the same run: durable
// (SyncAlways) and, to show the index's CPU cost alone, SyncNever.
func BenchmarkPublishIdempotency(b *testing.B) {
	for _, sp := range []SyncPolicy{SyncAlways, SyncNever} {
		for _, pubs := range []int{1, 64} {
			for _, keys := range []string{"off", "on"} {
				b.Run(fmt.Sprintf("sync=%s/publishers=%d/keys=%s", sp, pubs, keys), func(b *testing.B) {
					benchPublishKeys(b, sp, pubs, keys == "on")
				})
			}
		}
	}
}

func benchPublishKeys(b *testing.B, sp SyncPolicy, pubs int, keyed bool) {
	br, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	cfg := StreamConfig{Name: "bench", Partitions: 4, Sync: sp, MaxMessages: MaxMaxMessages, MaxBytes: MaxMaxBytes,
		DedupeMaxKeys: MaxDedupeMaxKeys, DedupeWindow: time.Hour}
	if _, err := br.CreateStream(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var kb []byte
			ib := append(make([]byte, 0, 32), "order-"...)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				kb = strconv.AppendInt(kb[:0], n%1024, 10)
				msg := Message{Key: kb, Body: body}
				if keyed {
					// The one allocation a caller pays to name the message.
					msg.IdempotencyKey = string(strconv.AppendInt(ib[:6], n, 10))
				}
				if _, err := br.Publish(ctx, "bench", msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer() // not the final snapshot at Close
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkDedupeIndexBytes reports the memory the dedupe index holds per key, as
// heap growth over a million keys (one op is a million keys).
func BenchmarkDedupeIndexBytes(b *testing.B) {
	const keys = 1_000_000
	var perKey float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		d := newDedupe(time.Hour, keys)
		for i := range keys {
			h := keyHash("order-" + strconv.Itoa(i))
			_, _, _, c, _ := d.lookup(h, i%8, 0, time.UnixMilli(1_700_000_000_000), true)
			d.finish(h, c, true, makeRef(i%8, int64(i/8)), 1_700_000_000_000)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / keys
		runtime.KeepAlive(d)
	}
	b.ReportMetric(perKey, "bytes/key")
	b.ReportMetric(perKey*keys/(1<<20), "MiB/million-keys")
}
