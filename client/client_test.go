package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a broker served on 127.0.0.1 as sluice serve runs it.
type env struct {
	t    testing.TB
	dir  string
	addr string
	b    *sluice.Broker
	hs   *http.Server
	done chan struct{}
}

// start serves a broker over dir on addr ("127.0.0.1:0" for any port).
func start(t testing.TB, dir, addr string) *env {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(dir, &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(b, &server.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	e := &env{t: t, dir: dir, addr: ln.Addr().String(), b: b, done: make(chan struct{}),
		hs: &http.Server{Handler: srv.Handler(), Protocols: &p, ReadHeaderTimeout: 10 * time.Second}}
	e.hs.RegisterOnShutdown(srv.Drain)
	go func() {
		defer close(e.done)
		e.hs.Serve(ln)
	}()
	return e
}

// stop shuts the server down and closes the broker; safe to call twice.
func (e *env) stop() {
	select {
	case <-e.done:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.hs.Shutdown(ctx); err != nil {
		e.hs.Close()
	}
	<-e.done
	if err := e.b.Close(); err != nil {
		e.t.Errorf("close broker: %v", err)
	}
}

// protocols are the ways a client talks to the server.
var protocols = []struct {
	name string
	opts []client.Option
}{
	{"connect", nil},
	{"grpc", []client.Option{client.WithGRPC()}},
}

func setup(t *testing.T, opts ...client.Option) (*env, *client.Client) {
	t.Helper()
	e := start(t, t.TempDir(), "127.0.0.1:0")
	c, err := client.Dial(e.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		e.stop()
	})
	return e, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestStreamsPublishRead(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			_, c := setup(t, p.opts...)
			info, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "orders", Partitions: 2, Overflow: sluice.OverflowBlock, BlockTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if info.Config.Name != "orders" || len(info.Partitions) != 2 || info.Config.Overflow != sluice.OverflowBlock || info.Config.BlockTimeout != time.Second {
				t.Fatalf("created %+v", info)
			}
			if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "orders"}); !errors.Is(err, sluice.ErrStreamExists) {
				t.Fatalf("create twice: %v, want ErrStreamExists", err)
			}
			if _, err := c.UpdateStream(ctx(t), sluice.StreamConfig{Name: "orders", Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			list, err := c.ListStreams(ctx(t))
			if err != nil || len(list) != 1 || len(list[0].Partitions) != 3 {
				t.Fatalf("list %+v, %v", list, err)
			}

			at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
			pos, err := c.Publish(ctx(t), "orders", sluice.Message{Key: []byte("k"), Body: []byte("hello"), Time: at,
				Headers: []sluice.Header{{Key: "trace", Value: []byte("abc")}}, Partition: sluice.ToPartition(1), IdempotencyKey: "id-1"})
			if err != nil || pos.Partition != 1 || pos.Offset != 0 || pos.Duplicate {
				t.Fatalf("publish %+v, %v", pos, err)
			}
			dup, err := c.Publish(ctx(t), "orders", sluice.Message{Body: []byte("hello"), Partition: sluice.ToPartition(1), IdempotencyKey: "id-1"})
			if err != nil || dup.Offset != 0 || !dup.Duplicate {
				t.Fatalf("duplicate %+v, %v", dup, err)
			}
			ps, err := c.PublishBatch(ctx(t), "orders", []sluice.Message{
				{Body: []byte("a"), Partition: sluice.ToPartition(1)}, {Body: []byte("b"), Partition: sluice.ToPartition(1)}})
			if err != nil || len(ps) != 2 || ps[0].Offset != 1 || ps[1].Offset != 2 {
				t.Fatalf("batch %+v, %v", ps, err)
			}

			r, err := c.NewReader(ctx(t), "orders", sluice.ReaderConfig{Partition: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rec, err := r.Next(ctx(t))
			if err != nil || string(rec.Body) != "hello" || string(rec.Key) != "k" || !rec.Time.Equal(at) || rec.Stream != "orders" ||
				rec.Partition != 1 || len(rec.Headers) < 1 || rec.Headers[0].Key != "trace" {
				t.Fatalf("record %+v, %v", rec, err)
			}
			for i, want := range []string{"a", "b"} {
				rec, err := r.Next(ctx(t))
				if err != nil || string(rec.Body) != want || rec.Offset != int64(i+1) {
					t.Fatalf("record %d %+v, %v", i+1, rec, err)
				}
			}
			if r.Offset() != 3 {
				t.Fatalf("offset %d, want 3", r.Offset())
			}
			// The tail: Next waits for a record published after it.
			got := make(chan sluice.Record, 1)
			go func() {
				rec, err := r.Next(ctx(t))
				if err != nil {
					t.Error(err)
				}
				got <- rec
			}()
			if _, err := c.Publish(ctx(t), "orders", sluice.Message{Body: []byte("tail"), Partition: sluice.ToPartition(1)}); err != nil {
				t.Fatal(err)
			}
			if rec := <-got; string(rec.Body) != "tail" || rec.Offset != 3 {
				t.Fatalf("tail %+v", rec)
			}
			short, cancel := context.WithTimeout(ctx(t), 20*time.Millisecond)
			defer cancel()
			if _, err := r.Next(short); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("next at the end: %v", err)
			}

			if err := c.DeleteStream(ctx(t), "orders"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Stream(ctx(t), "orders"); !errors.Is(err, sluice.ErrStreamNotFound) {
				t.Fatalf("after delete: %v, want ErrStreamNotFound", err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			_, c := setup(t, p.opts...)
			if _, err := c.Publish(ctx(t), "nope", sluice.Message{Body: []byte("x")}); !errors.Is(err, sluice.ErrStreamNotFound) {
				t.Fatalf("publish to a missing stream: %v", err)
			}
			if _, err := c.NewReader(ctx(t), "nope", sluice.ReaderConfig{}); !errors.Is(err, sluice.ErrStreamNotFound) {
				t.Fatalf("read a missing stream: %v", err)
			}
			_, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s", Partitions: -1})
			var ie *sluice.InvalidError
			if !errors.As(err, &ie) || ie.Field != "config.partitions" || !errors.Is(err, sluice.ErrInvalid) {
				t.Fatalf("invalid: %v (%+v)", err, ie)
			}
			if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "small", MaxMessages: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx(t), "small", sluice.Message{Body: []byte("1")}); err != nil {
				t.Fatal(err)
			}
			_, err = c.Publish(ctx(t), "small", sluice.Message{Body: []byte("2")})
			var fe *sluice.StreamFullError
			if !errors.As(err, &fe) || fe.Stream != "small" || fe.Limit != "MaxMessages" || fe.Bound != 1 || fe.RetryAfter <= 0 || !errors.Is(err, sluice.ErrStreamFull) {
				t.Fatalf("full: %v (%+v)", err, fe)
			}
			if _, err := c.Subscription(ctx(t), "small", "x"); !errors.Is(err, sluice.ErrSubscriptionNotFound) {
				t.Fatalf("subscription: %v, want ErrSubscriptionNotFound", err)
			}
			if _, err := c.NewConsumer(ctx(t), "small", "x", sluice.ConsumerConfig{}); !errors.Is(err, sluice.ErrSubscriptionNotFound) {
				t.Fatalf("consumer: %v, want ErrSubscriptionNotFound", err)
			}
			if err := c.DeleteSchedule(ctx(t), "x"); !errors.Is(err, sluice.ErrScheduleNotFound) {
				t.Fatalf("schedule: %v, want ErrScheduleNotFound", err)
			}
		})
	}
}

func TestDialValidates(t *testing.T) {
	for _, opt := range []client.Option{client.WithTimeout(0), client.WithTimeout(2 * time.Hour), client.WithToken("a\nb")} {
		if _, err := client.Dial("127.0.0.1:1", opt); !errors.Is(err, sluice.ErrInvalid) {
			t.Errorf("Dial: %v, want ErrInvalid", err)
		}
	}
}

// TestProducerRetriesAcrossRestart publishes through a Producer while the
// server is down, then brings it back on the same address and data: the
// publish with an idempotency key is retried and stored once.
func TestProducerRetriesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, "127.0.0.1:0")
	c, err := client.Dial(e.addr, client.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "jobs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx(t), "jobs", sluice.Message{Body: []byte("first"), IdempotencyKey: "job-1"}); err != nil {
		t.Fatal(err)
	}
	e.stop()
	c.Close()
	c, err = client.Dial(e.addr, client.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Refused: the outcome is unknown, and a message without a key is not retried.
	p, err := sluice.NewProducer(c, "jobs", sluice.ProducerConfig{MaxAttempts: 50, RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx(t), sluice.Message{Body: []byte("no key")}); !errors.Is(err, sluice.ErrUnavailable) || p.Stats().Retries != 0 {
		t.Fatalf("keyless publish to a down server: %v, retries %d", err, p.Stats().Retries)
	}

	// With a key it is retried until the server is back; the first attempts
	// are refused, and the one that lands finds the key stored.
	type result struct {
		pos sluice.Position
		err error
	}
	done := make(chan result, 1)
	go func() {
		pos, err := p.Publish(ctx(t), sluice.Message{Body: []byte("first"), IdempotencyKey: "job-1"})
		done <- result{pos, err}
	}()
	for p.Stats().Retries < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	e2 := start(t, dir, e.addr)
	defer e2.stop()
	res := <-done
	if res.err != nil || res.pos.Offset != 0 || !res.pos.Duplicate {
		t.Fatalf("retried publish %+v, %v", res.pos, res.err)
	}
	info, err := c.Stream(ctx(t), "jobs")
	if err != nil || info.Messages != 1 {
		t.Fatalf("stored %d messages, %v; want 1", info.Messages, err)
	}
}

// TestConsumerAndReaderAcrossRestart stops the server under an open consumer
// and reader and brings it back on the same address and data: the consumer's
// next Fetch reopens its stream; the broker handed the delivery held across
// the restart back (its lease is refused, and it comes again at once); the
// reader goes on after the last offset it returned.
func TestConsumerAndReaderAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, "127.0.0.1:0")
	c, err := client.Dial(e.addr, client.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "jobs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubscription(ctx(t), "jobs", sluice.SubscriptionConfig{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"one", "two"} {
		if _, err := c.Publish(ctx(t), "jobs", sluice.Message{Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	con, err := c.NewConsumer(ctx(t), "jobs", "w", sluice.ConsumerConfig{Name: "steady"})
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	r, err := c.NewReader(ctx(t), "jobs", sluice.ReaderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	held, err := con.Fetch(ctx(t), 1)
	if err != nil || len(held) != 1 || string(held[0].Body) != "one" {
		t.Fatalf("fetch %v, %v", held, err)
	}
	if rec, err := r.Next(ctx(t)); err != nil || string(rec.Body) != "one" {
		t.Fatalf("read %v, %v", rec, err)
	}

	e.stop()
	e2 := start(t, dir, e.addr)
	defer e2.stop()
	if _, err := c.Publish(ctx(t), "jobs", sluice.Message{Body: []byte("three")}); err != nil {
		t.Fatal(err)
	}
	if err := con.Ack(ctx(t), held[0]); !errors.Is(err, sluice.ErrStaleLease) {
		t.Fatalf("ack across the restart: %v, want ErrStaleLease", err)
	}
	var bodies []string
	for len(bodies) < 3 {
		ds, err := con.Fetch(ctx(t), 2)
		if err != nil {
			t.Fatalf("fetch after the restart: %v", err)
		}
		for _, d := range ds {
			bodies = append(bodies, string(d.Body))
			if err := con.Ack(ctx(t), d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if slices.Sort(bodies); !slices.Equal(bodies, []string{"one", "three", "two"}) {
		t.Fatalf("after the restart the consumer got %q", bodies)
	}
	for _, want := range []string{"two", "three"} {
		rec, err := r.Next(ctx(t))
		if err != nil || string(rec.Body) != want {
			t.Fatalf("reader after the restart: %q, %v; want %q", rec.Body, err, want)
		}
	}
	if info, err := c.Subscription(ctx(t), "jobs", "w"); err != nil || info.Backlog != 0 || info.Redeliveries != 1 {
		t.Fatalf("subscription %+v, %v", info, err)
	}
}

// TestConsumerPrefetch: with WithPrefetch the server sends ahead of Fetch, and
// what no Fetch took is handed back when the consumer closes, at once.
func TestConsumerPrefetch(t *testing.T) {
	e := start(t, t.TempDir(), "127.0.0.1:0")
	defer e.stop()
	c, err := client.Dial(e.addr, client.WithPrefetch(20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	msgs := make([]sluice.Message, 100)
	for i := range msgs {
		msgs[i] = sluice.Message{Body: []byte{byte(i)}}
	}
	if _, err := c.PublishBatch(ctx(t), "s", msgs); err != nil {
		t.Fatal(err)
	}
	con, err := c.NewConsumer(ctx(t), "s", "w", sluice.ConsumerConfig{Name: "ahead"})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := con.Fetch(ctx(t), 5)
	if err != nil || len(ds) == 0 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	for _, d := range ds {
		if err := con.Ack(ctx(t), d); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer keeps about 20 coming beyond what it took.
	eventually(t, "the prefetch to fill", func() bool {
		info, err := c.Subscription(ctx(t), "s", "w")
		return err == nil && info.InFlight >= 15
	})
	info, _ := c.Subscription(ctx(t), "s", "w")
	if info.InFlight > 20 {
		t.Fatalf("%d in flight with a prefetch of 20", info.InFlight)
	}
	con.Close()
	// Handed back: another consumer gets them now, not after the 30 s lease.
	other, err := c.NewConsumer(ctx(t), "s", "w", sluice.ConsumerConfig{Name: "next"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got := 0
	for got < 100-len(ds) {
		more, err := other.Fetch(ctx(t), 100)
		if err != nil {
			t.Fatalf("after %d: %v", got, err)
		}
		for _, d := range more {
			if err := other.Ack(ctx(t), d); err != nil {
				t.Fatal(err)
			}
		}
		got += len(more)
	}
	if info, err := c.Subscription(ctx(t), "s", "w"); err != nil || info.Backlog != 0 {
		t.Fatalf("backlog %d, %v", info.Backlog, err)
	}
}
