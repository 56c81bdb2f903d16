package drill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice"
)

// Drill 4's stream and workers.
const (
	o4Partitions = 4
	o4Keys       = 8
	o4Messages   = 200
	o4Workers    = 4
	o4Members    = 2
	o4Lease      = 10 * time.Second
	o4Wait       = 8 * time.Second
	o4Deadline   = 14 * time.Second
	// o4SeqHeader carries a message's sequence number within its key.
	o4SeqHeader = "seq"
)

// orderLog records the order in which one phase processed the messages and
// counts, per key, the messages processed after a later one of the same key.
type orderLog struct {
	work bool // simulate processing time

	mu         sync.Mutex
	last       map[string]int // the highest sequence number processed, per key
	seen       map[string]bool
	violations int
	badKeys    map[string]bool
	n          int
	start, end time.Time
	done       chan struct{} // closed once every message was processed
}

func newOrderLog(work bool) *orderLog {
	return &orderLog{work: work, last: map[string]int{}, seen: map[string]bool{}, badKeys: map[string]bool{},
		start: time.Now(), done: make(chan struct{})}
}

// record notes that d was processed; a redelivery of a message already
// processed is not counted again.
func (o *orderLog) record(d sluice.Delivery) error {
	seq, err := seqOf(d)
	if err != nil {
		return err
	}
	key := string(d.Key)
	o.mu.Lock()
	defer o.mu.Unlock()
	id := key + "/" + strconv.Itoa(seq)
	if o.seen[id] {
		return nil
	}
	o.seen[id] = true
	if seq < o.last[key] {
		o.violations++
		o.badKeys[key] = true
	}
	o.last[key] = max(o.last[key], seq)
	o.n++
	if o.n == o4Messages {
		o.end = time.Now()
		close(o.done)
	}
	return nil
}

func (o *orderLog) result() (violations, keys, n int, elapsed time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.violations, len(o.badKeys), o.n, o.end.Sub(o.start)
}

func seqOf(d sluice.Delivery) (int, error) {
	for _, h := range d.Headers {
		if h.Key == o4SeqHeader {
			return strconv.Atoi(string(h.Value))
		}
	}
	return 0, fmt.Errorf("drill: message at %d/%d has no %q header", d.Partition, d.Offset, o4SeqHeader)
}

// workTime is a handler's simulated processing time: mostly 1 to 3 ms, one
// time in three 8 to 20 ms, as real handlers vary with their input and their
// downstreams.
func workTime(rng *rand.Rand) time.Duration {
	if rng.IntN(3) == 0 {
		return 8*time.Millisecond + time.Duration(rng.Int64N(int64(12*time.Millisecond)))
	}
	return time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Millisecond)))
}

func (r *run) taskQueueOrLog() error {
	ctx, cancel := context.WithTimeout(r.ctx, o4Deadline)
	defer cancel()
	stream, err := r.s.stream(ctx, "events", o4Partitions)
	if err != nil {
		return err
	}
	for _, sc := range []sluice.SubscriptionConfig{
		{Name: "tasks", Mode: sluice.QueueMode, Lease: o4Lease},
		{Name: "by-key", Mode: sluice.KeyOrderedMode, Lease: o4Lease},
	} {
		if err := r.s.subscription(ctx, stream, sc); err != nil {
			return err
		}
	}

	r.step("1. %d messages over %d keys go to a stream of %d partitions; each carries its sequence number within its key. A key always maps to the same partition.", o4Messages, o4Keys, o4Partitions)
	var msgs []sluice.Message
	for i := range o4Messages {
		key := fmt.Sprintf("acct-%d", i%o4Keys+1)
		msgs = append(msgs, sluice.Message{Key: []byte(key), Body: fmt.Appendf(nil, "event %d of %s", i/o4Keys+1, key),
			Headers: []sluice.Header{{Key: o4SeqHeader, Value: []byte(strconv.Itoa(i/o4Keys + 1))}}})
	}
	if _, err := r.s.c.PublishBatch(ctx, stream, msgs); err != nil {
		return err
	}

	r.step("2. Task queue: a queue subscription and %d workers, each taking the next message and spending 1 to 20 ms on it.", o4Workers)
	qv, qk, qn, qd, err := r.pool(ctx, stream, "tasks")
	if err != nil {
		return err
	}
	r.figures("In the order of processing:",
		Figure{"order violations, queue", float64(qv), "count"},
		Figure{"keys processed out of order, queue", float64(qk), "count"},
		Figure{"processed, queue", float64(qn), "msg"},
		Figure{"throughput, queue", rate(qn, qd), "msg/s"})
	if qv == 0 {
		r.info("This run happened to process every key in order. Nothing in a task queue promises it: a slower worker or a retry reorders a key's messages, and the next run will differ.")
	} else {
		r.info("%d messages were processed after a later message of their own key: whichever worker is free takes the next message, and a fast worker overtakes a slow one.", qv)
	}

	r.step("3. The middle ground: a key_ordered subscription and the same %d workers. A key's next message is handed out only once the previous one is acknowledged; different keys go to any free worker.", o4Workers)
	kv, _, kn, kd, err := r.pool(ctx, stream, "by-key")
	if err != nil {
		return err
	}
	r.figures("In the order of processing:",
		Figure{"order violations, key_ordered", float64(kv), "count"},
		Figure{"processed, key_ordered", float64(kn), "msg"},
		Figure{"throughput, key_ordered", rate(kn, kd), "msg/s"})

	r.step("4. Log: a partitioned subscription read by a group of %d members. The group forms first (each member fetches once and is given its partitions); then the subscription is moved to the earliest message.", o4Members)
	g, err := r.group(ctx, stream)
	if err != nil {
		return err
	}
	defer g.stop()
	r.info("%s.", g.assignment)
	pv, _, pn, pd, err := g.phase(ctx, true)
	if err != nil {
		return err
	}
	r.figures("Each member processing its partitions in order:",
		Figure{"order violations, partitioned", float64(pv), "count"},
		Figure{"processed, partitioned", float64(pn), "msg"},
		Figure{"throughput, partitioned", rate(pn, pd), "msg/s"})

	r.step("5. Replay: the partitioned subscription is moved back to the earliest message, and the group reads the history again.")
	rv, _, rn, rd, err := g.phase(ctx, false)
	if err != nil {
		return err
	}
	info, err := r.s.c.Stream(ctx, stream)
	if err != nil {
		return err
	}
	r.figures("The replay:",
		Figure{"replayed", float64(rn), "msg"},
		Figure{"order violations, replay", float64(rv), "count"},
		Figure{"replay time", ms(rd), "ms"},
		Figure{"messages still stored", float64(info.Messages), "msg"})
	r.info("A log keeps its history after it is consumed (this stream's retention is by limits), so any subscription can move back and read it again, in the same order. A task queue forgets what is done: under the 'work' retention policy a stream drops messages once every subscription settled them, and there is nothing to replay.")
	if err := g.stop(); err != nil {
		return err
	}

	r.done("The task queue processed %d messages out of their key's order, at %.0f msg/s: it suits independent tasks such as the emails, and its parallelism is the number of workers. The partitioned log kept every key in order (%d violations) with its parallelism capped by the partitions and its %d members (%.0f msg/s), and replayed all %d messages in order: it suits the ledger. key_ordered sits between them: each key in order (%d violations), different keys on any free worker (%.0f msg/s).",
		qv, rate(qn, qd), pv, o4Members, rate(pn, pd), rn, kv, rate(kn, kd))
	return nil
}

// pool runs o4Workers consumers of sub until every message was processed once.
func (r *run) pool(ctx context.Context, stream, sub string) (violations, keys, n int, elapsed time.Duration, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := newOrderLog(true)
	errs := make([]error, o4Workers)
	var wg sync.WaitGroup
	for w := range o4Workers {
		cons, err := r.s.consumer(ctx, stream, sub, fmt.Sprintf("%s-worker-%d", sub, w+1), 1)
		if err != nil {
			cancel()
			wg.Wait()
			return 0, 0, 0, 0, err
		}
		rng := rand.New(rand.NewPCG(4, uint64(w)))
		wg.Go(func() {
			errs[w] = consume(ctx, cons, 1, func(d sluice.Delivery) error { return processIn(ctx, o, rng, d) })
		})
	}
	err = waitFor(ctx, o.done, o4Wait, "the "+sub+" workers")
	cancel()
	wg.Wait()
	if err != nil {
		return 0, 0, 0, 0, errors.Join(append([]error{err}, errs...)...)
	}
	violations, keys, n, elapsed = o.result()
	return violations, keys, n, elapsed, nil
}

// processIn simulates the processing of d (when o asks for it) and records it.
func processIn(ctx context.Context, o *orderLog, rng *rand.Rand, d sluice.Delivery) error {
	if o.work {
		if err := pause(ctx, workTime(rng)); err != nil {
			return err
		}
	}
	return o.record(d)
}

// consume fetches up to batch deliveries at a time and handles them in turn,
// acknowledging each, until ctx ends.
func consume(ctx context.Context, cons sluice.Consumer, batch int, handle func(sluice.Delivery) error) error {
	for {
		ds, err := cons.Fetch(ctx, batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, d := range ds {
			if err := handle(d); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := cons.Ack(ctx, d); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, sluice.ErrStaleLease) {
					continue // revoked (a seek, a rebalance): no longer ours to settle
				}
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
}

// group is the partitioned subscription's members, running until stop.
type group struct {
	r          *run
	stream     string
	assignment string
	cur        atomic.Pointer[orderLog] // the phase being recorded
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []error
}

const o4Ledger = "ledger"

// group creates the partitioned subscription at the latest position, starts
// the members and waits until the group holds them all.
func (r *run) group(ctx context.Context, stream string) (*group, error) {
	err := r.s.subscription(ctx, stream, sluice.SubscriptionConfig{Name: o4Ledger, Mode: sluice.PartitionedMode,
		StartLatest: true, Lease: o4Lease})
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	g := &group{r: r, stream: stream, cancel: cancel}
	for m := range o4Members {
		name := fmt.Sprintf("member-%c", 'a'+m)
		cons, err := r.s.consumer(ctx, stream, o4Ledger, name, 20)
		if err != nil {
			g.stop()
			return nil, err
		}
		rng := rand.New(rand.NewPCG(4, uint64(m)))
		g.wg.Go(func() {
			err := consume(mctx, cons, 10, func(d sluice.Delivery) error {
				o := g.cur.Load()
				if o == nil {
					return fmt.Errorf("%s: a delivery before the group was formed", name)
				}
				return processIn(mctx, o, rng, d)
			})
			if err != nil {
				g.mu.Lock()
				g.errs = append(g.errs, fmt.Errorf("%s: %w", name, err))
				g.mu.Unlock()
			}
		})
	}
	err = poll(ctx, 10*time.Millisecond, o4Wait, "the group forming", func() (bool, error) {
		info, err := r.s.c.Subscription(ctx, stream, o4Ledger)
		if err != nil {
			return false, err
		}
		if len(info.Members) != o4Members {
			return false, nil
		}
		var parts []string
		for _, m := range info.Members {
			if len(m.Partitions) == 0 {
				return false, nil
			}
			var ps []string
			for _, p := range m.Partitions {
				ps = append(ps, strconv.Itoa(p))
			}
			parts = append(parts, fmt.Sprintf("%s reads partitions %s", m.Name, strings.Join(ps, ", ")))
		}
		g.assignment = strings.Join(parts, "; ")
		return true, nil
	})
	if err != nil {
		return nil, errors.Join(err, g.stop())
	}
	return g, nil
}

// phase moves the subscription to the earliest message and waits until the
// group processed every message once.
func (g *group) phase(ctx context.Context, work bool) (violations, keys, n int, elapsed time.Duration, err error) {
	// What the previous phase processed is acknowledged before the seek, which
	// would revoke the leases still held.
	err = poll(ctx, 5*time.Millisecond, o4Wait, "the group's last acknowledgments", func() (bool, error) {
		info, err := g.r.s.c.Subscription(ctx, g.stream, o4Ledger)
		return err == nil && info.InFlight == 0, err
	})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	o := newOrderLog(work)
	g.cur.Store(o)
	if err := g.r.s.c.SeekSubscription(ctx, g.stream, o4Ledger, sluice.Earliest()); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := waitFor(ctx, o.done, o4Wait, "the group"); err != nil {
		return 0, 0, 0, 0, errors.Join(err, g.stop())
	}
	violations, keys, n, elapsed = o.result()
	return violations, keys, n, elapsed, nil
}

// stop ends the members and returns what stopped any of them early. It may be
// called more than once.
func (g *group) stop() error {
	g.cancel()
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}
