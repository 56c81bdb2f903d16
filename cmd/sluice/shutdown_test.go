package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// acked is a message the server acknowledged, and where.
type acked struct {
	body string
	pos  sluice.Position
}

// TestServeShutdownUnderLoad runs sluice serve, publishes to it at full speed
// from several publishers (single messages and batches, over Connect and
// gRPC), sends SIGTERM midway, and checks that the server exits with status 0
// and that, after a restart on the same data directory, every acknowledged
// message is where its acknowledgement said, with its body.
func TestServeShutdownUnderLoad(t *testing.T) {
	dir := t.TempDir()
	child := startServe(t, serveEnv(), "--data", dir, "--listen", "127.0.0.1:0")
	setup, err := client.Dial(child.url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.CreateStream(callCtx(t), sluice.StreamConfig{Name: "load", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	const (
		publishers = 6
		batch      = 20
		// signalAfter acknowledged messages, SIGTERM; the publishers go on
		// until the server refuses them.
		signalAfter = 2000
	)
	var (
		mu        sync.Mutex
		all       []acked
		count     atomic.Int64
		signalled atomic.Bool
		wg        sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	record := func(msgs []sluice.Message, pos []sluice.Position) {
		mu.Lock()
		for i := range msgs {
			all = append(all, acked{string(msgs[i].Body), pos[i]})
		}
		mu.Unlock()
		if count.Add(int64(len(msgs))) >= signalAfter {
			once.Do(func() { close(enough) })
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for p := range publishers {
		opts := []client.Option{client.WithTimeout(30 * time.Second)}
		if p%2 == 1 {
			opts = append(opts, client.WithGRPC())
		}
		c, err := client.Dial(child.url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var msgs []sluice.Message
				var pos []sluice.Position
				var err error
				if p%3 == 2 {
					for j := range batch {
						body := fmt.Sprintf("p%d-%d-%d", p, i, j)
						msgs = append(msgs, sluice.Message{Body: []byte(body), IdempotencyKey: body})
					}
					pos, err = c.PublishBatch(ctx, "load", msgs)
				} else {
					body := fmt.Sprintf("p%d-%d", p, i)
					msgs = []sluice.Message{{Body: []byte(body), IdempotencyKey: body}}
					var one sluice.Position
					one, err = c.Publish(ctx, "load", msgs[0])
					pos = []sluice.Position{one}
				}
				if err != nil {
					if !signalled.Load() {
						t.Errorf("publisher %d before the signal: %v", p, err)
					}
					return // the server is going away: its answer is unknown
				}
				record(msgs, pos)
			}
		}()
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatalf("only %d messages acknowledged", count.Load())
	}
	signalled.Store(true)
	log := child.stop(t) // exit status 0, or the test fails
	wg.Wait()
	if !strings.Contains(log, "msg=stopped") {
		t.Fatalf("no graceful stop in the log:\n%s", log)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d messages acknowledged, %d past the %d that triggered SIGTERM", len(all), len(all)-signalAfter, signalAfter)

	// Restart on the same data directory and read everything back.
	child = startServe(t, serveEnv(), "--data", dir, "--listen", "127.0.0.1:0")
	c, err := client.Dial(child.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Stream(callCtx(t), "load")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[sluice.Position]string{}
	for _, part := range info.Partitions {
		if part.HighWatermark == part.StartOffset {
			continue
		}
		r, err := c.NewReader(callCtx(t), "load", sluice.ReaderConfig{Partition: part.ID, Start: sluice.AtOffset(part.StartOffset)})
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next(callCtx(t))
			if err != nil {
				t.Fatalf("partition %d: %v", part.ID, err)
			}
			stored[sluice.Position{Partition: rec.Partition, Offset: rec.Offset}] = string(rec.Body)
			if rec.Offset+1 == part.HighWatermark {
				break
			}
		}
		r.Close()
	}
	for _, a := range all {
		key := sluice.Position{Partition: a.pos.Partition, Offset: a.pos.Offset}
		if got, ok := stored[key]; !ok || got != a.body {
			t.Errorf("acknowledged %q at %d/%d, stored there: %q (present %v)", a.body, a.pos.Partition, a.pos.Offset, got, ok)
		}
	}
	if int64(len(stored)) < int64(len(all)) {
		t.Errorf("%d messages stored, %d acknowledged", len(stored), len(all))
	}
	child.stop(t)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the publishers ran out of time")
	}
}

// stopBound is how long a SIGTERM may take to stop a server whose clients
// hold streams open: far above the milliseconds a shutdown takes, far below
// the grace period it must not wait out.
const stopBound = 3 * time.Second

// TestServeShutdownEndsStreams: SIGTERM stops sluice serve promptly, without
// waiting out its grace period, whether a consumer's stream was closed by the
// client before or is still open, as are live readers, and the open streams
// end with unavailable so that their clients go elsewhere.
func TestServeShutdownEndsStreams(t *testing.T) {
	for _, tc := range []struct {
		name string
		// closeFirst closes the consumer and the client before SIGTERM.
		closeFirst bool
		grpc       bool
	}{
		{"closed consumer", true, false},
		{"closed consumer grpc", true, true},
		{"open streams", false, false},
		{"open streams grpc", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			child := startServe(t, serveEnv(), "--data", t.TempDir(), "--listen", "127.0.0.1:0")
			var opts []client.Option
			if tc.grpc {
				opts = append(opts, client.WithGRPC())
			}
			c, err := client.Dial(child.url, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.CreateStream(callCtx(t), sluice.StreamConfig{Name: "jobs"}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateSubscription(callCtx(t), "jobs", sluice.SubscriptionConfig{Name: "work"}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(callCtx(t), "jobs", sluice.Message{Body: []byte("one")}); err != nil {
				t.Fatal(err)
			}
			cons, err := c.NewConsumer(callCtx(t), "jobs", "work", sluice.ConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			ds, err := cons.Fetch(callCtx(t), 10)
			if err != nil || len(ds) != 1 {
				t.Fatalf("fetch: %v %v", ds, err)
			}
			reader, err := c.NewReader(callCtx(t), "jobs", sluice.ReaderConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			if rec, err := reader.Next(callCtx(t)); err != nil || string(rec.Body) != "one" {
				t.Fatalf("read: %v %v", rec, err)
			}
			live, err := c.SubscribeLive(callCtx(t), "jobs", sluice.LiveConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()

			// Each open stream waits for what comes next; each must end
			// once the server goes.
			waiting := make(chan error, 3)
			wctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.closeFirst {
				cons.Close()
				reader.Close()
				live.Close()
				c.Close()
			} else {
				go func() { _, err := cons.Fetch(wctx, 1); waiting <- err }()
				go func() { _, err := reader.Next(wctx); waiting <- err }()
				go func() { _, err := live.Next(wctx); waiting <- err }()
			}

			began := time.Now()
			log := child.stop(t)
			if d := time.Since(began); d > stopBound {
				t.Errorf("SIGTERM took %v to stop the server, over %v", d, stopBound)
			}
			if strings.Contains(log, "still in progress") || !strings.Contains(log, "msg=stopped") {
				t.Errorf("log of the shutdown:\n%s", log)
			}
			if !tc.closeFirst {
				// The client reconnects, with backoff, to a server that is no
				// more: each wait goes on until its context ends, and then
				// ends at once.
				cancel()
				for range 3 {
					select {
					case <-waiting:
					case <-time.After(stopBound):
						t.Fatal("a wait on a stream of the stopped server outlived its context")
					}
				}
			}
		})
	}
}
