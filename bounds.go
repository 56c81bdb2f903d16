package sluice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/internal/logstore"
)

// ErrStreamFull is matched by every *StreamFullError.
var ErrStreamFull = errors.New("sluice: stream full")

// StreamFullError reports a publish refused because its partition is at a bound
// (StreamConfig.MaxMessages or MaxBytes). Nothing of the publish was stored, so it
// is always safe to retry, after RetryAfter. It matches ErrStreamFull.
type StreamFullError struct {
	Stream    string
	Partition int
	// Limit names the bound: "MaxMessages" or "MaxBytes"; Bound is its value.
	Limit string
	Bound int64
	// Waited is how long the publish waited for room (OverflowBlock).
	Waited time.Duration
	// RetryAfter is a hint: when room is likely.
	RetryAfter time.Duration

	// For the publish that waits: the stream and its policy when it was refused.
	s       *stream
	block   bool
	timeout time.Duration
}

func (e *StreamFullError) Error() string {
	s := fmt.Sprintf("sluice: stream %s partition %d full: at %s=%d", e.Stream, e.Partition, e.Limit, e.Bound)
	if e.Waited > 0 {
		s += fmt.Sprintf(" after waiting %v", e.Waited.Round(time.Millisecond))
	}
	return s + fmt.Sprintf("; retry after %v", e.RetryAfter)
}

// Is makes errors.Is(err, ErrStreamFull) true.
func (e *StreamFullError) Is(target error) bool { return target == ErrStreamFull }

// StreamCounters count a stream's backpressure and deduplication since the broker
// started.
type StreamCounters struct {
	// Published and PublishedBytes count the messages stored by publishes and
	// their encoded bytes (a duplicate stores nothing).
	Published      int64 `json:"published"`
	PublishedBytes int64 `json:"published_bytes"`
	// Rejected counts publishes refused with ErrStreamFull (under OverflowBlock,
	// after waiting).
	Rejected int64 `json:"rejected"`
	// Blocked counts publishes that waited for room; BlockedTime is their total wait.
	Blocked     int64         `json:"blocked"`
	BlockedTime time.Duration `json:"blocked_time"`
	// Dropped counts messages removed to make room under OverflowDropOldest.
	Dropped int64 `json:"dropped"`
	// Duplicates counts publishes answered from the dedupe index; DedupeKeys is the
	// number of idempotency keys it holds, and DedupeEvicted those it forgot
	// before their window passed because DedupeMaxKeys was reached.
	Duplicates    int64 `json:"duplicates"`
	DedupeKeys    int   `json:"dedupe_keys"`
	DedupeEvicted int64 `json:"dedupe_evicted"`
}

type counters struct {
	published, publishedBytes                atomic.Int64
	rejected, blocked, blockedNanos, dropped atomic.Int64
}

// gate admits publishes to one partition within the stream's bounds.
type gate struct {
	mu    sync.Mutex
	msgs  int64 // reserved by publishes in flight
	bytes int64
	// floor is, under RetainWork, the lowest offset a subscription has not
	// settled, as last read from the subscriptions: messages before it do not
	// count against MaxMessages.
	floor   atomic.Int64
	reclaim time.Time // the last inline reclaim of settled segments
}

// reclaimEvery spaces the inline reclaims of settled segments of one partition.
const reclaimEvery = 10 * time.Millisecond

// overLocked returns the bound that n more messages of size bytes would break.
// Lock held: g.mu.
func (s *stream) overLocked(g *gate, l logstore.Log, n, size int64) (string, int64) {
	// Offsets start at 0, so a partition whose offsets end within the bound fits
	// without reading its start (which takes the log's lock).
	if end := l.HighWatermark() + g.msgs + n; end > s.cfg.MaxMessages {
		base := l.StartOffset()
		if s.cfg.Retention.Policy == RetainWork {
			base = max(base, g.floor.Load())
		}
		if end-base > s.cfg.MaxMessages {
			return "MaxMessages", s.cfg.MaxMessages
		}
	}
	if l.Bytes()+g.bytes+size > s.cfg.MaxBytes {
		return "MaxBytes", s.cfg.MaxBytes
	}
	return "", 0
}

// reserve makes room for n messages of size bytes in partition p, or returns a
// *StreamFullError. Under OverflowDropOldest it drops the oldest segments instead
// and always succeeds. Internal publishes (dead letters, published while a
// subscription's lock is held) do not read the subscriptions' floors. On success
// the caller must call release with the same n and size. Lock held: s.mu (read).
func (s *stream) reserve(ctx context.Context, p int, n, size int64, internal bool, now time.Time, field string) error {
	if n > s.cfg.MaxMessages || size > s.cfg.MaxBytes {
		return invalid(field, "%d messages of %d bytes for partition %d never fit in its bounds MaxMessages=%d, MaxBytes=%d",
			n, size, p, s.cfg.MaxMessages, s.cfg.MaxBytes)
	}
	g, l := s.gates[p], s.parts[p]
	g.mu.Lock()
	defer g.mu.Unlock()
	limit, bound := s.overLocked(g, l, n, size)
	if limit != "" {
		switch {
		case s.cfg.Overflow == OverflowDropOldest:
			if s.dropLocked(g, l, n, size, now) {
				// Only the active segment is left, and it holds too much: seal it
				// (without g.mu: the writer finishes the appends queued first) so
				// that it can go too.
				g.mu.Unlock()
				err := rollLog(ctx, l)
				g.mu.Lock()
				if err != nil {
					s.logWarn("sluice: dropping oldest messages", err)
				} else {
					s.dropLocked(g, l, n, size, now)
				}
			}
			limit = ""
		case s.cfg.Retention.Policy == RetainWork && !internal:
			// The floors are read without g.mu: a subscription holds its own
			// lock while it publishes a dead letter, which takes a gate.
			g.mu.Unlock()
			floor, ok := s.workFloor(p)
			g.mu.Lock()
			s.refreshLocked(g, l, floor, ok, now)
			limit, bound = s.overLocked(g, l, n, size)
		case s.cfg.Retention.MaxAge > 0 && now.Sub(g.reclaim) >= reclaimEvery:
			// Room comes when the oldest messages age out: remove them now
			// rather than at the next retention pass.
			g.reclaim = now
			g.mu.Unlock()
			s.expire(ctx, l, now)
			g.mu.Lock()
			limit, bound = s.overLocked(g, l, n, size)
		}
	}
	if limit != "" {
		return &StreamFullError{Stream: s.cfg.Name, Partition: p, Limit: limit, Bound: bound, RetryAfter: s.retryAfter(l, now)}
	}
	g.msgs += n
	g.bytes += size
	return nil
}

func (s *stream) release(p int, n, size int64) {
	g := s.gates[p]
	g.mu.Lock()
	g.msgs -= n
	g.bytes -= size
	g.mu.Unlock()
}

// dropLocked removes the oldest sealed segments of l until n messages of size
// bytes fit, and reports whether the active segment must be sealed for them to.
// Lock held: g.mu.
func (s *stream) dropLocked(g *gate, l logstore.Log, n, size int64, now time.Time) (needRoll bool) {
	start := l.StartOffset()
	r := logstore.Retention{
		CapMessages: max(s.cfg.MaxMessages-g.msgs-n, 1),
		CapBytes:    max(s.cfg.MaxBytes-g.bytes-size, 1),
	}
	if _, err := l.ApplyRetention(r, now); err != nil {
		s.logWarn("sluice: dropping oldest messages", err)
	}
	if d := l.StartOffset() - start; d > 0 {
		s.ctr.dropped.Add(d)
	}
	limit, _ := s.overLocked(g, l, n, size)
	return limit != "" && l.HighWatermark() > l.StartOffset()
}

// rollTimeout bounds the wait for a partition's writer to seal its segment.
const rollTimeout = 10 * time.Second

func rollLog(ctx context.Context, l logstore.Log) error {
	ctx, cancel := context.WithTimeout(ctx, rollTimeout)
	defer cancel()
	return l.Roll(ctx)
}

// expire removes the segments of l older than the stream's MaxAge, the active one
// too once everything in it is older. It returns how many it removed.
func (s *stream) expire(ctx context.Context, l logstore.Log, now time.Time) int {
	r := s.cfg.Retention.internal()
	n, err := l.ApplyRetention(r, now)
	if err != nil {
		s.logWarn("sluice: retention", err)
		return n
	}
	st := l.Stats()
	if st.Segments == 1 && st.HighWatermark > st.StartOffset && time.UnixMilli(st.OldestTimestamp).Before(now.Add(-r.MaxAge)) {
		if err := rollLog(ctx, l); err != nil {
			s.logWarn("sluice: retention", err)
			return n
		}
		m, err := l.ApplyRetention(r, now)
		if err != nil {
			s.logWarn("sluice: retention", err)
		}
		n += m
	}
	return n
}

// refreshLocked records the subscriptions' lowest floor of a partition (ok false
// without subscriptions) and removes the segments every subscription settled.
// Lock held: g.mu and s.mu (read).
func (s *stream) refreshLocked(g *gate, l logstore.Log, floor int64, ok bool, now time.Time) {
	if !ok {
		g.floor.Store(0)
		return
	}
	g.floor.Store(floor)
	if now.Sub(g.reclaim) < reclaimEvery {
		return
	}
	g.reclaim = now
	if _, err := l.ApplyRetention(logstore.Retention{DoneBefore: floor}, now); err != nil {
		s.logWarn("sluice: reclaiming settled segments", err)
	}
}

// workFloor returns the lowest floor of the stream's subscriptions in partition p
// (ok false without subscriptions).
func (s *stream) workFloor(p int) (int64, bool) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	floor, ok := int64(0), false
	for _, st := range s.subs {
		f := st.sub.Floor(p)
		if !ok || f < floor {
			floor, ok = f, true
		}
	}
	return floor, ok
}

// retryAfter estimates when a full partition has room: when its oldest segment
// ages out, for a stream with MaxAge; else a second.
func (s *stream) retryAfter(l logstore.Log, now time.Time) time.Duration {
	const def, most = time.Second, time.Minute
	if s.cfg.Retention.Policy == RetainWork || s.cfg.Retention.MaxAge == 0 {
		return def
	}
	st := l.Stats()
	d := time.UnixMilli(st.OldestTimestamp).Add(s.cfg.Retention.MaxAge).Sub(now)
	return min(max(d, 100*time.Millisecond), most)
}

func (s *stream) logWarn(msg string, err error) {
	if s.log != nil {
		s.log.Warn(msg, "stream", s.cfg.Name, "error", err)
	}
}

// blockPoll is how often a publish blocked for room looks again.
const (
	blockPollMin = time.Millisecond
	blockPollMax = 50 * time.Millisecond
)

// waitRoom waits before a blocked publish looks for room again: until the
// stream's room signal, the poll interval, the deadline or ctx, whichever is
// first. It returns false when the deadline passed or ctx ended.
func (s *stream) waitRoom(ctx context.Context, deadline time.Time, poll time.Duration) bool {
	wait := min(poll, time.Until(deadline))
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.roomSignal():
		return true
	case <-ctx.Done():
		return false
	}
}

// roomSignal returns a channel closed when room may have been made.
func (s *stream) roomSignal() <-chan struct{} {
	s.roomMu.Lock()
	defer s.roomMu.Unlock()
	return s.room
}

// signalRoom wakes publishes blocked for room.
func (s *stream) signalRoom() {
	s.roomMu.Lock()
	close(s.room)
	s.room = make(chan struct{})
	s.roomMu.Unlock()
}

// refreshFloors reads every partition's subscription floors, for a RetainWork
// stream: a redrive or a seek back counts against MaxMessages from then on.
// Lock held: s.mu (read).
func (s *stream) refreshFloors() {
	if s.cfg.Retention.Policy != RetainWork {
		return
	}
	for p, g := range s.gates {
		floor, ok := s.workFloor(p)
		if !ok {
			floor = 0
		}
		g.floor.Store(floor)
	}
}

func (s *stream) counters() StreamCounters {
	c := StreamCounters{
		Published: s.ctr.published.Load(), PublishedBytes: s.ctr.publishedBytes.Load(),
		Rejected: s.ctr.rejected.Load(), Blocked: s.ctr.blocked.Load(),
		BlockedTime: time.Duration(s.ctr.blockedNanos.Load()), Dropped: s.ctr.dropped.Load(),
	}
	if s.dedupe != nil {
		s.dedupe.counters(&c)
	}
	return c
}
