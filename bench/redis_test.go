package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestRedisRedeliversToSameMember checks that a consumer reopened under a
// member's name first gets the entries that member read and did not ack.
// It needs the server named in SLUICE_BENCH_REDIS (bench/peers.sh starts it).
func TestRedisRedeliversToSameMember(t *testing.T) {
	addr := os.Getenv(redisAddrEnv)
	if addr == "" {
		t.Skipf("set %s (bench/peers.sh start prints it)", redisAddrEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := openRedis(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Setup(ctx, topology{Partitions: 1, Mode: modeQueue, Subscriptions: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	pr, err := p.NewProducer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []message
	for _, b := range []string{"a", "b", "c", "d"} {
		msgs = append(msgs, message{Key: []byte("k" + b), Body: []byte(b)})
	}
	if err := pr.(batchPublisher).PublishBatch(ctx, msgs[:3]); err != nil {
		t.Fatal(err)
	}

	fetch := func(c consumer, max int) string {
		t.Helper()
		ds, err := c.Fetch(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, d := range ds {
			if string(d.Key) != "k"+string(d.Body) {
				t.Errorf("delivery %q has key %q", d.Body, d.Key)
			}
			got += string(d.Body)
		}
		return got
	}
	c, err := p.NewConsumer(ctx, "q", 0)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.Fetch(ctx, 10)
	if err != nil || len(ds) != 3 {
		t.Fatalf("first fetch: %d deliveries, %v", len(ds), err)
	}
	if err := c.Ack(ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	if err := pr.(batchPublisher).PublishBatch(ctx, msgs[3:]); err != nil {
		t.Fatal(err)
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = p.NewConsumer(ctx, "q", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := fetch(c, 1) + fetch(c, 1); got != "bc" {
		t.Errorf("reopened member got %q first, want its unacked bc", got)
	}
	if got := fetch(c, 10); got != "d" {
		t.Errorf("then %q, want the new d", got)
	}
}
