package sluice

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"
)

// TestLargeStreamOpenMemory writes a large stream (SLUICE_LARGE_GIB GiB, default 5),
// reopens it in this process and checks that opening and reading it end to end keep
// the resident set under 100 MiB: memory must not grow with the data on disk. It
// writes gigabytes, so it runs only when SLUICE_LARGE_TESTS=1.
func TestLargeStreamOpenMemory(t *testing.T) {
	if os.Getenv("SLUICE_LARGE_TESTS") != "1" {
		t.Skip("writes gigabytes to disk; set SLUICE_LARGE_TESTS=1 to run")
	}
	gib := 5.0
	if v := os.Getenv("SLUICE_LARGE_GIB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatal(err)
		}
		gib = f
	}
	dir := t.TempDir()
	if v := os.Getenv("SLUICE_LARGE_DIR"); v != "" {
		dir = v
	}
	ctx := context.Background()
	total := int64(gib * (1 << 30))
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "big", Sync: SyncNever, MaxBytes: MaxMaxBytes}); err != nil {
		t.Fatal(err)
	}
	msgs := make([]Message, 1000)
	for i := range msgs {
		msgs[i] = Message{Body: make([]byte, 1024)}
	}
	for written := int64(0); written < total; written += int64(len(msgs) * 1024) {
		if _, err := b.PublishBatch(ctx, "big", msgs); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	msgs = nil
	runtime.GC()
	debug.FreeOSMemory()
	before := rssBytes(t)
	start := time.Now()
	b, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	opened := time.Since(start)
	afterOpen := rssBytes(t)
	info, _ := b.Stream(ctx, "big")
	r, err := b.NewReader(ctx, "big", ReaderConfig{Start: AtOffset(info.Messages / 2)})
	if err != nil {
		t.Fatal(err)
	}
	for range 100000 {
		if _, err := r.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	afterRead := rssBytes(t)
	t.Logf("stream of %.1f GiB (%d messages, %d segments): open took %v; RSS before %d MiB, after open %d MiB, after reading %d MiB",
		float64(info.Bytes)/(1<<30), info.Messages, info.Partitions[0].Segments, opened, before>>20, afterOpen>>20, afterRead>>20)
	if afterOpen > 100<<20 || afterRead > 100<<20 {
		t.Fatalf("RSS %d MiB after open, %d MiB after reading: over 100 MiB", afterOpen>>20, afterRead>>20)
	}
}

// TestLargeBacklogSubscriptionMemory publishes 10 million messages that nobody
// has acknowledged and checks that a queue subscription over them, opened,
// consumed from and reopened, keeps the whole process under 200 MiB: the backlog
// costs no memory. Gated like TestLargeStreamOpenMemory.
func TestLargeBacklogSubscriptionMemory(t *testing.T) {
	if os.Getenv("SLUICE_LARGE_TESTS") != "1" {
		t.Skip("writes gigabytes to disk; set SLUICE_LARGE_TESTS=1 to run")
	}
	const n = 10_000_000
	dir := t.TempDir()
	ctx := context.Background()
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "jobs", Partitions: 4, Sync: SyncNever, MaxMessages: MaxMaxMessages, MaxBytes: MaxMaxBytes}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "jobs", SubscriptionConfig{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	msgs := make([]Message, 1000)
	for i := range msgs {
		msgs[i] = Message{Body: make([]byte, 100)}
	}
	for i := 0; i < n; i += len(msgs) {
		if _, err := b.PublishBatch(ctx, "jobs", msgs); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, "jobs", "w", ConsumerConfig{MaxInFlight: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		ds, err := c.Fetch(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds[:len(ds)/2] { // half acked, half left in flight
			if err := c.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	msgs = nil
	runtime.GC()
	debug.FreeOSMemory()
	b, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, _ = b.NewConsumer(ctx, "jobs", "w", ConsumerConfig{MaxInFlight: 1000})
	for range 100 {
		ds, err := c.Fetch(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			c.Ack(ctx, d)
		}
	}
	info, _ := b.Subscription(ctx, "jobs", "w")
	rss := rssBytes(t)
	t.Logf("backlog %d unacknowledged messages; RSS %d MiB", info.Backlog, rss>>20)
	if info.Backlog < n-200_000 {
		t.Fatalf("backlog %d, want about %d", info.Backlog, n)
	}
	if rss > 200<<20 {
		t.Fatalf("RSS %d MiB with a backlog of %d: over 200 MiB", rss>>20, info.Backlog)
	}
}
