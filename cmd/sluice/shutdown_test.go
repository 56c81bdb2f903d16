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
