package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/internal/faultproxy"
)

// TestStaleConnection: a connection that goes silent for good without a reset
// (HoldOpen) must not hang the client: its HTTP/2 health check closes it, and
// the consumer's next stream and the next calls go over a new connection.
// Before the client set HTTP2Config's ping timeouts, Fetch and every call
// waited on the dead connection until the kernel gave up on it.
func TestStaleConnection(t *testing.T) {
	e := start(t, t.TempDir(), "127.0.0.1:0")
	defer e.stop()
	p, err := faultproxy.New(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := client.Dial(p.Addr(), client.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	must(c.CreateStream(ctx, sluice.StreamConfig{Name: "s", Partitions: 1}))(t)
	must(c.CreateSubscription(ctx, "s", sluice.SubscriptionConfig{Name: "w"}))(t)
	con := must(c.NewConsumer(ctx, "s", "w", sluice.ConsumerConfig{}))(t)
	defer con.Close()

	p.HoldOpen()
	must(e.b.Publish(ctx, "s", sluice.Message{Body: []byte("after")}))(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		ds, err := con.Fetch(fctx, 1)
		cancel()
		if err == nil && len(ds) == 1 && string(ds[0].Body) == "after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer fetched nothing for 30 s after its connection went silent: %v", err)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Publish(pctx, "s", sluice.Message{Body: []byte("x")}); err != nil {
		t.Fatalf("publish after the connection went silent: %v", err)
	}
}
