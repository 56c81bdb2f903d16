package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

// Errors returned by a subscription.
var (
	// ErrStaleLease is returned for an ack, nack, term or extend whose lease is no
	// longer held: it expired and the message was handed to someone else, or the
	// message was already settled.
	ErrStaleLease = errors.New("subscription: lease not held")
	// ErrClosed is returned once the subscription is closed.
	ErrClosed = errors.New("subscription: closed")
	// ErrFailed is returned once the journal failed; reopen to recover.
	ErrFailed = errors.New("subscription: journal failed, subscription stopped")
)

// Delivery is one message handed to a consumer under a lease (AtLeastOnce), or
// settled as it is handed out (AtMostOnce: Lease is 0 and Deadline zero).
type Delivery struct {
	Partition int
	Offset    int64
	// Lease is the fencing token: settle with it. Tokens increase with every
	// hand-out while the subscription is open; Open starts them from the clock
	// (unix nanoseconds), above those of earlier opens unless it went back.
	Lease      uint64
	Deliveries int // 1 on the first delivery
	Deadline   time.Time
	Timestamp  int64 // unix ms
	Key        []byte
	Value      []byte
	Headers    []batch.RecordHeader
}

// DeadMessage is a message that the subscription gives up on.
type DeadMessage struct {
	Partition  int
	Offset     int64
	Deliveries int
	Timestamp  int64
	Key        []byte
	Value      []byte
	Headers    []batch.RecordHeader
	Attempts   []Attempt // oldest first
	Reason     string    // why it was dead-lettered
}

// Options configures Open.
type Options struct {
	Config Config
	// Dir holds state.json and the journal. Required.
	Dir string
	FS  vfs.FS
	// Partitions returns the stream's partition logs; the list may grow.
	Partitions func() []logstore.Log
	// DeadLetter stores a message that ran out of deliveries or was terminated. It
	// must be durable when it returns nil.
	DeadLetter func(ctx context.Context, m DeadMessage) error
	Now        func() time.Time
	Logger     *slog.Logger
}

// Sub is an open subscription. It is safe for concurrent use.
type Sub struct {
	cfg     Config
	dir     string
	fs      vfs.FS
	parts   func() []logstore.Log
	dead    func(context.Context, DeadMessage) error
	now     func() time.Time
	log     *slog.Logger
	journal *logstore.Partition

	mu           sync.Mutex
	gen          int
	state        []*partState
	leases       timeHeap // in-flight deliveries by deadline
	leaseSeq     uint64
	inflight     map[string]int // per consumer
	deadN        int64
	redeliveries int64
	dlqStart     int64          // dead letters before this offset were purged
	redriven     map[int64]bool // dead letters (by offset) already redriven
	events       int            // journaled since the last compaction
	rr           int
	failure      error
	closed       bool
	changed      chan struct{} // closed and replaced on every change
	grp          group         // partitioned mode
	watching     int           // partitions with a watcher

	stop chan struct{}
	wg   sync.WaitGroup
}

// deadLetterTimeout bounds one dead-letter publish.
const deadLetterTimeout = 30 * time.Second

// compactEvents is how many journal events trigger a compaction.
const compactEvents = 100000

// Open opens (recovering if needed) or creates a subscription.
func Open(o Options) (*Sub, error) {
	cfg := o.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.FS == nil {
		o.FS = vfs.OS{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Sub{
		cfg: cfg, dir: o.Dir, fs: o.FS, parts: o.Partitions, dead: o.DeadLetter, now: o.Now, log: o.Logger,
		inflight: map[string]int{}, redriven: map[int64]bool{}, grp: group{members: map[string]int64{}}, changed: make(chan struct{}), stop: make(chan struct{}),
		leaseSeq: uint64(o.Now().UnixNano()),
	}
	if err := s.recover(); err != nil {
		if s.journal != nil {
			s.journal.Close()
		}
		return nil, fmt.Errorf("subscription %s: open: %w", cfg.Name, err)
	}
	s.mu.Lock()
	s.watchLocked()
	s.mu.Unlock()
	return s, nil
}

// watchLocked starts a watcher for every partition that has none: it wakes
// fetchers when new messages arrive.
func (s *Sub) watchLocked() {
	parts := s.parts()
	for ; s.watching < len(parts); s.watching++ {
		log := parts[s.watching]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			seen := log.HighWatermark()
			for {
				hw, err := log.Wait(ctx, seen)
				if err != nil {
					return
				}
				seen = hw
				s.mu.Lock()
				s.broadcastLocked()
				s.mu.Unlock()
			}
		}()
	}
}

func (s *Sub) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// partLocked returns the state of partition i, creating it (at the start of the
// log) for a partition added after the subscription.
func (s *Sub) partLocked(i int) *partState {
	for len(s.state) <= i {
		s.state = append(s.state, newPartState(0))
	}
	return s.state[i]
}

func (s *Sub) usable() error {
	if s.closed {
		return ErrClosed
	}
	return s.failure
}

// journalLocked appends events to the journal and applies them.
func (s *Sub) journalLocked(ctx context.Context, evs ...event) error {
	if len(evs) == 0 {
		return nil
	}
	recs := make([]batch.Record, len(evs))
	ts := ms(s.now())
	for i := range evs {
		recs[i] = batch.Record{Timestamp: ts, Value: evs[i].append(nil)}
	}
	// A state change is not abandoned halfway because a caller gave up: the write
	// takes microseconds (the journal acknowledges after the write), and a failure
	// stops the subscription.
	if _, err := s.journal.Append(context.WithoutCancel(ctx), batch.Append(nil, recs)); err != nil {
		s.failure = fmt.Errorf("%w: %w", ErrFailed, err)
		return s.failure
	}
	for i := range evs {
		s.apply(evs[i])
	}
	s.events += len(evs)
	return nil
}

// apply changes the durable state by one event (live or replayed).
func (s *Sub) apply(e event) {
	ps := s.partLocked(e.partition)
	switch e.kind {
	case evDeliver:
		if e.offset >= ps.next {
			ps.next = e.offset + 1
		}
		pd := ps.pend[e.offset]
		if pd == nil {
			pd = &pending{Offset: e.offset, Key: e.key}
			ps.pend[e.offset] = pd
		}
		pd.Deliveries = e.deliveries
		if s.keyed(e.key) && ps.keys[e.key] == nil {
			ps.keys[e.key] = &keyState{head: e.offset}
		}
	case evRetry:
		if pd := ps.pend[e.offset]; pd != nil {
			pd.NotBefore = e.notBefore
			pd.addAttempt(Attempt{At: e.at, Consumer: e.consumer, Error: e.reason}, s.cfg.MaxDeliveries)
		}
	case evDelay:
		if e.offset >= ps.next {
			ps.next = e.offset + 1
		}
		pd := &pending{Offset: e.offset, NotBefore: e.notBefore, Key: e.key}
		ps.pend[e.offset] = pd
		s.enqueueKey(ps, e.partition, pd, false)
	case evHold:
		if e.offset >= ps.next {
			ps.next = e.offset + 1
		}
		pd := &pending{Offset: e.offset, Key: e.key}
		ps.pend[e.offset] = pd
		s.enqueueKey(ps, e.partition, pd, false)
	case evSeek:
		for _, pd := range ps.pend {
			s.releaseLocked(pd)
		}
		clear(ps.pend)
		clear(ps.keys)
		ps.retry, ps.held = nil, 0
		ps.floor, ps.next = e.offset, e.offset
	case evRedrive:
		if ps.pend[e.offset] == nil && e.offset < ps.next {
			pd := &pending{Offset: e.offset, Key: e.key}
			ps.pend[e.offset] = pd
			ps.floor = min(ps.floor, e.offset)
			s.enqueueKey(ps, e.partition, pd, true)
		}
		s.redriven[e.dlqOffset] = true
	case evPurge:
		s.dlqStart = max(s.dlqStart, e.offset)
		for off := range s.redriven {
			if off < s.dlqStart {
				delete(s.redriven, off)
			}
		}
	case evExhaust:
		if pd := ps.pend[e.offset]; pd != nil {
			pd.Deliveries = max(pd.Deliveries, s.cfg.MaxDeliveries)
		}
	case evRevoke:
		if pd := ps.pend[e.offset]; pd != nil && pd.Deliveries > 0 {
			pd.Deliveries--
		}
	case evAck, evDead:
		if pd := ps.pend[e.offset]; pd != nil && s.keyed(pd.Key) {
			if head, ok := ps.settleKey(pd.Key, e.offset); ok {
				ps.retry.push(timeItem{at: head.NotBefore, partition: e.partition, offset: head.Offset})
			}
		}
		delete(ps.pend, e.offset)
		if e.kind == evDead {
			s.deadN++
		}
		ps.advance()
	}
}

// keyed reports whether messages with this key are ordered.
func (s *Sub) keyed(key string) bool { return s.cfg.Mode == ModeKeyOrdered && key != "" }

// enqueueKey places a pending message that is not delivered yet: as its key's
// head (eligible: on the retry heap) when the key has none, else behind the head
// (at the front with first, for a redriven message, which is older than the rest).
func (s *Sub) enqueueKey(ps *partState, part int, pd *pending, first bool) {
	if !s.keyed(pd.Key) {
		ps.retry.push(timeItem{at: pd.NotBefore, partition: part, offset: pd.Offset})
		return
	}
	ks := ps.keys[pd.Key]
	if ks == nil {
		ps.keys[pd.Key] = &keyState{head: pd.Offset}
		ps.retry.push(timeItem{at: pd.NotBefore, partition: part, offset: pd.Offset})
		return
	}
	if first {
		ks.queue = append([]int64{pd.Offset}, ks.queue...)
	} else {
		ks.queue = append(ks.queue, pd.Offset)
	}
	ps.held++
}

// Fetch returns up to limit deliveries for consumer, waiting until at least one is
// available or ctx ends. A consumer never holds more than maxInFlight deliveries.
func (s *Sub) Fetch(ctx context.Context, consumer string, limit, maxInFlight int) ([]Delivery, error) {
	switch {
	case !ValidName(consumer, MaxConsumerNameLen):
		return nil, fieldErr("consumer", "%q must be 1..%d characters of [A-Za-z0-9._-] starting with a letter or digit", consumer, MaxConsumerNameLen)
	case limit < 1 || limit > MaxFetch:
		return nil, fieldErr("limit", "%d outside [1, %d]", limit, MaxFetch)
	case maxInFlight < 1 || maxInFlight > MaxMaxInFlight:
		return nil, fieldErr("MaxInFlight", "%d outside [1, %d]", maxInFlight, MaxMaxInFlight)
	}
	for {
		s.mu.Lock()
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		s.watchLocked()
		now := s.now()
		s.touchLocked(consumer, now)
		s.expireMembersLocked(now)
		err := s.expireLocked(ctx, now)
		var out []Delivery
		if room := min(limit, maxInFlight-s.inflight[consumer]); err == nil && room > 0 {
			out, err = s.dispatchLocked(ctx, consumer, room, now)
		}
		if err == nil && s.events >= compactEvents {
			if cerr := s.compactLocked(); cerr != nil {
				// The journal still holds everything; compaction is tried again later.
				s.log.Warn("subscription: compaction failed", "subscription", s.cfg.Name, "error", cerr)
			}
		}
		wake := s.changed
		due, hasDue := s.nextDueLocked(consumer, min(limit, maxInFlight-s.inflight[consumer]) > 0)
		s.mu.Unlock()
		if err != nil || len(out) > 0 {
			return out, err
		}
		var timer *time.Timer
		var tc <-chan time.Time
		wait := time.Duration(-1)
		if hasDue {
			wait = max(time.UnixMilli(due).Sub(now), time.Millisecond)
		}
		if s.cfg.Mode == ModePartitioned {
			// A waiting member fetches again within its session to stay in the group.
			if hb := s.cfg.Session / 3; wait < 0 || hb < wait {
				wait = hb
			}
		}
		if wait >= 0 {
			timer = time.NewTimer(wait)
			tc = timer.C
		}
		select {
		case <-wake:
		case <-tc:
		case <-ctx.Done():
		case <-s.stop:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// nextDueLocked is the earliest time a retry becomes due or a lease expires.
// Retries count only when consumer could take them (it has room and, in
// partitioned mode, owns the partition), or it would wake in a loop for them.
func (s *Sub) nextDueLocked(consumer string, room bool) (int64, bool) {
	due, ok := s.leases.peek()
	for i, ps := range s.state {
		if !room || s.cfg.Mode == ModePartitioned && s.owner(i) != consumer {
			continue
		}
		if r, rok := ps.retry.peek(); rok && (!ok || r.at < due.at) {
			due, ok = r, true
		}
	}
	if t, mok := s.nextMemberExpiry(); mok && (!ok || t < due.at) {
		due, ok = timeItem{at: t}, true
	}
	return due.at, ok
}

// expireLocked fails every delivery whose lease ran out.
func (s *Sub) expireLocked(ctx context.Context, now time.Time) error {
	for {
		it, ok := s.leases.peek()
		if !ok || it.at > ms(now) {
			return nil
		}
		s.leases.pop()
		ps := s.partLocked(it.partition)
		pd := ps.pend[it.offset]
		if pd == nil || pd.lease != it.lease || pd.deadline != it.at {
			continue // settled or extended
		}
		if err := s.failLocked(ctx, it.partition, pd, now, "lease expired", nil); err != nil {
			return err
		}
	}
}

// release ends pd's lease.
func (s *Sub) releaseLocked(pd *pending) string {
	c := pd.consumer
	if pd.lease != 0 {
		if s.inflight[c]--; s.inflight[c] <= 0 {
			delete(s.inflight, c)
		}
	}
	pd.lease, pd.consumer, pd.deadline = 0, "", 0
	return c
}

// failLocked records a failed delivery of pd: it is retried after delay (or the
// backoff), or dead-lettered once it has had MaxDeliveries.
func (s *Sub) failLocked(ctx context.Context, part int, pd *pending, now time.Time, reason string, delay *time.Duration) error {
	consumer := s.releaseLocked(pd)
	if s.cfg.Mode == ModePartitioned {
		// Order within the partition: what was handed out after it comes again after it.
		s.revokeLocked(part, pd.Offset+1)
	}
	if pd.Deliveries >= s.cfg.MaxDeliveries {
		pd.addAttempt(Attempt{At: ms(now), Consumer: consumer, Error: reason}, s.cfg.MaxDeliveries)
		return s.deadLocked(ctx, part, pd, fmt.Sprintf("delivery limit %d reached", s.cfg.MaxDeliveries))
	}
	d := s.backoff(pd.Deliveries)
	if delay != nil {
		d = *delay
	}
	e := event{kind: evRetry, partition: part, offset: pd.Offset, notBefore: ms(now.Add(d)), at: ms(now), consumer: consumer, reason: reason}
	if err := s.journalLocked(ctx, e); err != nil {
		return err
	}
	s.partLocked(part).retry.push(timeItem{at: pd.NotBefore, partition: part, offset: pd.Offset})
	s.broadcastLocked()
	return nil
}

// backoff is the retry delay after the n-th failed delivery: exponential, capped,
// with jitter in the upper half.
func (s *Sub) backoff(n int) time.Duration {
	d := s.cfg.BackoffInitial
	for i := 1; i < n && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// deadLocked hands pd to the dead-letter callback and settles it. If that fails,
// the message stays pending and is tried again after BackoffMax.
func (s *Sub) deadLocked(ctx context.Context, part int, pd *pending, reason string) error {
	s.releaseLocked(pd)
	m := DeadMessage{Partition: part, Offset: pd.Offset, Deliveries: pd.Deliveries, Attempts: pd.Attempts, Reason: reason}
	rec, err := s.readOne(part, pd.Offset)
	if err == nil {
		m.Timestamp, m.Key, m.Value, m.Headers = rec.Timestamp, rec.Key, rec.Value, rec.Headers
		// Not bound to the caller: a publish cancelled halfway could be stored
		// and then made again.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
		err = s.dead(dctx, m)
		cancel()
	} else if errors.Is(err, logstore.ErrOutOfRange) {
		err = nil // removed by retention: nothing left to keep
	}
	if err != nil {
		s.log.Warn("subscription: dead-lettering failed; will try again", "subscription", s.cfg.Name,
			"partition", part, "offset", pd.Offset, "error", err)
		if pd.Deliveries < s.cfg.MaxDeliveries {
			// A terminated message must not go back to consumers meanwhile.
			if err := s.journalLocked(ctx, event{kind: evExhaust, partition: part, offset: pd.Offset}); err != nil {
				return err
			}
		}
		s.retryLaterLocked(part, pd, s.now())
		return nil
	}
	if err := s.journalLocked(ctx, event{kind: evDead, partition: part, offset: pd.Offset}); err != nil {
		return err
	}
	s.broadcastLocked()
	return nil
}

// readOne reads the record at off of partition part.
func (s *Sub) readOne(part int, off int64) (batch.Record, error) {
	parts := s.parts()
	if part >= len(parts) {
		return batch.Record{}, fmt.Errorf("subscription: partition %d gone", part)
	}
	data, _, err := parts[part].Read(off, 1, nil)
	if err != nil {
		return batch.Record{}, err
	}
	var found batch.Record
	ok := false
	err = batch.Each(data, func(r *batch.Record) bool {
		if r.Offset == off {
			found, ok = *r, true
			found.Headers = append([]batch.RecordHeader(nil), r.Headers...)
			return false
		}
		return true
	})
	if err == nil && !ok {
		err = fmt.Errorf("%w: offset %d", logstore.ErrOutOfRange, off)
	}
	return found, err
}
