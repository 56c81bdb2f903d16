package drill

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
)

// Drill 1's timeline: requests arrive every q1Interval; the downstream answers
// in q1NormalMin to q1NormalMin+q1NormalSpread, except during its slow spell
// [q1SpellFrom, q1SpellTo) after the first request, when a call takes q1Slow
// and fails.
const (
	q1Requests     = 40
	q1Interval     = 40 * time.Millisecond
	q1NormalMin    = 20 * time.Millisecond
	q1NormalSpread = 20 * time.Millisecond
	q1Slow         = 400 * time.Millisecond
	q1SpellFrom    = 500 * time.Millisecond
	q1SpellTo      = 1100 * time.Millisecond
	// In part 3, q1Answers callers that need the answer arrive
	// q1AnswerInterval apart: faster than one worker answers them.
	q1Answers        = 10
	q1AnswerInterval = 10 * time.Millisecond
	// q1Deadline bounds each part.
	q1Deadline = 10 * time.Second
)

// errSlowSpell is the downstream's failure during its slow spell.
var errSlowSpell = errors.New("downstream timed out after 400 ms")

// downstream is drill 1's simulated service. Each request has its own normal
// latency, the same in every part of the drill, so that the parts compare the
// paths and not the luck of the draw.
type downstream struct {
	start time.Time // the first request's time; zero: no slow spell
}

// latency is request id's normal latency: 20 to 40 ms, spread by id.
func (downstream) latency(id int) time.Duration {
	return q1NormalMin + time.Duration(id*7919%21)*q1NormalSpread/20
}

// inSpell reports whether a call starting at t falls in the slow spell.
func (d downstream) inSpell(t time.Time) bool {
	if d.start.IsZero() {
		return false
	}
	at := t.Sub(d.start)
	return at >= q1SpellFrom && at < q1SpellTo
}

// call serves request id.
func (d downstream) call(ctx context.Context, id int) error {
	if d.inSpell(time.Now()) {
		if err := pause(ctx, q1Slow); err != nil {
			return err
		}
		return errSlowSpell
	}
	return pause(ctx, d.latency(id))
}

// every calls f(i) for i in [0, n) in goroutines of their own, started
// interval apart from start, and waits for them all.
func every(ctx context.Context, start time.Time, n int, interval time.Duration, f func(i int)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range n {
		if err := pause(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
			return err
		}
		wg.Go(func() { f(i) })
	}
	return nil
}

// callResult is what one caller saw.
type callResult struct {
	latency time.Duration
	err     error
}

func summarize(rs []callResult) (p50, p99 time.Duration, errs int) {
	var lats []time.Duration
	for _, r := range rs {
		lats = append(lats, r.latency)
		if r.err != nil {
			errs++
		}
	}
	return percentile(lats, 50), percentile(lats, 99), errs
}

func (r *run) queueOrNot() error {
	r.step("The downstream is simulated: it answers in 20 to 40 ms, except from 0.5 s to 1.1 s after the first request, when every call takes 400 ms and fails.")

	r.step("1. %d requests arrive %v apart, and each caller calls the downstream inline.", q1Requests, q1Interval)
	inline, err := r.inlineCallers()
	if err != nil {
		return err
	}
	p50i, p99i, errsi := summarize(inline)
	r.figures("What the callers saw, inline:",
		Figure{"caller p50 inline", ms(p50i), "ms"},
		Figure{"caller p99 inline", ms(p99i), "ms"},
		Figure{"errors inline", float64(errsi), "count"})
	r.info("The %d callers that arrived during the slow spell each waited %v and got an error: the downstream's trouble is theirs.", errsi, q1Slow)

	r.step("2. The same requests publish to a stream and return at once; one worker consumes a queue subscription and calls the downstream at its own pace, retrying failures with backoff.")
	q, err := r.queuedCallers()
	if err != nil {
		return err
	}
	p50q, p99q, errsq := summarize(q.callers)
	r.figures("What the callers saw, behind the queue (each publish is on disk before it returns):",
		Figure{"caller p50 behind the queue", ms(p50q), "ms"},
		Figure{"caller p99 behind the queue", ms(p99q), "ms"},
		Figure{"errors behind the queue", float64(errsq), "count"})
	r.figures("What the worker saw:",
		Figure{"failed calls, retried", float64(q.failures), "count"},
		Figure{"backlog peak", float64(q.peak), "msg"},
		Figure{"drain after the slow spell", seconds(q.drain), "s"},
		Figure{"processed", float64(q.processed), "msg"})
	r.info("The slow spell became a backlog instead of errors: the worker's failed calls were retried, and every request was processed %v after the downstream recovered. The request's outcome now reaches the user later, and some other way.", q.drain.Round(10*time.Millisecond))

	r.step("3. Now callers that need the answer (a price quote): %d of them, arriving %v apart, first calling the downstream inline, then through the queue, where one worker answers each on a reply stream.", q1Answers, q1AnswerInterval)
	a, err := r.answers()
	if err != nil {
		return err
	}
	a50i, a99i := percentile(a.inline, 50), percentile(a.inline, 99)
	a50q, a99q := percentile(a.queued, 50), percentile(a.queued, 99)
	w50 := percentile(a.waits, 50)
	r.figures("Time until the caller has its answer:",
		Figure{"answer p50 inline", ms(a50i), "ms"},
		Figure{"answer p99 inline", ms(a99i), "ms"},
		Figure{"answer p50 through the queue", ms(a50q), "ms"},
		Figure{"answer p99 through the queue", ms(a99q), "ms"},
		Figure{"wait for the worker p50", ms(w50), "ms"},
		Figure{"wait for the worker p99", ms(percentile(a.waits, 99)), "ms"})
	r.info("Through the queue each answer waited for the worker to reach its request (%v at the median), then for a durable reply and the caller's read. The worker's own pace, which protected the downstream in part 2, became the caller's wait. More workers would shorten it, never below the publish, fetch and reply the queue adds, and the reply stream, the correlation of replies and the workers are more to run.",
		w50.Round(100*time.Microsecond))

	r.done("A queue between two services pays when the caller does not need the result: here the callers' p99 went from %.0f ms to %.0f ms and their errors from %d to %d, and the slow spell became a backlog of %d messages, drained %.2f s after it ended. When the caller needs the answer, the queue made it wait (p50 %.1f ms against %.1f ms inline) and added moving parts: there, call inline with a timeout, bounded retries and a circuit breaker.",
		ms(p99i), ms(p99q), errsi, errsq, q.peak, seconds(q.drain), ms(a50q), ms(a50i))
	return nil
}

// inlineCallers runs part 1: every caller calls the downstream itself.
func (r *run) inlineCallers() ([]callResult, error) {
	ctx, cancel := context.WithTimeout(r.ctx, q1Deadline)
	defer cancel()
	start := time.Now()
	ds := downstream{start: start}
	out := make([]callResult, q1Requests)
	err := every(ctx, start, q1Requests, q1Interval, func(i int) {
		t0 := time.Now()
		err := ds.call(ctx, i)
		out[i] = callResult{time.Since(t0), err}
	})
	if err == nil {
		err = ctx.Err()
	}
	return out, err
}

// queued is what part 2 measured.
type queued struct {
	callers   []callResult
	failures  int
	peak      int
	processed int
	drain     time.Duration // from the end of the slow spell to the last ack
}

// backlog counts the requests published and not yet processed, and its peak.
type backlog struct {
	mu                   sync.Mutex
	published, processed int
	peak                 int
	lastDone             time.Time
}

func (b *backlog) add(published, processed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published += published
	b.processed += processed
	b.peak = max(b.peak, b.published-b.processed)
	if processed > 0 {
		b.lastDone = time.Now()
	}
}

// queuedCallers runs part 2: the callers publish, one worker calls the
// downstream.
func (r *run) queuedCallers() (queued, error) {
	ctx, cancel := context.WithTimeout(r.ctx, q1Deadline)
	defer cancel()
	stream, err := r.s.stream(ctx, "orders", 1)
	if err != nil {
		return queued{}, err
	}
	err = r.s.subscription(ctx, stream, sluice.SubscriptionConfig{Name: "fulfilment", Lease: 5 * time.Second,
		MaxDeliveries: 20, BackoffInitial: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond})
	if err != nil {
		return queued{}, err
	}
	cons, err := r.s.consumer(ctx, stream, "fulfilment", "worker", 10)
	if err != nil {
		return queued{}, err
	}
	start := time.Now()
	ds := downstream{start: start}
	var bl backlog
	finished := make(chan struct{}) // closed when the worker returns
	var failures int
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(finished)
		failures, werr = queueWorker(ctx, cons, ds, &bl)
	})

	out := make([]callResult, q1Requests)
	err = every(ctx, start, q1Requests, q1Interval, func(i int) {
		t0 := time.Now()
		_, err := r.s.c.Publish(ctx, stream, sluice.Message{Body: []byte(strconv.Itoa(i))})
		out[i] = callResult{time.Since(t0), err}
		if err == nil {
			bl.add(1, 0)
		}
	})
	if err == nil {
		err = waitFor(ctx, finished, q1Deadline, "the worker draining the backlog")
	}
	cancel()
	wg.Wait()
	if err != nil || werr != nil {
		return queued{}, errors.Join(err, werr)
	}
	bl.mu.Lock()
	defer bl.mu.Unlock()
	return queued{callers: out, failures: failures, peak: bl.peak, processed: bl.processed,
		drain: max(bl.lastDone.Sub(start.Add(q1SpellTo)), 0)}, nil
}

// queueWorker consumes the requests a few at a time and calls the downstream
// for each in turn, nacking a failure (retried after the subscription's
// backoff). It returns once every request is processed, or when ctx ends
// (with ctx's error).
func queueWorker(ctx context.Context, cons sluice.Consumer, ds downstream, bl *backlog) (failures int, err error) {
	done := map[int]bool{} // a redelivery after a lost ack is not counted twice
	for len(done) < q1Requests {
		dels, err := cons.Fetch(ctx, 5)
		if err != nil {
			if ctx.Err() != nil {
				return failures, ctx.Err()
			}
			return failures, fmt.Errorf("worker: %w", err)
		}
		for _, d := range dels {
			id, err := strconv.Atoi(string(d.Body))
			if err != nil {
				return failures, fmt.Errorf("worker: request %q: %w", d.Body, err)
			}
			if cerr := ds.call(ctx, id); cerr != nil {
				if ctx.Err() != nil {
					return failures, ctx.Err()
				}
				failures++
				if err := cons.Nack(ctx, d, sluice.NackOptions{Reason: cerr.Error()}); err != nil {
					return failures, fmt.Errorf("worker: nack: %w", err)
				}
				continue
			}
			if err := cons.Ack(ctx, d); err != nil {
				return failures, fmt.Errorf("worker: ack: %w", err)
			}
			if !done[id] {
				done[id] = true
				bl.add(0, 1)
			}
		}
	}
	return failures, nil
}

// answered is what part 3 measured, per caller.
type answered struct {
	inline, queued []time.Duration
	// waits are the times from a publish's return to the worker taking the
	// request up.
	waits []time.Duration
}

// answers runs part 3: callers that need the answer, inline and then through
// the queue, where one worker answers on a reply stream.
func (r *run) answers() (answered, error) {
	ctx, cancel := context.WithTimeout(r.ctx, q1Deadline)
	defer cancel()
	var ds downstream // no slow spell
	out := answered{inline: make([]time.Duration, q1Answers), queued: make([]time.Duration, q1Answers)}
	errs := make([]error, q1Answers)
	err := every(ctx, time.Now(), q1Answers, q1AnswerInterval, func(i int) {
		t0 := time.Now()
		errs[i] = ds.call(ctx, i)
		out.inline[i] = time.Since(t0)
	})
	if err := errors.Join(append([]error{err}, errs...)...); err != nil {
		return out, err
	}

	requests, err := r.s.stream(ctx, "quotes", 1)
	if err != nil {
		return out, err
	}
	replies, err := r.s.stream(ctx, "replies", 1)
	if err != nil {
		return out, err
	}
	if err := r.s.subscription(ctx, requests, sluice.SubscriptionConfig{Name: "quoter", Lease: 5 * time.Second}); err != nil {
		return out, err
	}
	cons, err := r.s.consumer(ctx, requests, "quoter", "quoter", 10)
	if err != nil {
		return out, err
	}
	rd, err := r.s.c.NewReader(ctx, replies, sluice.ReaderConfig{Start: sluice.Earliest()})
	if err != nil {
		return out, fmt.Errorf("read %s: %w", replies, err)
	}
	defer rd.Close()

	done := make([]chan struct{}, q1Answers) // closed when request i is answered
	for i := range done {
		done[i] = make(chan struct{})
	}
	var mu sync.Mutex
	published, started := make([]time.Time, q1Answers), make([]time.Time, q1Answers)
	onStart := func(id int) {
		mu.Lock()
		defer mu.Unlock()
		if id >= 0 && id < q1Answers && started[id].IsZero() {
			started[id] = time.Now()
		}
	}
	quit := make(chan struct{}) // closed when the worker or the reply reader returns
	var quitOnce sync.Once
	var wg sync.WaitGroup
	var werr, derr error
	wg.Go(func() {
		defer quitOnce.Do(func() { close(quit) })
		werr = quoteWorker(ctx, cons, ds, r.s.c, replies, onStart)
	})
	wg.Go(func() {
		defer quitOnce.Do(func() { close(quit) })
		derr = dispatchReplies(ctx, rd, done)
	})
	errs = make([]error, q1Answers)
	err = every(ctx, time.Now(), q1Answers, q1AnswerInterval, func(i int) {
		t0 := time.Now()
		if _, err := r.s.c.Publish(ctx, requests, sluice.Message{Body: []byte(strconv.Itoa(i))}); err != nil {
			errs[i] = err
			return
		}
		mu.Lock()
		published[i] = time.Now()
		mu.Unlock()
		t := time.NewTimer(q1Deadline)
		defer t.Stop()
		select {
		case <-done[i]:
			out.queued[i] = time.Since(t0)
		case <-quit:
			errs[i] = errors.New("drill: the quote worker or the reply reader stopped")
		case <-ctx.Done():
			errs[i] = ctx.Err()
		case <-t.C:
			errs[i] = fmt.Errorf("drill: the answer to quote %d: not within %v", i, q1Deadline)
		}
	})
	cancel()
	wg.Wait()
	if err := errors.Join(append([]error{err, werr, derr}, errs...)...); err != nil {
		return out, err
	}
	for i := range q1Answers {
		// The worker may take a request up before its publisher has noted
		// the publish's return.
		out.waits = append(out.waits, max(started[i].Sub(published[i]), 0))
	}
	return out, nil
}

// quoteWorker answers each request in turn by publishing a reply whose body
// is the request's; onStart is told when it takes a request up.
func quoteWorker(ctx context.Context, cons sluice.Consumer, ds downstream, c sluice.Client, replies string, onStart func(id int)) error {
	for {
		dels, err := cons.Fetch(ctx, 10)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("quote worker: %w", err)
		}
		for _, d := range dels {
			id, err := strconv.Atoi(string(d.Body))
			if err != nil {
				return fmt.Errorf("quote worker: request %q: %w", d.Body, err)
			}
			onStart(id)
			if err := ds.call(ctx, id); err != nil {
				return nil // without a slow spell, only the end of ctx fails a call
			}
			if _, err := c.Publish(ctx, replies, sluice.Message{Body: d.Body}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("quote worker: reply: %w", err)
			}
			if err := cons.Ack(ctx, d); err != nil && ctx.Err() == nil {
				return fmt.Errorf("quote worker: ack: %w", err)
			}
		}
	}
}

// dispatchReplies reads the reply stream and closes the channel of each
// request answered (once: a request redelivered is answered twice).
func dispatchReplies(ctx context.Context, rd sluice.Reader, answered []chan struct{}) error {
	closed := make([]bool, len(answered))
	for {
		rec, err := rd.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reply reader: %w", err)
		}
		id, err := strconv.Atoi(string(rec.Body))
		if err != nil || id < 0 || id >= len(answered) {
			return fmt.Errorf("reply reader: reply %q answers no request", rec.Body)
		}
		if !closed[id] {
			closed[id] = true
			close(answered[id])
		}
	}
}
