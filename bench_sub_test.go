package sluice

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fillStream publishes n messages of size bytes (keys from keyOf, if not nil)
// with SyncNever, so that the benchmarks measure consumption.
func fillStream(b *testing.B, br *Broker, stream string, n, size int, keyOf func(int) []byte) {
	ctx := context.Background()
	msgs := make([]Message, 0, 1000)
	for i := range n {
		m := Message{Body: make([]byte, size)}
		if keyOf != nil {
			m.Key = keyOf(i)
		}
		msgs = append(msgs, m)
		if len(msgs) == cap(msgs) || i == n-1 {
			if _, err := br.PublishBatch(ctx, stream, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
}

// drain consumes and acks n messages of subscription sub with the given number of
// consumers, each fetching up to batch at a time.
func drain(b *testing.B, br *Broker, stream, sub string, n, consumers, batch int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	for c := range consumers {
		cons, err := br.NewConsumer(ctx, stream, sub, ConsumerConfig{Name: fmt.Sprintf("c%d", c), MaxInFlight: 1000})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(n) {
				fctx, fcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				ds, err := cons.Fetch(fctx, batch)
				fcancel()
				if err != nil && fctx.Err() == nil {
					b.Error(err)
					return
				}
				for _, d := range ds {
					if err := cons.Ack(ctx, d); err != nil {
						b.Error(err)
						return
					}
				}
				done.Add(int64(len(ds)))
			}
		}()
	}
	wg.Wait()
}

// BenchmarkQueueDrain measures consume + ack of 1 KiB messages in queue mode.
func BenchmarkQueueDrain(b *testing.B) {
	for _, consumers := range []int{1, 8} {
		b.Run(fmt.Sprintf("consumers=%d", consumers), func(b *testing.B) {
			benchDrain(b, QueueMode, consumers, 4, nil)
		})
	}
}

// BenchmarkKeyOrderedDrain measures key_ordered consumption with 10,000 keys.
func BenchmarkKeyOrderedDrain(b *testing.B) {
	benchDrain(b, KeyOrderedMode, 8, 4, func(i int) []byte { return []byte(fmt.Sprintf("key-%d", i%10000)) })
}

func benchDrain(b *testing.B, mode SubscriptionMode, consumers, partitions int, keyOf func(int) []byte) {
	br, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	br.CreateStream(ctx, StreamConfig{Name: "jobs", Partitions: partitions, Sync: SyncNever, MaxMessages: MaxMaxMessages, MaxBytes: MaxMaxBytes})
	fillStream(b, br, "jobs", b.N, 1024, keyOf)
	if _, err := br.CreateSubscription(ctx, "jobs", SubscriptionConfig{Name: "w", Mode: mode}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	drain(b, br, "jobs", "w", b.N, consumers, 100)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkFanOut measures ten subscriptions each draining every message.
func BenchmarkFanOut(b *testing.B) {
	br, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	br.CreateStream(ctx, StreamConfig{Name: "ticks", Sync: SyncNever, MaxMessages: MaxMaxMessages, MaxBytes: MaxMaxBytes})
	fillStream(b, br, "ticks", b.N, 100, nil)
	for i := range 10 {
		if _, err := br.CreateSubscription(ctx, "ticks", SubscriptionConfig{Name: fmt.Sprintf("s%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(100 * 10)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drain(b, br, "ticks", fmt.Sprintf("s%d", i), b.N, 1, 100)
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*10)/time.Since(start).Seconds(), "deliveries/s")
}
