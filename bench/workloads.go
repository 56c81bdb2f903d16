package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The workloads. Each runs against one freshly opened peer and returns one
// sample; the harness repeats it and keeps the median and the range.

// Shapes of the workloads, the same for every peer.
const (
	w1Producers   = 4
	w1Window      = 64
	fetchBatch    = 100 // the most deliveries one Fetch asks for
	fillBatch     = 1000
	fillWindow    = 1000 // publishes in flight when a peer has no batch publish
	w3Window      = 10_000
	w4Subs        = 10
	keyCount      = 1000
	w5Consumers   = 4
	w5Partitions  = 4
	w6Partitions  = 8
	w6Members     = 4
	memPartitions = 4
	memBodySize   = 100
	memFillers    = 2
)

// sample is what one run of one workload measured. Latencies are in
// microseconds; a zero one was not measured.
type sample struct {
	msgsPerSec     float64
	p50, p99, p999 float64 // W1: publish to durable ack; W3: publish to delivery
	ack50, ack99   float64 // W3: publish to durable ack
	ack999         float64
	rss            int64 // memory: the broker's resident set, bytes
}

// clock is the time base of the timestamps carried in W3's bodies: the
// producer and the consumer run in the harness's process, so one monotonic
// clock serves both.
var clock = time.Now()

func since() int64 { return int64(time.Since(clock)) }

// body returns size random bytes (incompressible, like most payloads).
func body(size int) []byte {
	b := make([]byte, size)
	rand.Read(b)
	return b
}

// keyed returns message i of a keyed workload: keyCount keys in turn.
func keyed(b []byte, i int) message {
	return message{Key: fmt.Appendf(nil, "key-%04d", i%keyCount), Body: b}
}

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	us []float64
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.us = append(l.us, float64(d)/float64(time.Microsecond))
	l.mu.Unlock()
}

// firstErr keeps the first error of many goroutines.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

// publishEach publishes msgs through an asynchronous publish and waits for
// every acknowledgement: PublishBatch for a peer without a batch of its own.
// It returns the first error.
func publishEach(ctx context.Context, publish func(context.Context, message, func(error)), msgs []message) error {
	var (
		wg   sync.WaitGroup
		errs firstErr
	)
	wg.Add(len(msgs))
	for _, m := range msgs {
		publish(ctx, m, func(err error) {
			errs.set(err)
			wg.Done()
		})
	}
	wg.Wait()
	return errs.get()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// windowed publishes through pr with at most window publishes outstanding.
type windowed struct {
	pr   producer
	sem  chan struct{}
	errs firstErr
}

func newWindowed(pr producer, window int) *windowed {
	return &windowed{pr: pr, sem: make(chan struct{}, window)}
}

// publish waits for room in the window, then publishes m; after is called
// (if not nil) with the outcome, before the room is given back.
func (w *windowed) publish(ctx context.Context, m message, after func(error)) error {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.pr.Publish(ctx, m, func(err error) {
		w.errs.set(err)
		if after != nil {
			after(err)
		}
		<-w.sem
	})
	return w.errs.get()
}

// wait waits until every publish is acknowledged, and returns the first
// error.
func (w *windowed) wait(ctx context.Context) error {
	for range cap(w.sem) {
		select {
		case w.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for range cap(w.sem) {
		<-w.sem
	}
	return w.errs.get()
}

// fill stores n messages made by mk, untimed, with fillers producers at
// once: in batches when the peer's producer has a batch publish.
func fill(ctx context.Context, p peer, n, fillers int, mk func(i int) message) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs firstErr
	)
	for range fillers {
		wg.Go(func() {
			pr, err := p.NewProducer(ctx)
			if err != nil {
				errs.set(err)
				return
			}
			defer func() { errs.set(pr.Close()) }()
			bp, batched := pr.(batchPublisher)
			var w *windowed
			if !batched {
				w = newWindowed(pr, fillWindow)
			}
			batch := make([]message, 0, fillBatch)
			for errs.get() == nil {
				first := int(next.Add(fillBatch)) - fillBatch
				if first >= n {
					break
				}
				batch = batch[:0]
				for i := first; i < min(first+fillBatch, n); i++ {
					batch = append(batch, mk(i))
				}
				if batched {
					errs.set(bp.PublishBatch(ctx, batch))
					continue
				}
				for _, m := range batch {
					if err := w.publish(ctx, m, nil); err != nil {
						errs.set(err)
						break
					}
				}
			}
			if w != nil {
				errs.set(w.wait(ctx))
			}
		})
	}
	wg.Wait()
	if err := errs.get(); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	return nil
}

// ackAll settles a fetched batch: at once when the consumer can
// (batchAcker), else one Ack after another. errs[i] answers ds[i].
func ackAll(ctx context.Context, c consumer, ds []delivery) []error {
	if ba, ok := c.(batchAcker); ok {
		return ba.AckBatch(ctx, ds)
	}
	errs := make([]error, len(ds))
	for i, d := range ds {
		errs[i] = c.Ack(ctx, d)
	}
	return errs
}

// runW1 is durable publish throughput: w1Producers producers, each keeping
// w1Window publishes in flight, for d; every publish waits for the durable
// acknowledgement. Latencies are publish to acknowledgement under that load.
func runW1(ctx context.Context, p peer, size int, d time.Duration) (sample, error) {
	if err := p.Setup(ctx, topology{Partitions: 1, Mode: modeQueue}); err != nil {
		return sample{}, err
	}
	b := body(size)
	var (
		acked atomic.Int64
		last  atomic.Int64 // since() of the latest acknowledgement
		lat   latencies
		wg    sync.WaitGroup
		errs  firstErr
	)
	start := since()
	stopAt := time.Now().Add(d)
	for range w1Producers {
		wg.Go(func() {
			pr, err := p.NewProducer(ctx)
			if err != nil {
				errs.set(err)
				return
			}
			w := newWindowed(pr, w1Window)
			for time.Now().Before(stopAt) && errs.get() == nil {
				sent := time.Now()
				if err := w.publish(ctx, message{Body: b}, func(err error) {
					if err == nil {
						lat.add(time.Since(sent))
						acked.Add(1)
						last.Store(since())
					}
				}); err != nil {
					errs.set(err)
				}
			}
			errs.set(w.wait(ctx))
			errs.set(pr.Close())
		})
	}
	wg.Wait()
	if err := errs.get(); err != nil {
		return sample{}, err
	}
	if acked.Load() == 0 {
		return sample{}, errors.New("W1: no publish acknowledged")
	}
	s := sample{msgsPerSec: float64(acked.Load()) / time.Duration(last.Load()-start).Seconds()}
	s.p50, s.p99, s.p999 = percentiles(lat.us)
	return s, nil
}

// drainSpec is a drain workload: a backlog of n messages consumed and acked
// by consumersPerSub consumers on each subscription.
type drainSpec struct {
	topo            topology
	n               int
	consumersPerSub int
	keyed           bool
}

// runDrain fills the backlog (untimed), then times its consumption: from
// the first Fetch to the last ack applied on every subscription. The rate is
// messages acknowledged per second, all subscriptions together.
func runDrain(ctx context.Context, p peer, size int, spec drainSpec) (sample, error) {
	if err := p.Setup(ctx, spec.topo); err != nil {
		return sample{}, err
	}
	b := body(size)
	mk := func(i int) message { return message{Body: b} }
	if spec.keyed {
		mk = func(i int) message { return keyed(b, i) }
	}
	if err := fill(ctx, p, spec.n, 1, mk); err != nil {
		return sample{}, err
	}
	type member struct {
		c   consumer
		sub int
	}
	var members []member
	defer func() {
		for _, m := range members {
			m.c.Close()
		}
	}()
	for si, sub := range spec.topo.Subscriptions {
		for i := range spec.consumersPerSub {
			c, err := p.NewConsumer(ctx, sub, i)
			if err != nil {
				return sample{}, err
			}
			members = append(members, member{c, si})
		}
	}
	// Each subscription's consumers stop once it has delivered n messages.
	counts := make([]atomic.Int64, len(spec.topo.Subscriptions))
	subCtx := make([]context.Context, len(counts))
	subDone := make([]context.CancelFunc, len(counts))
	for i := range counts {
		subCtx[i], subDone[i] = context.WithCancel(ctx)
		defer subDone[i]()
	}
	var (
		wg   sync.WaitGroup
		errs firstErr
	)
	start := time.Now()
	for _, m := range members {
		wg.Go(func() {
			sctx := subCtx[m.sub]
			for sctx.Err() == nil {
				ds, err := m.c.Fetch(sctx, fetchBatch)
				if err != nil {
					if sctx.Err() == nil {
						errs.set(err)
						subDone[m.sub]()
					}
					return
				}
				acked := 0
				for _, err := range ackAll(ctx, m.c, ds) {
					switch {
					case err == nil:
						acked++
					case errors.Is(err, errNotHeld): // comes again to its new owner
					default:
						errs.set(err)
						subDone[m.sub]()
						return
					}
				}
				if counts[m.sub].Add(int64(acked)) >= int64(spec.n) {
					subDone[m.sub]()
				}
			}
		})
	}
	wg.Wait()
	if err := errs.get(); err != nil {
		return sample{}, err
	}
	for _, m := range members {
		if w, ok := m.c.(ackWaiter); ok {
			if err := w.WaitAcked(ctx); err != nil {
				return sample{}, err
			}
		}
	}
	elapsed := time.Since(start)
	var total int64
	for i := range counts {
		total += counts[i].Load()
	}
	return sample{msgsPerSec: float64(total) / elapsed.Seconds()}, nil
}

// runW3 is end-to-end latency at a fixed rate: one producer publishes rate
// messages a second for d, each carrying the time it was due; one consumer
// takes and acks them. Latencies are counted from the time a message was
// due, not from when the producer got to send it, so a broker that falls
// behind is charged for the wait (no coordinated omission). The first tenth
// of the messages warms up and is not counted.
func runW3(ctx context.Context, p peer, size, rate int, d time.Duration) (sample, error) {
	if size < 16 {
		return sample{}, fmt.Errorf("W3 carries a timestamp and an index: body size %d below 16", size)
	}
	if err := p.Setup(ctx, topology{Partitions: 1, Mode: modeQueue, Subscriptions: []string{"latency"}}); err != nil {
		return sample{}, err
	}
	c, err := p.NewConsumer(ctx, "latency", 0)
	if err != nil {
		return sample{}, err
	}
	defer c.Close()
	pr, err := p.NewProducer(ctx)
	if err != nil {
		return sample{}, err
	}
	total := int(float64(rate) * d.Seconds())
	warm := int64(total / 10)
	interval := time.Second / time.Duration(rate)
	var (
		deliver, ack latencies
		errs         firstErr
		got          atomic.Int64
		cwg          sync.WaitGroup
	)
	cctx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	cwg.Go(func() {
		for got.Load() < int64(total) {
			ds, err := c.Fetch(cctx, fetchBatch)
			if err != nil {
				if cctx.Err() == nil {
					errs.set(err)
				}
				return
			}
			now := since()
			for _, d := range ds {
				i := int64(binary.BigEndian.Uint64(d.Body[8:16]))
				if i >= warm {
					deliver.add(time.Duration(now - int64(binary.BigEndian.Uint64(d.Body))))
				}
			}
			for _, err := range ackAll(ctx, c, ds) {
				if err != nil {
					errs.set(err)
					return
				}
			}
			got.Add(int64(len(ds)))
		}
	})
	w := newWindowed(pr, w3Window)
	start := since()
	for i := 0; i < total && errs.get() == nil; {
		due := min(total, int((since()-start)/int64(interval))+1)
		for ; i < due; i++ {
			m := message{Body: make([]byte, size)}
			at := start + int64(i)*int64(interval)
			binary.BigEndian.PutUint64(m.Body, uint64(at))
			binary.BigEndian.PutUint64(m.Body[8:16], uint64(i))
			counted := int64(i) >= warm
			if err := w.publish(ctx, m, func(err error) {
				if err == nil && counted {
					ack.add(time.Duration(since() - at))
				}
			}); err != nil {
				errs.set(err)
				break
			}
		}
		time.Sleep(min(interval, time.Millisecond))
	}
	errs.set(w.wait(ctx))
	errs.set(pr.Close())
	elapsed := time.Duration(since() - start)
	if errs.get() != nil {
		stopConsumer()
	}
	// The consumer stops once it has every message, or when ctx ends.
	done := make(chan struct{})
	go func() { cwg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		stopConsumer()
		<-done
		errs.set(fmt.Errorf("W3: %d of %d messages delivered: %w", got.Load(), total, ctx.Err()))
	}
	if err := errs.get(); err != nil {
		return sample{}, err
	}
	s := sample{msgsPerSec: float64(total) / elapsed.Seconds()}
	s.p50, s.p99, s.p999 = percentiles(deliver.us)
	s.ack50, s.ack99, s.ack999 = percentiles(ack.us)
	return s, nil
}

// runMemory fills a backlog of n 100 B messages in one queue subscription of
// a broker running in a process of its own, and reads that process's
// resident set. The rate is the fill's.
func runMemory(ctx context.Context, p peer, n int) (sample, error) {
	mr, ok := p.(memoryReporter)
	if !ok {
		return sample{}, errors.New("the peer cannot report its broker's memory")
	}
	if err := p.Setup(ctx, topology{Partitions: memPartitions, Mode: modeQueue, Subscriptions: []string{"backlog"}, Messages: int64(n)}); err != nil {
		return sample{}, err
	}
	b := body(memBodySize)
	start := time.Now()
	if err := fill(ctx, p, n, memFillers, func(int) message { return message{Body: b} }); err != nil {
		return sample{}, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	rss, err := mr.BrokerRSS(ctx)
	if err != nil {
		return sample{}, err
	}
	return sample{msgsPerSec: rate, rss: rss}, nil
}
