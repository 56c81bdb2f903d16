package client_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/server"
)

// countingServer serves a broker and counts the publish calls it answers.
func countingServer(t *testing.T) (addr string, b *sluice.Broker, calls *atomic.Int64) {
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(b, &server.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	calls = new(atomic.Int64)
	h := srv.Handler()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "PublishService/Publish") {
			calls.Add(1)
		}
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: counted, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	hs.RegisterOnShutdown(srv.Drain)
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
		b.Close()
	})
	return ln.Addr().String(), b, calls
}

// TestPublishBatching publishes from many goroutines at once: every publish
// gets its own position, all are stored once, and they travelled in fewer
// calls than there were publishes.
func TestPublishBatching(t *testing.T) {
	addr, b, calls := countingServer(t)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var mu sync.Mutex
	seen := map[sluice.Position]string{}
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			for i := range n / 50 {
				body := fmt.Sprintf("g%d-%d", g, i)
				key := ""
				if i%10 == 0 {
					key = "k-" + body // and a few idempotency keys, each published twice
				}
				p, err := c.Publish(ctx(t), "s", sluice.Message{Body: []byte(body), IdempotencyKey: key})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := seen[p]; dup {
					t.Errorf("%s and %s both at %+v", body, other, p)
				}
				seen[p] = body
				mu.Unlock()
				if key != "" {
					again, err := c.Publish(ctx(t), "s", sluice.Message{Body: []byte(body), IdempotencyKey: key})
					if err != nil || !again.Duplicate || again.Offset != p.Offset || again.Partition != p.Partition {
						t.Errorf("repeat of %s: %+v, %v; first at %+v", key, again, err, p)
					}
				}
			}
		})
	}
	wg.Wait()
	info, err := b.Stream(ctx(t), "s")
	if err != nil || info.Messages != n {
		t.Fatalf("stored %d messages (%v), want %d", info.Messages, err, n)
	}
	// Each stored message is the one its publish was told about.
	for p, body := range seen {
		r, err := b.NewReader(ctx(t), "s", sluice.ReaderConfig{Partition: p.Partition, Start: sluice.AtOffset(p.Offset)})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.Next(ctx(t))
		r.Close()
		if err != nil || string(rec.Body) != body {
			t.Fatalf("at %+v: %q (%v), want %q", p, rec.Body, err, body)
		}
	}
	if got := calls.Load(); got >= n+n/10 {
		t.Fatalf("%d publishes took %d calls: not batched", n+n/10, got)
	} else {
		t.Logf("%d publishes in %d calls", n+n/10, got)
	}
}

// TestPublishBatchingInvalidMessage publishes a message the stream refuses
// among valid ones, concurrently: it alone fails, naming its field as a lone
// Publish would, and the others are stored.
func TestPublishBatchingInvalidMessage(t *testing.T) {
	addr, b, _ := countingServer(t)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "s", MaxMessageBytes: 100}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 200 {
		wg.Go(func() {
			body := []byte("ok")
			if i == 100 {
				body = make([]byte, 200)
			}
			_, err := c.Publish(ctx(t), "s", sluice.Message{Body: body})
			var ie *sluice.InvalidError
			switch {
			case i == 100 && (!errors.As(err, &ie) || !strings.HasPrefix(ie.Field, "message")):
				t.Errorf("the oversized message: %v", err)
			case i != 100 && err != nil:
				t.Errorf("message %d: %v", i, err)
			}
			if err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	info, err := b.Stream(ctx(t), "s")
	if err != nil || info.Messages != 199 || failed.Load() != 1 {
		t.Fatalf("stored %d (%v), %d failed; want 199, 1", info.Messages, err, failed.Load())
	}
}

// TestPublishBatchingStreamErrors: a missing stream and a full one are each
// publish's own error, through batches; a batch refused as full does not keep
// out the messages that fit.
func TestPublishBatchingStreamErrors(t *testing.T) {
	addr, _, _ := countingServer(t)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx(t), "nope", sluice.Message{}); !errors.Is(err, sluice.ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "small", MaxMessages: 10}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stored, full atomic.Int64
	for range 40 {
		wg.Go(func() {
			_, err := c.Publish(ctx(t), "small", sluice.Message{Body: []byte("x")})
			var fe *sluice.StreamFullError
			switch {
			case err == nil:
				stored.Add(1)
			case errors.As(err, &fe) && fe.Limit == "MaxMessages":
				full.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if stored.Load() != 10 || full.Load() != 30 {
		t.Fatalf("%d stored, %d refused as full", stored.Load(), full.Load())
	}
}
