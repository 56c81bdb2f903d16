package sluice

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Handler processes one delivery for a Worker. Returning nil acknowledges it. An
// error nacks it: it is retried with the subscription's backoff, and
// dead-lettered once it has had MaxDeliveries. An error wrapped with Permanent
// dead-letters it at once. The context ends when the worker stops for good or
// the delivery's lease is lost.
type Handler func(ctx context.Context, d Delivery) error

// Permanent marks a handler's error as one a retry cannot fix (bad data, a
// rejected request): the Worker dead-letters the message at once instead of
// retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Limits and defaults of WorkerConfig.
const (
	DefaultWorkerConcurrency = 10
	MaxWorkerConcurrency     = 1000
	DefaultStopTimeout       = 30 * time.Second
	MaxStopTimeout           = time.Hour
	// settleTimeout bounds one settlement (ack, nack, term, extend) by a worker.
	settleTimeout = 10 * time.Second
)

// WorkerConfig configures a Worker. Zero fields take their defaults.
type WorkerConfig struct {
	// Name is the consumer's name (ConsumerConfig.Name). Default
	// "worker-<process>-<n>", where <process> is random per process, so that
	// workers of several processes on one broker never share a name (which
	// would share their in-flight bound and their place in a group).
	Name string
	// Concurrency is how many handlers run at once; it is also the consumer's
	// MaxInFlight. Default 10; limits [1, 1000].
	Concurrency int
	// StopTimeout is how long Run, once its context ends, waits for running
	// handlers before it cancels them and hands their messages back for
	// redelivery. Default 30 s; at most 1 h; a negative value hands them back at
	// once.
	StopTimeout time.Duration
	// Processed, when set, makes the worker an idempotent consumer: each delivery
	// runs through Processed.Process under MessageID, so a message already
	// processed (redelivered, or published twice with one idempotency key) is
	// acknowledged without running the handler.
	Processed ProcessedStore
	// Logger receives settlement failures. Default slog.Default().
	Logger *slog.Logger
}

// Worker runs a Handler over the deliveries of one subscription: Concurrency at
// a time, each lease extended while its handler runs, settled by what the
// handler returns. It works against any Client, embedded or remote.
type Worker struct {
	c      Client
	stream string
	sub    string
	h      Handler
	cfg    WorkerConfig

	processed, failed, handedBack atomic.Int64
}

// WorkerStats counts a worker's outcomes.
type WorkerStats struct {
	// Processed counts deliveries acknowledged, Failed those nacked or
	// terminated, HandedBack those returned unfinished when the worker stopped.
	Processed, Failed, HandedBack int64
}

var (
	workerSeq     atomic.Int64
	workerProcess = func() string {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		return hex.EncodeToString(b[:])
	}()
)

// NewWorker returns a worker for subscription sub of stream; Run starts it.
func NewWorker(c Client, stream, sub string, h Handler, cfg WorkerConfig) (*Worker, error) {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultWorkerConcurrency
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	} else if cfg.StopTimeout < 0 {
		cfg.StopTimeout = 0
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("worker-%s-%d", workerProcess, workerSeq.Add(1))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case h == nil:
		return nil, invalid("h", "a Worker needs a Handler")
	case cfg.Concurrency < 1 || cfg.Concurrency > MaxWorkerConcurrency:
		return nil, invalid("WorkerConfig.Concurrency", "%d outside [1, %d]", cfg.Concurrency, MaxWorkerConcurrency)
	case cfg.StopTimeout > MaxStopTimeout:
		return nil, invalid("WorkerConfig.StopTimeout", "%v above %v", cfg.StopTimeout, MaxStopTimeout)
	}
	return &Worker{c: c, stream: stream, sub: sub, h: h, cfg: cfg}, nil
}

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{Processed: w.processed.Load(), Failed: w.failed.Load(), HandedBack: w.handedBack.Load()}
}

// Run fetches and handles deliveries until ctx ends, then stops gracefully: it
// fetches no more, waits up to StopTimeout for the running handlers (settling
// what they return), then cancels those still running and hands their messages
// back (a nack with a millisecond's delay, so another worker gets them at once;
// the delivery counts against MaxDeliveries). It returns
// nil after a graceful stop, or the error that stopped it.
func (w *Worker) Run(ctx context.Context) error {
	info, err := w.c.Subscription(ctx, w.stream, w.sub)
	if err != nil {
		return err
	}
	cons, err := w.c.NewConsumer(ctx, w.stream, w.sub, ConsumerConfig{Name: w.cfg.Name, MaxInFlight: w.cfg.Concurrency})
	if err != nil {
		return err
	}
	defer cons.Close()
	r := &workerRun{w: w, cons: cons, lease: info.Config.Lease, atMostOnce: info.Config.Delivery == AtMostOnce,
		slots: make(chan struct{}, w.cfg.Concurrency)}
	// Handlers run under hardCtx, which outlives ctx by StopTimeout.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	runErr := r.fetchLoop(ctx, hardCtx)
	drained := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(drained)
	}()
	t := time.NewTimer(w.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		hardCancel() // the handlers still running see their context end
		<-drained
	}
	return runErr
}

// workerRun is one Run's state.
type workerRun struct {
	w          *Worker
	cons       Consumer
	acks       acker
	lease      time.Duration
	atMostOnce bool
	slots      chan struct{}
	wg         sync.WaitGroup
}

// fetchLoop fetches as many deliveries as there are free slots and starts a
// handler for each, until ctx ends.
func (r *workerRun) fetchLoop(ctx, hardCtx context.Context) error {
	for {
		// Wait for at least one free slot, then take every free one.
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	take:
		for n < cap(r.slots) {
			select {
			case r.slots <- struct{}{}:
				n++
			default:
				break take
			}
		}
		ds, err := r.cons.Fetch(ctx, min(n, MaxFetch))
		for range n - len(ds) {
			<-r.slots
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sluice: worker %s: fetch: %w", r.w.cfg.Name, err)
		}
		for _, d := range ds {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { <-r.slots }()
				r.handle(hardCtx, d)
			}()
		}
	}
}

// handle runs the handler on d, extending its lease meanwhile, and settles it.
func (r *workerRun) handle(hardCtx context.Context, d Delivery) {
	hctx, cancel := context.WithCancel(hardCtx)
	defer cancel()
	var lost atomic.Bool
	stopExtend := make(chan struct{})
	extended := make(chan struct{})
	if r.atMostOnce {
		close(extended)
	} else {
		go func() {
			defer close(extended)
			r.extendWhileRunning(d, stopExtend, func() { lost.Store(true); cancel() })
		}()
	}
	err := r.run(hctx, d)
	close(stopExtend)
	<-extended
	if r.atMostOnce {
		r.count(err)
		return
	}
	if lost.Load() {
		r.w.failed.Add(1)
		return // the lease went to someone else: nothing to settle
	}
	sctx, scancel := context.WithTimeout(context.Background(), settleTimeout)
	defer scancel()
	var serr error
	switch {
	case err == nil:
		serr = r.acks.ack(sctx, r.cons, d)
		r.w.processed.Add(1)
	case hardCtx.Err() != nil && errors.Is(err, hardCtx.Err()):
		// A millisecond, not zero (which means the subscription's backoff): due
		// again at once. The delivery still counts against MaxDeliveries.
		serr = r.cons.Nack(sctx, d, NackOptions{Delay: time.Millisecond, Reason: "worker stopped before the handler finished"})
		r.w.handedBack.Add(1)
	case IsPermanent(err):
		serr = r.cons.Term(sctx, d, reasonOf(err))
		r.w.failed.Add(1)
	default:
		serr = r.cons.Nack(sctx, d, NackOptions{Reason: reasonOf(err)})
		r.w.failed.Add(1)
	}
	if serr != nil {
		r.w.cfg.Logger.Warn("sluice: worker could not settle a delivery; it is redelivered when its lease expires",
			"worker", r.w.cfg.Name, "stream", r.w.stream, "subscription", r.w.sub,
			"partition", d.Partition, "offset", d.Offset, "error", serr)
	}
}

// acker gathers the acks of handlers that finish together into one AckMany:
// the handler that finds none being sent sends what has queued, until the
// queue is empty, and every handler gets its own answer.
type acker struct {
	mu       sync.Mutex
	queue    []ackReq
	flushing bool
}

type ackReq struct {
	d    Delivery
	done chan error
}

func (a *acker) ack(ctx context.Context, cons Consumer, d Delivery) error {
	done := make(chan error, 1)
	a.mu.Lock()
	a.queue = append(a.queue, ackReq{d, done})
	if !a.flushing {
		a.flushing = true
		for len(a.queue) > 0 {
			batch := a.queue
			a.queue = nil
			a.mu.Unlock()
			ds := make([]Delivery, len(batch))
			for i, q := range batch {
				ds[i] = q.d
			}
			for i, err := range cons.AckMany(ctx, ds) {
				batch[i].done <- err
			}
			a.mu.Lock()
		}
		a.flushing = false
	}
	a.mu.Unlock()
	return <-done
}

func (r *workerRun) count(err error) {
	if err == nil {
		r.w.processed.Add(1)
	} else {
		r.w.failed.Add(1)
	}
}

// run calls the handler, through the idempotent-consumer store when there is one.
func (r *workerRun) run(ctx context.Context, d Delivery) error {
	if r.w.cfg.Processed == nil {
		return r.w.h(ctx, d)
	}
	_, err := r.w.cfg.Processed.Process(ctx, MessageID(d.Record), func(ctx context.Context) error {
		return r.w.h(ctx, d)
	})
	return err
}

// extendWhileRunning extends d's lease every third of the lease until stop is
// closed; lost is called if the lease cannot be kept.
func (r *workerRun) extendWhileRunning(d Delivery, stop <-chan struct{}, lost func()) {
	every := max(r.lease/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
			_, err := r.cons.Extend(ctx, d, r.lease)
			cancel()
			if errors.Is(err, ErrStaleLease) {
				lost()
				return
			}
			if err != nil {
				r.w.cfg.Logger.Warn("sluice: worker could not extend a lease", "worker", r.w.cfg.Name,
					"partition", d.Partition, "offset", d.Offset, "error", err)
			}
		}
	}
}

// reasonOf is an error's text within the limit of a nack's reason.
func reasonOf(err error) string {
	s := err.Error()
	const most = 1024
	if len(s) > most {
		s = s[:most]
	}
	return s
}
