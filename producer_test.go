package sluice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lossyClient is a Client whose Publish loses the answer of the first `lose`
// publishes that reached the broker: the message is stored, but the caller hears
// ErrUnavailable, as over a connection that dropped after the request went out.
type lossyClient struct {
	*Broker
	lose atomic.Int64
}

func (c *lossyClient) Publish(ctx context.Context, stream string, msg Message) (Position, error) {
	pos, err := c.Broker.Publish(ctx, stream, msg)
	if err == nil && c.lose.Add(-1) >= 0 {
		return Position{}, fmt.Errorf("connection reset: %w", ErrUnavailable)
	}
	return pos, err
}

func TestProducerRetriesWithIdempotencyKeyStoreOnce(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "orders", Partitions: 4})
	c := &lossyClient{Broker: f.b}
	c.lose.Store(2)
	p, err := NewProducer(c, "orders", ProducerConfig{RetryInitial: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pos, err := p.Publish(f.ctx, Message{Body: []byte("order 42"), IdempotencyKey: "order-42"})
	if err != nil {
		t.Fatal(err)
	}
	if !pos.Duplicate {
		t.Fatalf("position %+v: the retries after lost answers should find the original", pos)
	}
	if st := p.Stats(); st.Retries != 2 || st.Unknown != 2 || st.InFlight != 0 {
		t.Fatalf("stats %+v, want 2 retries of 2 unknown outcomes", st)
	}
	info := f.streamInfo("orders")
	if info.Messages != 1 {
		t.Fatalf("%d messages stored, want 1 despite 3 attempts", info.Messages)
	}
	if info.Partitions[pos.Partition].HighWatermark != pos.Offset+1 {
		t.Fatalf("position %+v does not hold the message: %+v", pos, info.Partitions)
	}
}

func TestProducerDoesNotRetryUnknownOutcomeWithoutKey(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "orders"})
	c := &lossyClient{Broker: f.b}
	c.lose.Store(1)
	p, _ := NewProducer(c, "orders", ProducerConfig{RetryInitial: time.Millisecond})
	_, err := p.Publish(f.ctx, Message{Body: []byte("order 43")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable returned, not retried", err)
	}
	if n := f.streamInfo("orders").Messages; n != 1 {
		t.Fatalf("%d messages stored, want exactly the one attempt", n)
	}
}

func TestProducerRetriesFullStreamUntilRoom(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "jobs", MaxMessages: 2, Retention: Retention{Policy: RetainWork}})
	if _, err := f.b.CreateSubscription(f.ctx, "jobs", SubscriptionConfig{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.b.Publish(f.ctx, "jobs", Message{Body: []byte("x")}); !errors.Is(err, ErrStreamFull) {
		t.Fatalf("third publish: %v, want ErrStreamFull", err)
	}
	p, _ := NewProducer(f.b, "jobs", ProducerConfig{RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond, MaxAttempts: 100})
	done := make(chan error, 1)
	go func() {
		_, err := p.Publish(f.ctx, Message{Body: []byte("third")})
		done <- err
	}()
	eventually(t, 20*time.Second, "the producer retrying", func() bool { return p.Stats().Retries > 0 })
	cons, err := f.b.NewConsumer(f.ctx, "jobs", "w", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ds, err := cons.Fetch(f.ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Ack(f.ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("producer: %v, want success once an ack made room", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("producer still waiting 10s after an ack made room")
	}
}

// gatedClient holds every publish until released, counting those in progress.
type gatedClient struct {
	*Broker
	gate    chan struct{}
	now     atomic.Int64
	highest atomic.Int64
}

func (c *gatedClient) Publish(ctx context.Context, stream string, msg Message) (Position, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for {
		h := c.highest.Load()
		if n <= h || c.highest.CompareAndSwap(h, n) {
			break
		}
	}
	select {
	case <-c.gate:
	case <-ctx.Done():
		return Position{}, ctx.Err()
	}
	return c.Broker.Publish(ctx, stream, msg)
}

func TestProducerBoundsInFlight(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s"})
	c := &gatedClient{Broker: f.b, gate: make(chan struct{})}
	p, _ := NewProducer(c, "s", ProducerConfig{MaxInFlight: 4})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Publish(f.ctx, Message{Body: []byte{byte(i)}}); err != nil {
				t.Error(err)
			}
		}()
	}
	eventually(t, 20*time.Second, "4 publishes in flight", func() bool { return p.Stats().InFlight == 4 })
	// Let them through one at a time.
	for range 20 {
		c.gate <- struct{}{}
	}
	wg.Wait()
	if h := c.highest.Load(); h > 4 {
		t.Fatalf("%d publishes reached the client at once, MaxInFlight 4", h)
	}
	if n := f.streamInfo("s").Messages; n != 20 {
		t.Fatalf("%d messages, want 20", n)
	}

	nw, _ := NewProducer(c, "s", ProducerConfig{MaxInFlight: 1, NoWait: true})
	go nw.Publish(f.ctx, Message{Body: []byte("held")})
	eventually(t, 20*time.Second, "1 publish in flight", func() bool { return nw.Stats().InFlight == 1 })
	if _, err := nw.Publish(f.ctx, Message{Body: []byte("refused")}); !errors.Is(err, ErrTooManyInFlight) {
		t.Fatalf("err %v, want ErrTooManyInFlight", err)
	}
	c.gate <- struct{}{}
	eventually(t, 20*time.Second, "no publish in flight", func() bool { return nw.Stats().InFlight == 0 })
}

func TestProducerConfigLimits(t *testing.T) {
	for _, c := range []struct {
		cfg   ProducerConfig
		field string
	}{
		{ProducerConfig{MaxInFlight: -1}, "ProducerConfig.MaxInFlight"},
		{ProducerConfig{MaxInFlight: MaxProducerInFlight + 1}, "ProducerConfig.MaxInFlight"},
		{ProducerConfig{MaxAttempts: MaxMaxAttempts + 1}, "ProducerConfig.MaxAttempts"},
		{ProducerConfig{AttemptTimeout: time.Microsecond}, "ProducerConfig.AttemptTimeout"},
		{ProducerConfig{RetryInitial: time.Hour}, "ProducerConfig.RetryInitial"},
		{ProducerConfig{RetryInitial: time.Second, RetryMax: time.Millisecond}, "ProducerConfig.RetryMax"},
	} {
		var ie *InvalidError
		if _, err := NewProducer(nil, "s", c.cfg); !errors.As(err, &ie) || ie.Field != c.field {
			t.Errorf("%+v: %v, want an InvalidError on %s", c.cfg, err, c.field)
		}
	}
}
