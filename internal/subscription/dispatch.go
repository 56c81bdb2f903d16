package subscription

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
)

// fetchBytes is how much dispatch reads from a partition at once.
const fetchBytes = 256 << 10

// maxReadCache bounds the batches a partition's read cache keeps (the read is
// fetchBytes and the batch that holds its start, which may be larger).
const maxReadCache = 4 << 20

// readFrom returns verified batches that hold off: from the partition's read
// cache when it holds off, else read from the log (and cached).
func (ps *partState) readFrom(log logstore.Log, off int64) ([]byte, error) {
	if c := &ps.cache; len(c.data) > 0 && off >= c.from && off < c.next && off >= log.StartOffset() {
		return c.data, nil // EachFrom passes over what is before off
	}
	data, next, err := log.Read(off, fetchBytes, nil)
	if err != nil {
		return nil, err
	}
	ps.cache = readCache{}
	if len(data) <= maxReadCache && next > off {
		ps.cache = readCache{data: data, from: off, next: next}
	}
	return data, nil
}

// readPending returns the record at off, a pending message's (behind the
// cursor): from the partition's pending cache when it holds off, else read
// from the log, and cached. The record aliases the cache, whose data is never
// written again.
func (ps *partState) readPending(log logstore.Log, off int64) (batch.Record, error) {
	c := &ps.pendCache
	if len(c.data) == 0 || off < c.from || off >= c.next || off < log.StartOffset() {
		data, next, err := log.Read(off, 1, nil)
		if err != nil {
			return batch.Record{}, err
		}
		ps.pendCache = readCache{}
		if h, err := batch.ParseHeader(data); err == nil && len(data) <= maxReadCache && next > off {
			ps.pendCache = readCache{data: data, from: h.BaseOffset, next: next}
		}
		c = &readCache{data: data, from: off, next: next}
	}
	var found batch.Record
	ok := false
	err := batch.EachFrom(c.data, off, func(r *batch.Record) bool {
		if r.Offset == off {
			found, ok = *r, true
			found.Headers = append([]batch.RecordHeader(nil), r.Headers...)
		}
		return false
	})
	if err == nil && !ok {
		err = fmt.Errorf("%w: offset %d", logstore.ErrOutOfRange, off)
	}
	return found, err
}

// dispatchLocked hands out up to room deliveries: due retries first, then new
// messages, partition by partition in turn. The deliveries are journaled before
// they are returned.
func (s *Sub) dispatchLocked(ctx context.Context, consumer string, room int, now time.Time) ([]Delivery, error) {
	parts := s.parts()
	var out []Delivery
	var evs []event
	// Cursors move as messages are read, before they are journaled: on an error
	// they go back, so that nothing read but not journaled counts as done.
	saved := map[int]int64{}
	fail := func(err error) ([]Delivery, error) {
		for i, next := range saved {
			s.state[i].next = next
		}
		return nil, err
	}
	for n := 0; n < len(parts) && len(out) < room && len(evs) < maxEventsPerDispatch; n++ {
		i := (s.rr + n) % len(parts)
		ps := s.partLocked(i)
		log := parts[i]
		if start := log.StartOffset(); ps.floor < start {
			s.dropBelowLocked(i, ps, start)
		}
		if s.cfg.Mode == ModePartitioned && s.owner(i) != consumer {
			continue
		}
		saved[i] = ps.next
		var err error
		if s.cfg.Mode == ModePartitioned {
			out, evs, err = s.dispatchOrderedLocked(ctx, i, ps, log, room, now, out, evs)
		} else {
			out, evs, err = s.dispatchDueLocked(ctx, i, ps, log, room, now, out, evs)
		}
		if err == errHoldBack {
			continue
		}
		if err != nil {
			return fail(err)
		}
		if out, evs, err = s.readNewLocked(i, ps, log, room, now, out, evs); err != nil {
			return fail(err)
		}
		if len(ps.pend) == 0 {
			ps.pendCache = readCache{}
		}
	}
	s.rr++
	if s.cfg.Delivery == AtMostOnce {
		evs = settleOnDelivery(evs)
	}
	if err := s.journalLocked(ctx, evs...); err != nil {
		return fail(err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	if s.cfg.Delivery == AtMostOnce {
		// The consumer may act on a delivery as soon as it has it; a journal that a
		// power failure could take back would hand the message out again.
		if err := s.journal.Sync(); err != nil {
			s.failure = fmt.Errorf("%w: %w", ErrFailed, err)
			return nil, s.failure
		}
		return out, nil // settled: no lease, nothing in flight
	}
	deadline := now.Add(s.cfg.Lease)
	for k := range out {
		d := &out[k]
		s.leaseSeq++
		pd := s.state[d.Partition].pend[d.Offset]
		pd.lease, pd.consumer, pd.deadline = s.leaseSeq, consumer, ms(deadline)
		d.Lease, d.Deadline = s.leaseSeq, time.UnixMilli(ms(deadline))
		s.leases.push(timeItem{at: pd.deadline, partition: d.Partition, offset: d.Offset, lease: d.Lease})
	}
	s.inflight[consumer] += len(out)
	s.compactLeasesLocked()
	return out, nil
}

// settleOnDelivery returns evs followed by an ack of every delivery in them: under
// AtMostOnce a delivery is settled as it is handed out, and the two go into the
// journal in one append, so that no replay finds the message in flight. The acks
// come after every other event, not each after its delivery: an ack moves the
// floor over every offset below the cursor that has no pending entry, and the
// cursor already stands past the delays and holds of this dispatch, which have
// their entries only once applied.
func settleOnDelivery(evs []event) []event {
	out := slices.Grow(evs, len(evs))
	for _, e := range evs {
		if e.kind == evDeliver {
			out = append(out, event{kind: evAck, partition: e.partition, offset: e.offset})
		}
	}
	return out
}

// compactLeasesLocked rebuilds the lease heap once settled and extended leases,
// which stay in it until their old deadline, outnumber the live ones: its size
// stays proportional to what is in flight, not to throughput times Lease.
func (s *Sub) compactLeasesLocked() {
	live := 0
	for _, n := range s.inflight {
		live += n
	}
	if len(s.leases) <= 4*live+1024 {
		return
	}
	s.leases = s.leases[:0]
	for i, ps := range s.state {
		for _, pd := range ps.pend {
			if pd.lease != 0 {
				s.leases = append(s.leases, timeItem{at: pd.deadline, partition: i, offset: pd.Offset, lease: pd.lease})
			}
		}
	}
	heap.Init(&s.leases)
}

// maxEventsPerDispatch bounds the journal events one Fetch may write (deliveries,
// and the delays and holds it finds while reading), so that a journal batch stays
// far below the batch limits.
const maxEventsPerDispatch = 10000

// dispatchDueLocked hands out the due retries of a partition (queue and
// key_ordered modes: the retry heap holds only eligible messages).
func (s *Sub) dispatchDueLocked(ctx context.Context, i int, ps *partState, log logstore.Log, room int, now time.Time, out []Delivery, evs []event) ([]Delivery, []event, error) {
	for len(out) < room {
		it, ok := ps.retry.peek()
		if !ok || it.at > ms(now) {
			break
		}
		ps.retry.pop()
		pd := ps.pend[it.offset]
		if pd == nil || pd.lease != 0 || pd.NotBefore != it.at {
			continue // settled, in flight, or rescheduled
		}
		var err error
		if out, evs, err = s.serveLocked(ctx, i, ps, log, pd, now, out, evs); err != nil {
			return out, evs, err
		}
	}
	return out, evs, nil
}

// serveLocked delivers a pending message that is due: or dead-letters it when it
// has no deliveries left, or forgets it when retention removed it. On a read error
// it is put back for a retry.
func (s *Sub) serveLocked(ctx context.Context, i int, ps *partState, log logstore.Log, pd *pending, now time.Time, out []Delivery, evs []event) ([]Delivery, []event, error) {
	if pd.Deliveries >= s.cfg.MaxDeliveries {
		// Out of deliveries: its dead-lettering failed before, it was terminated,
		// or a crash came between its last delivery and its outcome.
		return out, evs, s.deadLocked(ctx, i, pd, fmt.Sprintf("delivery limit %d reached", s.cfg.MaxDeliveries))
	}
	rec, err := ps.readPending(log, pd.Offset)
	if errors.Is(err, logstore.ErrOutOfRange) {
		s.dropBelowLocked(i, ps, log.StartOffset())
		return out, evs, nil
	}
	if err != nil {
		s.retryLaterLocked(i, pd, now)
		return out, evs, err
	}
	if pd.Deliveries > 0 {
		s.redeliveries++
	}
	out = append(out, delivery(i, &rec, pd.Deliveries+1))
	evs = append(evs, event{kind: evDeliver, partition: i, offset: pd.Offset, deliveries: pd.Deliveries + 1, at: ms(now)})
	return out, evs, nil
}

// retryLaterLocked puts a pending message back on the retry heap, BackoffMax from
// now (in memory only: a restart makes it eligible again at once).
func (s *Sub) retryLaterLocked(i int, pd *pending, now time.Time) {
	pd.NotBefore = ms(now.Add(s.cfg.BackoffMax))
	s.partLocked(i).retry.push(timeItem{at: pd.NotBefore, partition: i, offset: pd.Offset})
}

// DeliverAtHeader holds the time (decimal unix milliseconds) before which a message
// is not delivered.
const DeliverAtHeader = "sluice-deliver-at"

// deliverAt returns a record's deliver-at time, if it has a valid one.
func deliverAt(r *batch.Record) (int64, bool) {
	for _, h := range r.Headers {
		if h.Key == DeliverAtHeader {
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// Seek moves the subscription in partition part to offset off (clamped to what
// the log holds): everything before is done, everything from it on is delivered
// anew. Deliveries in flight in that partition lose their leases.
func (s *Sub) Seek(ctx context.Context, part int, off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log, err := s.partitionLocked(part)
	if err != nil {
		return err
	}
	off = min(max(off, log.StartOffset()), log.HighWatermark())
	if err := s.journalLocked(ctx, event{kind: evSeek, partition: part, offset: off}); err != nil {
		return err
	}
	s.broadcastLocked()
	return nil
}

func delivery(part int, r *batch.Record, deliveries int) Delivery {
	d := Delivery{Partition: part, Offset: r.Offset, Deliveries: deliveries, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		d.Headers = append([]batch.RecordHeader(nil), r.Headers...)
	}
	return d
}

// dropBelowLocked forgets messages that retention removed from the log.
func (s *Sub) dropBelowLocked(part int, ps *partState, start int64) {
	dropped := 0
	for off, pd := range ps.pend {
		if off < start {
			s.releaseLocked(pd)
			if s.keyed(pd.Key) {
				if head, ok := ps.settleKey(pd.Key, off); ok {
					ps.retry.push(timeItem{at: head.NotBefore, partition: part, offset: head.Offset})
				}
			}
			delete(ps.pend, off)
			dropped++
		}
	}
	if ps.floor < start {
		ps.floor = start
	}
	if ps.next < start {
		ps.next = start
	}
	ps.advance()
	if dropped > 0 {
		s.log.Warn("subscription: messages removed by retention before they were settled",
			"subscription", s.cfg.Name, "partition", part, "messages", dropped)
	}
}

// heldLocked returns the pending message whose lease is lease, or ErrStaleLease.
func (s *Sub) heldLocked(part int, off int64, lease uint64) (*pending, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if part < 0 || part >= len(s.state) {
		return nil, fmt.Errorf("%w: partition %d", ErrStaleLease, part)
	}
	if s.cfg.Delivery == AtMostOnce {
		return nil, fmt.Errorf("%w: partition %d offset %d: under at_most_once a delivery is settled when it is fetched", ErrStaleLease, part, off)
	}
	pd := s.state[part].pend[off]
	if pd == nil || pd.lease == 0 || pd.lease != lease {
		return nil, fmt.Errorf("%w: lease %d on partition %d offset %d (expired and redelivered, or already settled)", ErrStaleLease, lease, part, off)
	}
	if pd.deadline <= ms(s.now()) {
		return nil, fmt.Errorf("%w: lease %d on partition %d offset %d expired", ErrStaleLease, lease, part, off)
	}
	if _, member := s.grp.members[pd.consumer]; member {
		s.grp.members[pd.consumer] = ms(s.now()) // settling shows a member is alive
	}
	return pd, nil
}

// Ack settles a delivery: the message is done for this subscription.
func (s *Sub) Ack(ctx context.Context, part int, off int64, lease uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pd, err := s.heldLocked(part, off, lease)
	if err != nil {
		return err
	}
	if err := s.journalLocked(ctx, event{kind: evAck, partition: part, offset: off}); err != nil {
		return err
	}
	s.releaseLocked(pd)
	s.broadcastLocked()
	return nil
}

// Ref names a delivery to settle.
type Ref struct {
	Partition int
	Offset    int64
	Lease     uint64
}

// AckMany settles several deliveries as done with one journal write; errs[i]
// is refs[i]'s answer, as Ack would have given it.
func (s *Sub) AckMany(ctx context.Context, refs []Ref) []error {
	errs := make([]error, len(refs))
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := make([]event, 0, len(refs))
	pds := make([]*pending, 0, len(refs))
	idx := make([]int, 0, len(refs))
	seen := make(map[*pending]bool, len(refs))
	for i, r := range refs {
		pd, err := s.heldLocked(r.Partition, r.Offset, r.Lease)
		if err == nil && seen[pd] {
			err = fmt.Errorf("%w: lease %d on partition %d offset %d (already settled)", ErrStaleLease, r.Lease, r.Partition, r.Offset)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		seen[pd] = true
		evs = append(evs, event{kind: evAck, partition: r.Partition, offset: r.Offset})
		pds = append(pds, pd)
		idx = append(idx, i)
	}
	if err := s.journalLocked(ctx, evs...); err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return errs
	}
	for _, pd := range pds {
		s.releaseLocked(pd)
	}
	if len(pds) > 0 {
		s.broadcastLocked()
	}
	return errs
}

// Nack reports a failed delivery: the message is delivered again after delay (or
// the backoff when delay is nil), or dead-lettered if it has had MaxDeliveries.
func (s *Sub) Nack(ctx context.Context, part int, off int64, lease uint64, delay *time.Duration, reason string) error {
	if delay != nil && (*delay < 0 || *delay > MaxRetryDelay) {
		return fieldErr("delay", "%v outside [0, %v]", *delay, MaxRetryDelay)
	}
	if len(reason) > MaxReasonBytes {
		return fieldErr("reason", "%d bytes, limit %d", len(reason), MaxReasonBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pd, err := s.heldLocked(part, off, lease)
	if err != nil {
		return err
	}
	return s.failLocked(ctx, part, pd, s.now(), reason, delay)
}

// Term gives up on a delivery at once: the message goes to the dead letters.
func (s *Sub) Term(ctx context.Context, part int, off int64, lease uint64, reason string) error {
	if len(reason) > MaxReasonBytes {
		return fieldErr("reason", "%d bytes, limit %d", len(reason), MaxReasonBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pd, err := s.heldLocked(part, off, lease)
	if err != nil {
		return err
	}
	pd.addAttempt(Attempt{At: ms(s.now()), Consumer: pd.consumer, Error: reason}, s.cfg.MaxDeliveries)
	return s.deadLocked(ctx, part, pd, "terminated by consumer")
}

// Extend moves a delivery's lease deadline to now + d and returns it.
func (s *Sub) Extend(part int, off int64, lease uint64, d time.Duration) (time.Time, error) {
	if d < MinLease || d > MaxLease {
		return time.Time{}, fieldErr("extend", "%v outside [%v, %v]", d, MinLease, MaxLease)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pd, err := s.heldLocked(part, off, lease)
	if err != nil {
		return time.Time{}, err
	}
	pd.deadline = ms(s.now().Add(d))
	s.leases.push(timeItem{at: pd.deadline, partition: part, offset: off, lease: lease})
	s.compactLeasesLocked()
	return time.UnixMilli(pd.deadline), nil
}

// ErrSourceGone is returned by Redrive when retention has removed the message.
var ErrSourceGone = errors.New("subscription: message no longer stored")

// Redrive makes a dead-lettered message pending again, with a fresh delivery count.
// dlqOffset is its dead letter's offset, remembered so that it is redriven once.
func (s *Sub) Redrive(ctx context.Context, part int, off, dlqOffset int64, key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log, err := s.partitionLocked(part)
	if err != nil {
		return err
	}
	if off < log.StartOffset() {
		return fmt.Errorf("%w: partition %d offset %d", ErrSourceGone, part, off)
	}
	ps := s.partLocked(part)
	if off >= ps.next || s.redriven[dlqOffset] || dlqOffset < s.dlqStart {
		return nil // never delivered, or already redriven or purged
	}
	var k string
	if s.cfg.Mode == ModeKeyOrdered {
		k = string(key)
	}
	if err := s.journalLocked(ctx, event{kind: evRedrive, partition: part, offset: off, dlqOffset: dlqOffset, key: k}); err != nil {
		return err
	}
	s.broadcastLocked()
	return nil
}

// DeadLetterState reports whether the dead letter at dlqOffset was redriven and
// where the dead letters not yet purged start.
func (s *Sub) DeadLetterState(dlqOffset int64) (redriven bool, start int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redriven[dlqOffset], s.dlqStart
}

// PurgeDeadLetters discards this subscription's dead letters before upTo.
func (s *Sub) PurgeDeadLetters(ctx context.Context, upTo int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if upTo <= s.dlqStart {
		return nil
	}
	return s.journalLocked(ctx, event{kind: evPurge, offset: upTo})
}

// readNewLocked delivers (or delays, or holds) messages from the partition's
// cursor on, up to room deliveries in out.
func (s *Sub) readNewLocked(i int, ps *partState, log logstore.Log, room int, now time.Time, out []Delivery, evs []event) ([]Delivery, []event, error) {
	busy := map[string]bool{} // keys that got a head in this round (key_ordered)
	holds := 0
	stop := false
	added := 0 // pending entries this read creates: delays and holds
	for !stop && len(out) < room && ps.next < log.HighWatermark() && ps.held+holds < MaxHeld && len(ps.pend)+added < MaxPending && len(evs) < maxEventsPerDispatch {
		data, err := ps.readFrom(log, ps.next)
		if err != nil {
			return out, evs, fmt.Errorf("subscription %s: read partition %d at %d: %w", s.cfg.Name, i, ps.next, err)
		}
		next := ps.next
		err = batch.EachFrom(data, next, func(r *batch.Record) bool {
			next = r.Offset + 1
			var key string
			if s.cfg.Mode == ModeKeyOrdered {
				key = string(r.Key)
			}
			if at, ok := deliverAt(r); ok && at > ms(now) {
				evs = append(evs, event{kind: evDelay, partition: i, offset: r.Offset, notBefore: at, key: key})
				busy[key] = true
				added++
				// In partitioned mode a delayed message holds back the rest.
				stop = s.cfg.Mode == ModePartitioned
				return !stop
			}
			if s.keyed(key) && (busy[key] || ps.keys[key] != nil) {
				evs = append(evs, event{kind: evHold, partition: i, offset: r.Offset, key: key})
				holds++
				added++
				return ps.held+holds < MaxHeld && len(ps.pend)+added < MaxPending && len(evs) < maxEventsPerDispatch
			}
			// Under AtMostOnce the delivery is settled with it, so the key's next
			// message may follow it in this same round.
			busy[key] = s.cfg.Delivery != AtMostOnce
			out = append(out, delivery(i, r, 1))
			evs = append(evs, event{kind: evDeliver, partition: i, offset: r.Offset, deliveries: 1, at: ms(now), key: key})
			return len(out) < room
		})
		if err != nil {
			return out, evs, fmt.Errorf("subscription %s: read partition %d at %d: %w", s.cfg.Name, i, ps.next, err)
		}
		if next == ps.next {
			break
		}
		ps.next = next // journalLocked re-applies this; set now so the loop moves on
	}
	if ps.next >= ps.cache.next {
		ps.cache = readCache{} // passed: free it
	}
	return out, evs, nil
}

// dispatchOrderedLocked serves one partition in partitioned mode: pending messages
// strictly in offset order (one waiting for its retry holds back everything after
// it), then new ones. Several may be in flight at once, in order.
func (s *Sub) dispatchOrderedLocked(ctx context.Context, i int, ps *partState, log logstore.Log, room int, now time.Time, out []Delivery, evs []event) ([]Delivery, []event, error) {
	for { // the retry heap only times wake-ups here
		it, ok := ps.retry.peek()
		if !ok || it.at > ms(now) {
			break
		}
		ps.retry.pop()
	}
	offs := make([]int64, 0, len(ps.pend))
	for off := range ps.pend {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		if len(out) >= room {
			return out, evs, errHoldBack
		}
		pd := ps.pend[off]
		if pd == nil || pd.lease != 0 {
			continue
		}
		if pd.NotBefore > ms(now) {
			return out, evs, errHoldBack // everything after it waits
		}
		var err error
		if out, evs, err = s.serveLocked(ctx, i, ps, log, pd, now, out, evs); err != nil {
			return out, evs, err
		}
		if ps.pend[off] != nil && ps.pend[off].NotBefore > ms(now) {
			return out, evs, errHoldBack // its dead-lettering failed: it holds the rest back
		}
	}
	return out, evs, nil
}

// errHoldBack tells dispatch that a partition may not deliver new messages yet.
var errHoldBack = errors.New("held back")

// partitionLocked checks that the subscription is usable and part exists, and
// returns its log.
func (s *Sub) partitionLocked(part int) (logstore.Log, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	parts := s.parts()
	if part < 0 || part >= len(parts) {
		return nil, fieldErr("partition", "%d outside [0, %d)", part, len(parts))
	}
	return parts[part], nil
}
