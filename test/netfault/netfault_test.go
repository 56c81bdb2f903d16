package netfault_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/internal/faultproxy"
	"github.com/sluicemq/sluice/server"
)

var phaseLen = flag.Duration("phase", 3*time.Second, "how long each fault phase lasts")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	stream     = "jobs"
	partitions = 4
	producers  = 6
	consumers  = 3 // per subscription
	// drainWithin is how long after the faults stop the lag must reach 0.
	drainWithin = 30 * time.Second
)

// subs are the subscriptions the consumers work through.
var subs = []struct {
	name string
	mode sluice.SubscriptionMode
}{
	{"work", sluice.QueueMode},
	{"ordered", sluice.KeyOrderedMode},
}

// phase is a fault applied for one phase; the proxy is cleared between phases.
type phase struct {
	name  string
	apply func(p *faultproxy.Proxy)
}

var phases = []phase{
	{"latency", func(p *faultproxy.Proxy) { p.SetLatency(faultproxy.Both, 40*time.Millisecond, 30*time.Millisecond) }},
	{"slicer", func(p *faultproxy.Proxy) { p.SetSlicer(faultproxy.Both, 64, time.Millisecond) }},
	{"resets", func(p *faultproxy.Proxy) {
		p.ResetAll()
		p.SetResetAfter(faultproxy.Both, 64<<10)
	}},
	{"blackhole", func(p *faultproxy.Proxy) { p.SetBlackhole(faultproxy.Both, true) }},
	{"blackhole-then-reset", func(p *faultproxy.Proxy) {
		p.SetBlackhole(faultproxy.Downstream, true)
		time.AfterFunc(*phaseLen*2/3, p.ResetAll)
	}},
	// The connections open now go silent for good, new ones pass: only the
	// client's own health checks can tell it to reconnect.
	{"stale-connections", func(p *faultproxy.Proxy) { p.HoldOpen() }},
	{"latency+slicer+resets", func(p *faultproxy.Proxy) {
		p.SetLatency(faultproxy.Upstream, 20*time.Millisecond, 20*time.Millisecond)
		p.SetSlicer(faultproxy.Downstream, 256, 500*time.Microsecond)
		p.SetResetAfter(faultproxy.Both, 256<<10)
	}},
}

// ledger records what the producers and consumers saw.
type ledger struct {
	mu        sync.Mutex
	attempted map[string]bool            // keys a publish was tried with
	acked     map[string]bool            // keys whose publish was acknowledged
	delivered map[string]map[string]bool // by subscription: keys delivered
}

func TestNetworkFaults(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv, err := server.New(b, &server.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	}()
	proxy, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()

	ctx := context.Background()
	if _, err := b.CreateStream(ctx, sluice.StreamConfig{Name: stream, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		// A short lease brings back what a lost ack left leased; many
		// deliveries keep faults from dead-lettering anything.
		if _, err := b.CreateSubscription(ctx, stream, sluice.SubscriptionConfig{Name: s.name, Mode: s.mode,
			Lease: 2 * time.Second, MaxDeliveries: 1000, BackoffInitial: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}

	dial := func() *client.Client {
		c, err := client.Dial(proxy.Addr(), client.WithTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pc, cc := dial(), dial()
	defer pc.Close()
	defer cc.Close()

	led := &ledger{attempted: map[string]bool{}, acked: map[string]bool{}, delivered: map[string]map[string]bool{}}
	for _, s := range subs {
		led.delivered[s.name] = map[string]bool{}
	}

	// Producers publish until stopProducing, each message retried with its
	// key until acknowledged (or the test gives up on it at giveUp).
	stopProducing := make(chan struct{})
	giveUp, abandon := context.WithCancel(context.Background())
	defer abandon()
	var pubErrs atomic.Int64
	var pwg sync.WaitGroup
	prod, err := sluice.NewProducer(pc, stream, sluice.ProducerConfig{MaxAttempts: 100, AttemptTimeout: 2 * time.Second,
		RetryInitial: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for p := range producers {
		pwg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopProducing:
					return
				case <-time.After(5 * time.Millisecond):
				}
				key := fmt.Sprintf("p%d-%d", p, i)
				led.mu.Lock()
				led.attempted[key] = true
				led.mu.Unlock()
				msg := sluice.Message{Key: fmt.Appendf(nil, "k%d", i%16), Body: []byte(key), IdempotencyKey: key}
				for {
					_, err := prod.Publish(giveUp, msg)
					if err == nil {
						led.mu.Lock()
						led.acked[key] = true
						led.mu.Unlock()
						break
					}
					if giveUp.Err() != nil {
						return
					}
					pubErrs.Add(1)
					if !errors.Is(err, sluice.ErrUnavailable) {
						t.Errorf("publish %s: %v (not ErrUnavailable)", key, err)
						return
					}
				}
			}
		})
	}

	// Consumers fetch and ack until stopConsuming. lastOK[i] is the time of
	// consumer i's last Fetch that returned deliveries.
	stopConsuming, stop := context.WithCancel(context.Background())
	defer stop()
	lastOK := make([]atomic.Int64, len(subs)*consumers)
	var cwg sync.WaitGroup
	for si, s := range subs {
		for j := range consumers {
			idx := si*consumers + j
			cwg.Go(func() {
				var con sluice.Consumer
				for con == nil {
					octx, cancel := context.WithTimeout(stopConsuming, 2*time.Second)
					c, err := cc.NewConsumer(octx, stream, s.name, sluice.ConsumerConfig{MaxInFlight: 100})
					cancel()
					if stopConsuming.Err() != nil {
						return
					}
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					con = c
				}
				defer con.Close()
				for stopConsuming.Err() == nil {
					fctx, cancel := context.WithTimeout(stopConsuming, time.Second)
					ds, err := con.Fetch(fctx, 20)
					cancel()
					if err != nil || len(ds) == 0 {
						continue
					}
					lastOK[idx].Store(time.Now().UnixNano())
					led.mu.Lock()
					for _, d := range ds {
						led.delivered[s.name][string(d.Body)] = true
					}
					led.mu.Unlock()
					actx, cancel := context.WithTimeout(stopConsuming, 2*time.Second)
					con.AckMany(actx, ds) // a lost ack comes back when its lease expires
					cancel()
				}
			})
		}
	}

	// Let traffic start clean, then cycle through the faults.
	time.Sleep(*phaseLen / 2)
	for _, ph := range phases {
		t.Logf("phase %s (open connections %d)", ph.name, proxy.Stats().Open)
		ph.apply(proxy)
		time.Sleep(*phaseLen)
		proxy.Clear()
		time.Sleep(*phaseLen / 4)
	}
	proxy.Clear()
	cleared := time.Now()
	t.Logf("faults cleared: proxy %+v, producer %+v, %d publishes out of attempts and tried again", proxy.Stats(), prod.Stats(), pubErrs.Load())

	// Consumers recover: each fetches deliveries again after the faults
	// stopped, while the producers keep publishing.
	deadline := cleared.Add(drainWithin)
	for {
		var stuck []int
		for i := range lastOK {
			if lastOK[i].Load() < cleared.UnixNano() {
				stuck = append(stuck, i)
			}
		}
		if len(stuck) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers %v (by subscription %d each) fetched nothing in the %v after the faults stopped", stuck, consumers, drainWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopProducing)
	waitOrGiveUp(t, &pwg, time.Until(deadline), abandon, "producers finishing their last publishes")

	// Lag drains: every subscription settles everything and delivered every
	// acknowledged message.
	for _, s := range subs {
		for {
			info, err := b.Subscription(ctx, stream, s.name)
			if err != nil {
				t.Fatal(err)
			}
			led.mu.Lock()
			missing := 0
			for k := range led.acked {
				if !led.delivered[s.name][k] {
					missing++
				}
			}
			led.mu.Unlock()
			if info.Backlog == 0 && info.InFlight == 0 && missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("subscription %s %v after the faults stopped: backlog %d, in flight %d, waiting %d, %d acknowledged messages never delivered",
					s.name, drainWithin, info.Backlog, info.InFlight, info.Waiting, missing)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("drained %v after the faults stopped", time.Since(cleared).Round(time.Millisecond))
	stop()
	cwg.Wait()

	// Exactly once in the log: read every partition from the start.
	stored := storedKeys(t, b)
	led.mu.Lock()
	defer led.mu.Unlock()
	var dups []string
	for k, n := range stored {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", k, n))
		}
		if !led.attempted[k] {
			t.Errorf("stored %q, which no producer published", k)
		}
	}
	sort.Strings(dups)
	if len(dups) > 0 {
		t.Errorf("%d idempotent publishes stored more than once: %v", len(dups), dups[:min(len(dups), 20)])
	}
	lost := 0
	for k := range led.acked {
		if stored[k] == 0 {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged publishes are not stored", lost)
	}
	if len(led.acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	t.Logf("%d acknowledged, %d stored, %d attempted", len(led.acked), len(stored), len(led.attempted))
}

// waitOrGiveUp waits for wg up to d, then cancels and waits again.
func waitOrGiveUp(t *testing.T, wg *sync.WaitGroup, d time.Duration, cancel func(), what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		cancel()
		<-done
		t.Fatalf("%s: still blocked %v after the faults stopped", what, drainWithin)
	}
}

// storedKeys counts the stored messages by body (each body is its
// idempotency key), reading the embedded broker directly.
func storedKeys(t *testing.T, b *sluice.Broker) map[string]int {
	t.Helper()
	ctx := context.Background()
	info, err := b.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range info.Partitions {
		r, err := b.NewReader(ctx, stream, sluice.ReaderConfig{Partition: p.ID, Start: sluice.Earliest()})
		if err != nil {
			t.Fatal(err)
		}
		for r.Offset() < p.HighWatermark {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			rec, err := r.Next(rctx)
			cancel()
			if err != nil {
				t.Fatalf("read partition %d at %d: %v", p.ID, r.Offset(), err)
			}
			out[string(rec.Body)]++
		}
		r.Close()
	}
	return out
}
