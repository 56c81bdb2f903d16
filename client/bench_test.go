package client_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// Benchmarks of the network client against the embedded broker in the same
// run: what the network costs per operation, with the default durability
// (fsync before every acknowledgement).
//
//	go test -run '^$' -bench . -benchtime 2000x ./client

func benchTargets(b *testing.B) []struct {
	name string
	c    func(b *testing.B) sluice.Client
} {
	return []struct {
		name string
		c    func(b *testing.B) sluice.Client
	}{
		{"embedded", func(b *testing.B) sluice.Client {
			br, err := sluice.Open(b.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { br.Close() })
			return br
		}},
		{"remote", func(b *testing.B) sluice.Client {
			e := start(b, b.TempDir(), "127.0.0.1:0")
			b.Cleanup(e.stop)
			// A prefetch as large as the largest Fetch: the next batch of
			// deliveries is on its way while the last one is acked.
			c, err := client.Dial(e.addr, client.WithPrefetch(1000))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return c
		}},
	}
}

// BenchmarkPublishConcurrent publishes 1 KiB messages from 64 goroutines, each
// waiting for its acknowledgement.
func BenchmarkPublishConcurrent(b *testing.B) {
	for _, tg := range benchTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			c := tg.c(b)
			ctx := context.Background()
			if _, err := c.CreateStream(ctx, sluice.StreamConfig{Name: "s", Partitions: 4}); err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 1024)
			b.SetBytes(1024)
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + 63) / 64
			for range 64 {
				wg.Go(func() {
					for range per {
						if _, err := c.Publish(ctx, "s", sluice.Message{Body: body}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*64)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// backlog stores n 1 KiB messages in stream "s", with subscription "w".
func backlog(b *testing.B, c sluice.Client, n int) {
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, sluice.StreamConfig{Name: "s", Sync: sluice.SyncNever}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateSubscription(ctx, "s", sluice.SubscriptionConfig{Name: "w"}); err != nil {
		b.Fatal(err)
	}
	msgs := make([]sluice.Message, 1000)
	for i := range msgs {
		msgs[i] = sluice.Message{Body: make([]byte, 1024)}
	}
	for done := 0; done < n; done += len(msgs) {
		if _, err := c.PublishBatch(ctx, "s", msgs[:min(len(msgs), n-done)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsume drains a backlog of 1 KiB messages with one consumer that
// fetches up to 100 at a time and acks them one by one, in turn.
func BenchmarkConsume(b *testing.B) {
	benchDrain(b, func(ctx context.Context, con sluice.Consumer, ds []sluice.Delivery) error {
		for _, d := range ds {
			if err := con.Ack(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkConsumeAckMany drains a backlog of 1 KiB messages with one
// consumer that fetches up to 100 at a time and acks them with one AckMany.
func BenchmarkConsumeAckMany(b *testing.B) {
	benchDrain(b, func(ctx context.Context, con sluice.Consumer, ds []sluice.Delivery) error {
		return errors.Join(con.AckMany(ctx, ds)...)
	})
}

// benchDrain drains a backlog of b.N messages with Fetch(100) and ack.
func benchDrain(b *testing.B, ack func(context.Context, sluice.Consumer, []sluice.Delivery) error) {
	for _, tg := range benchTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			c := tg.c(b)
			ctx := context.Background()
			backlog(b, c, b.N)
			con, err := c.NewConsumer(ctx, "s", "w", sluice.ConsumerConfig{MaxInFlight: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer con.Close()
			b.SetBytes(1024)
			b.ResetTimer()
			for got := 0; got < b.N; {
				ds, err := con.Fetch(ctx, 100)
				if err != nil {
					b.Fatal(err)
				}
				if err := ack(ctx, con, ds); err != nil {
					b.Fatal(err)
				}
				got += len(ds)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkConsumeWorker drains a backlog of 1 KiB messages with a Worker of
// 32 handlers that do nothing: acks from many goroutines at once.
func BenchmarkConsumeWorker(b *testing.B) {
	for _, tg := range benchTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			c := tg.c(b)
			ctx := context.Background()
			backlog(b, c, b.N)
			var done sync.WaitGroup
			done.Add(b.N)
			w, err := sluice.NewWorker(c, "s", "w", func(context.Context, sluice.Delivery) error {
				done.Done()
				return nil
			}, sluice.WorkerConfig{Concurrency: 32, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithCancel(ctx)
			stopped := make(chan error, 1)
			b.SetBytes(1024)
			b.ResetTimer()
			go func() { stopped <- w.Run(wctx) }()
			done.Wait()
			b.StopTimer()
			cancel()
			if err := <-stopped; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
