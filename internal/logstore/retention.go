package logstore

import (
	"fmt"
	"time"
)

// Retention bounds what a partition keeps. Zero fields are no bound. Whole sealed
// segments are removed, oldest first; the active segment is never removed, so a
// partition can exceed MaxBytes or MaxMessages by at most one segment.
type Retention struct {
	// MaxAge removes a segment once its newest record is older than this.
	MaxAge time.Duration
	// MaxBytes removes the oldest segment while the rest still hold MaxBytes.
	MaxBytes int64
	// MaxMessages removes the oldest segment while the rest still hold MaxMessages.
	MaxMessages int64
	// DoneBefore removes every segment whose messages all lie before this offset
	// (work-queue retention: everything before it is settled). Zero is no bound.
	DoneBefore int64
	// CapBytes and CapMessages remove the oldest segment while the partition holds
	// more than this: a cap, where MaxBytes and MaxMessages are floors. Zero is no
	// bound.
	CapBytes    int64
	CapMessages int64
}

// ApplyRetention removes the oldest sealed segments that r no longer keeps and
// returns how many it removed. Readers positioned in removed data get
// ErrOutOfRange.
func (p *Partition) ApplyRetention(r Retention, now time.Time) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	var bytes int64
	for _, s := range p.segs {
		s.mu.Lock()
		bytes += s.size
		s.mu.Unlock()
	}
	messages := p.hw.Load() - p.segs[0].base
	removed := 0
	for len(p.segs) > 1 {
		s := p.segs[0]
		s.mu.Lock()
		size, maxTS, count := s.size, s.maxTS, s.next-s.base
		s.mu.Unlock()
		expired := r.MaxAge > 0 && time.UnixMilli(maxTS).Before(now.Add(-r.MaxAge))
		// Without s the partition still holds at least the bound.
		tooBig := r.MaxBytes > 0 && bytes-size >= r.MaxBytes
		tooMany := r.MaxMessages > 0 && messages-count >= r.MaxMessages
		done := r.DoneBefore > 0 && s.base+count <= r.DoneBefore
		overCap := r.CapBytes > 0 && bytes > r.CapBytes || r.CapMessages > 0 && messages > r.CapMessages
		if !expired && !tooBig && !tooMany && !done && !overCap {
			break
		}
		p.segs = p.segs[1:]
		if err := s.close(); err != nil {
			p.cfg.Logger.Warn("logstore: closing removed segment", "segment", s.path, "error", err)
		}
		if err := p.fs.Remove(s.path); err != nil {
			return removed, fmt.Errorf("logstore: retention: %w", err)
		}
		if idx := indexName(s.path); p.fs.Exists(idx) {
			if err := p.fs.Remove(idx); err != nil {
				return removed, fmt.Errorf("logstore: retention: %w", err)
			}
		}
		bytes -= size
		messages -= count
		p.bytes.Add(-size)
		removed++
	}
	if removed > 0 {
		if err := p.fs.SyncDir(p.cfg.Dir); err != nil {
			return removed, fmt.Errorf("logstore: retention: sync dir: %w", err)
		}
	}
	return removed, nil
}
