package sluice

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/sluicemq/sluice/internal/batch"
)

// encoder is reusable publish scratch space.
type encoder struct {
	recs []batch.Record
	hdrs []Header
	buf  []byte
	bufs [][]byte // {buf}: Append's argument without an allocation per call
}

var encoderPool = sync.Pool{New: func() any { return new(encoder) }}

// partitionFor picks the partition of m: explicit, by key hash, by idempotency
// key hash (so that a retry lands where the original did), or round-robin.
func (s *stream) partitionFor(m *Message, field string) (int, error) {
	n := len(s.parts)
	if m.Partition != nil {
		if p := *m.Partition; p < 0 || p >= n {
			return 0, invalid(field+".Partition", "%d outside [0, %d) for stream %q", p, n, s.cfg.Name)
		}
		return *m.Partition, nil
	}
	if len(m.Key) > 0 {
		return int(xxhash.Sum64(m.Key) % uint64(n)), nil
	}
	if m.IdempotencyKey != "" {
		return int(keyHash(m.IdempotencyKey) % uint64(n)), nil
	}
	return int(s.rr.Add(1) % uint64(n)), nil
}

// checkKeyTime checks that a message with an idempotency key is timed within the
// dedupe window of now: its key is remembered for the window from its time.
// Lock held: s.mu (read).
func (s *stream) checkKeyTime(field string, m *Message, now time.Time) error {
	if m.IdempotencyKey == "" || m.Time.IsZero() {
		return nil
	}
	if d := m.Time.Sub(now).Abs(); d > s.cfg.DedupeWindow {
		return invalid(field+".Time", "%v is %v from now, beyond the stream's DedupeWindow=%v: a message with an IdempotencyKey must be timed within it", m.Time, d, s.cfg.DedupeWindow)
	}
	return nil
}

// msgTime is the time a message is stored with, unix ms.
func msgTime(m *Message, now time.Time) int64 {
	if m.Time.IsZero() {
		return now.UnixMilli()
	}
	return m.Time.UnixMilli()
}

// toRecord returns m as a record to encode; its headers may be built in scratch.
func toRecord(m *Message, now time.Time, scratch []Header) batch.Record {
	return batch.Record{Timestamp: msgTime(m, now), Key: m.Key, Value: m.Body, Headers: m.headers(scratch)}
}

// Publish stores msg and returns its partition and offset once it is durable under
// the stream's sync policy. If ctx ends first the message may or may not be stored.
// A full partition fails the publish with a *StreamFullError, at once or after
// waiting, as the stream's Overflow says; nothing is stored then.
func (b *Broker) Publish(ctx context.Context, name string, msg Message) (Position, error) {
	return b.publish(ctx, name, msg, true)
}

// publish is Publish; the broker's own messages (dead letters, which carry a
// message that was within its own stream's limits plus their history) skip the
// size and header-count limits, and never wait for room.
func (b *Broker) publish(ctx context.Context, name string, msg Message, limits bool) (Position, error) {
	var w blockWait
	for {
		pos, err := b.publishOnce(ctx, name, &msg, limits)
		if err == nil {
			w.done()
			return pos, nil
		}
		if !w.wait(ctx, err, !limits) {
			return pos, w.result(ctx, err)
		}
	}
}

func (b *Broker) publishOnce(ctx context.Context, name string, msg *Message, limits bool) (pos Position, err error) {
	s, err := b.acquire(name)
	if err != nil {
		return Position{}, err
	}
	defer s.mu.RUnlock()
	now := b.opts.now()
	if limits {
		if err := msg.validate("Message", s.cfg.MaxMessageBytes, now); err != nil {
			return Position{}, err
		}
		if err := s.checkKeyTime("Message", msg, now); err != nil {
			return Position{}, err
		}
	}
	part, err := s.partitionFor(msg, "Message")
	if err != nil {
		return Position{}, err
	}
	e := encoderPool.Get().(*encoder)
	e.recs = append(e.recs[:0], toRecord(msg, now, e.hdrs))
	ts := e.recs[0].Timestamp
	e.buf = batch.Append(e.buf[:0], e.recs)
	if h := e.recs[0].Headers; len(h) > 0 && len(msg.Headers) < len(h) {
		e.hdrs = h // the scratch grew
	}
	clear(e.recs)
	clear(e.hdrs[:cap(e.hdrs)])
	e.bufs = append(e.bufs[:0], e.buf)
	size := int64(len(e.buf))
	var h uint64
	keyed := msg.IdempotencyKey != ""
	if keyed {
		// A repeat is answered before room is looked for: a full stream still
		// answers duplicates.
		h = keyHash(msg.IdempotencyKey)
		if pos, dup, _, _, err := s.claimKey(ctx, msg.IdempotencyKey, h, part, now, nil, false); err != nil || dup {
			encoderPool.Put(e)
			if dup {
				s.dedupe.duplicate()
			}
			return pos, err
		}
	}
	if err := s.reserve(ctx, part, 1, size, !limits, now, "Message"); err != nil {
		encoderPool.Put(e)
		return Position{}, s.full(err)
	}
	var own claim
	var owns bool
	actx := ctx
	if keyed {
		// Claimed once there is room, so that a refused publish leaves nothing in
		// the index.
		var dup bool
		if pos, dup, own, owns, err = s.claimKey(ctx, msg.IdempotencyKey, h, part, now, nil, true); err != nil || dup {
			s.release(part, 1, size)
			encoderPool.Put(e)
			if dup {
				s.dedupe.duplicate()
			}
			return pos, err
		}
		// The claim is finished with the append's real outcome: a publish that
		// gave up after the writer took its message would forget a stored key.
		actx = uncancellable
	}
	off, err := s.parts[part].Append(actx, e.bufs...)
	s.release(part, 1, size)
	if err == nil {
		s.ctr.published.Add(1)
		s.ctr.publishedBytes.Add(size)
	}
	if owns {
		s.dedupe.finish(h, own, err == nil, makeRef(part, off), ts)
	}
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil && errors.Is(err, ctxErr) {
		// The partition may still hold e.buf; do not reuse it.
		return Position{}, err
	}
	e.bufs[0] = nil
	encoderPool.Put(e)
	if err != nil {
		return Position{}, fmt.Errorf("sluice: publish to %s/%d: %w", name, part, err)
	}
	return Position{Partition: part, Offset: off}, nil
}

// uncancellable is the context of an append whose outcome the publish must learn
// (the log reads no values from it).
var uncancellable = context.Background()

// claimKey looks an idempotency key up. dup: the key was accepted within the
// window, at pos. owns (only with take): the caller publishes the key and must
// finish the claim own.
// Neither: the key's hash is claimed by another key in owned (the caller's own
// batch), and the message is published without being indexed. A publish of the
// same key in flight is waited for. Lock held: s.mu (read).
func (s *stream) claimKey(ctx context.Context, key string, h uint64, part int, now time.Time, owned map[uint64]bool, take bool) (pos Position, dup bool, own claim, owns bool, err error) {
	for {
		if owned[h] {
			return Position{}, false, claim{}, false, nil
		}
		ref, found, done, own, owns := s.dedupe.lookup(h, part, s.parts[part].HighWatermark(), now, take)
		switch {
		case owns:
			return Position{}, false, own, true, nil
		case done != nil:
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return Position{}, false, claim{}, false, ctx.Err()
			}
		case !found:
			return Position{}, false, claim{}, false, nil
		}
		p, off := splitRef(ref)
		stored, ok, err := storedKey(s.parts[p], off)
		if err != nil {
			return Position{}, false, claim{}, false, fmt.Errorf("sluice: confirm idempotency key in %s/%d: %w", s.cfg.Name, p, err)
		}
		if ok && stored != key {
			// Another key's message: a hash collision (the newer key takes the
			// index entry), or an entry the log no longer backs.
			s.dedupe.forget(h, ref)
			continue
		}
		// The original, or one that retention removed within the window.
		return Position{Partition: p, Offset: off, Duplicate: true}, true, claim{}, false, nil
	}
}

// full prepares a *StreamFullError for the caller's blockWait: what the stream's
// policy says about waiting, read under the stream's lock. Lock held: s.mu (read).
func (s *stream) full(err error) error {
	var fe *StreamFullError
	if errors.As(err, &fe) {
		fe.s, fe.block, fe.timeout = s, s.cfg.Overflow == OverflowBlock, s.cfg.BlockTimeout
	}
	return err
}

// blockWait is a publish's wait for room under OverflowBlock.
type blockWait struct {
	s     *stream
	start time.Time
	poll  time.Duration
}

// wait waits for room if err is a *StreamFullError of a blocking stream and its
// timeout has not passed, and reports whether to try again.
func (w *blockWait) wait(ctx context.Context, err error, internal bool) bool {
	var fe *StreamFullError
	if !errors.As(err, &fe) || fe.s == nil {
		return false
	}
	s := fe.s
	if !fe.block || internal {
		s.ctr.rejected.Add(1)
		return false
	}
	if w.s == nil {
		w.s, w.start, w.poll = s, time.Now(), blockPollMin
		s.ctr.blocked.Add(1)
	}
	if s.waitRoom(ctx, w.start.Add(fe.timeout), w.poll) {
		w.poll = min(2*w.poll, blockPollMax)
		return true
	}
	fe.Waited = time.Since(w.start)
	w.done()
	s.ctr.rejected.Add(1)
	return false
}

// done counts the time waited.
func (w *blockWait) done() {
	if w.s != nil {
		w.s.ctr.blockedNanos.Add(int64(time.Since(w.start)))
		w.s = nil
	}
}

// result is the error a publish returns: when ctx ended while waiting for room,
// ctx's error joined with the refusal (nothing was stored).
func (w *blockWait) result(ctx context.Context, err error) error {
	if errors.Is(err, ErrStreamFull) && ctx.Err() != nil {
		return fmt.Errorf("%w while waiting for room: %w", ctx.Err(), err)
	}
	return err
}

// PublishBatch stores msgs. The messages of each partition form one batch that is
// stored atomically, in order; partitions are written in parallel. Room is made
// for the whole batch before anything is written: a full partition fails it all
// with a *StreamFullError (after waiting, under OverflowBlock). On another error
// the positions of the messages that were stored are still returned; the others
// have Offset -1. A message whose idempotency key was accepted before (or earlier
// in the batch) gets the original's position with Duplicate set.
func (b *Broker) PublishBatch(ctx context.Context, name string, msgs []Message) ([]Position, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if len(msgs) > MaxBatchMessages {
		return nil, invalid("msgs", "%d messages, limit MaxBatchMessages=%d", len(msgs), MaxBatchMessages)
	}
	var w blockWait
	for {
		pos, err := b.publishBatchOnce(ctx, name, msgs)
		if err == errBatchRaced {
			continue
		}
		if err == nil {
			w.done()
			return pos, nil
		}
		if !w.wait(ctx, err, false) {
			return pos, w.result(ctx, err)
		}
	}
}

// batchClaim is an idempotency key a batch owns.
type batchClaim struct {
	c  claim
	h  uint64
	ts int64
	i  int // the message
}

func (b *Broker) publishBatchOnce(ctx context.Context, name string, msgs []Message) ([]Position, error) {
	s, err := b.acquire(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	total := 0
	now := b.opts.now()
	pos := make([]Position, len(msgs))
	parts := make([]int, len(msgs))
	for i := range msgs {
		p, err := s.checkBatched(&msgs[i], "", now)
		if err != nil {
			// Checked again to name the message: the field is built only for the
			// error, not for every message of every batch.
			_, err = s.checkBatched(&msgs[i], fmt.Sprintf("msgs[%d]", i), now)
			return nil, err
		}
		total += msgs[i].size()
		if total > MaxBatchBytes {
			return nil, invalid("msgs", "more than MaxBatchBytes=%d bytes", MaxBatchBytes)
		}
		parts[i] = p
		pos[i] = Position{Partition: p, Offset: -1}
	}
	// Repeats are answered before room is looked for; keys are claimed once there
	// is room, so that a refused batch leaves nothing in the index.
	skip, alias, keyed, hashes, err := s.peekBatch(ctx, msgs, parts, pos, now)
	if err != nil {
		return nil, err
	}
	byPart := map[int][]int{}
	for i, p := range parts {
		if !skip[i] {
			byPart[p] = append(byPart[p], i)
		}
	}
	encoded := map[int][]byte{}
	for p, idx := range byPart {
		recs := make([]batch.Record, len(idx))
		for j, i := range idx {
			recs[j] = toRecord(&msgs[i], now, nil)
		}
		encoded[p] = batch.Append(nil, recs)
	}
	var reserved []int
	defer func() {
		for _, p := range reserved {
			s.release(p, int64(len(byPart[p])), int64(len(encoded[p])))
		}
	}()
	for p, idx := range byPart {
		if err := s.reserve(ctx, p, int64(len(idx)), int64(len(encoded[p])), false, now, "msgs"); err != nil {
			return nil, s.full(err)
		}
		reserved = append(reserved, p)
	}
	claims, raced, err := s.claimBatch(ctx, msgs, keyed, hashes, parts, now)
	stored := map[int]bool{}
	defer func() {
		for _, bc := range claims {
			s.dedupe.finish(bc.h, bc.c, stored[bc.i], makeRef(parts[bc.i], pos[bc.i].Offset), bc.ts)
		}
	}()
	if err != nil {
		return nil, err
	}
	if raced {
		return nil, errBatchRaced
	}
	actx := ctx
	if len(claims) > 0 {
		// The claims are finished with the appends' real outcomes: a publish that
		// gave up after the writer took its batch would forget stored keys.
		actx = uncancellable
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	appendTo := func(p int, idx []int) {
		base, err := s.parts[p].Append(actx, encoded[p])
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("sluice: publish to %s/%d: %w", name, p, err))
			return
		}
		for j, i := range idx {
			pos[i].Offset = base + int64(j)
			stored[i] = true
		}
		s.ctr.published.Add(int64(len(idx)))
		s.ctr.publishedBytes.Add(int64(len(encoded[p])))
	}
	// The partitions are appended to at once; the last in this goroutine, so
	// that a batch for one partition costs no goroutine.
	left := len(byPart)
	for p, idx := range byPart {
		if left--; left == 0 {
			appendTo(p, idx)
			break
		}
		wg.Go(func() { appendTo(p, idx) })
	}
	wg.Wait()
	for i, first := range alias {
		if stored[first] || pos[first].Duplicate {
			pos[i] = Position{Partition: pos[first].Partition, Offset: pos[first].Offset, Duplicate: true}
		}
	}
	return pos, errors.Join(errs...)
}

// checkBatched checks one message of a batch, named field in an error, and
// returns its partition.
func (s *stream) checkBatched(m *Message, field string, now time.Time) (int, error) {
	if err := m.validate(field, s.cfg.MaxMessageBytes, now); err != nil {
		return 0, err
	}
	if err := s.checkKeyTime(field, m, now); err != nil {
		return 0, err
	}
	return s.partitionFor(m, field)
}

// errBatchRaced: a key of the batch was stored by another publish between the
// batch's look-up and its claim; the batch is prepared again.
var errBatchRaced = errors.New("sluice: batch raced with a publish of one of its keys")

// peekBatch looks up the idempotency keys of a batch without claiming them. skip
// marks the messages not to store: duplicates of accepted keys (their pos set)
// and repeats of a key earlier in the batch (alias: repeat → first). keyed lists
// the other keyed messages, in hash order, with their hashes. Lock held: s.mu
// (read).
func (s *stream) peekBatch(ctx context.Context, msgs []Message, parts []int, pos []Position, now time.Time) (skip map[int]bool, alias map[int]int, keyed []int, hashes map[int]uint64, err error) {
	first := map[string]int{}
	skip, alias, hashes = map[int]bool{}, map[int]int{}, map[int]uint64{}
	for i := range msgs {
		k := msgs[i].IdempotencyKey
		if k == "" {
			continue
		}
		if f, ok := first[k]; ok {
			skip[i], alias[i] = true, f
			continue
		}
		first[k] = i
		hashes[i] = keyHash(k)
		p, dup, _, _, err := s.claimKey(ctx, k, hashes[i], parts[i], now, nil, false)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if dup {
			pos[i], skip[i] = p, true
			s.dedupe.duplicate()
			continue
		}
		keyed = append(keyed, i)
	}
	slices.SortFunc(keyed, func(a, b int) int { return cmp.Compare(hashes[a], hashes[b]) })
	return skip, alias, keyed, hashes, nil
}

// claimBatch claims the keys of keyed (in hash order, so that two batches never
// wait for each other). raced reports a key found stored meanwhile. The claims
// taken are returned, also on error, for the caller to finish. Lock held: s.mu
// (read).
func (s *stream) claimBatch(ctx context.Context, msgs []Message, keyed []int, hashes map[int]uint64, parts []int, now time.Time) (claims []batchClaim, raced bool, err error) {
	owned := map[uint64]bool{} // key hashes
	for _, i := range keyed {
		_, dup, own, owns, err := s.claimKey(ctx, msgs[i].IdempotencyKey, hashes[i], parts[i], now, owned, true)
		if err != nil {
			return claims, false, err
		}
		switch {
		case dup:
			return claims, true, nil
		case owns:
			owned[hashes[i]] = true
			claims = append(claims, batchClaim{c: own, h: hashes[i], ts: msgTime(&msgs[i], now), i: i})
		}
	}
	return claims, false, nil
}
