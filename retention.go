package sluice

import (
	"time"

	"github.com/sluicemq/sluice/internal/logstore"
)

// retentionLoop enforces every stream's retention bounds every RetentionInterval.
func (b *Broker) retentionLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.applyRetention()
		}
	}
}

// applyRetention removes the segments every stream's retention no longer keeps.
func (b *Broker) applyRetention() {
	b.mu.RLock()
	ss := make([]*stream, 0, len(b.streams))
	for _, s := range b.streams {
		ss = append(ss, s)
	}
	b.mu.RUnlock()
	now := b.opts.now()
	for _, s := range ss {
		done := s.settledFloors()
		removed := 0
		s.mu.RLock()
		if !s.gone && (s.cfg.Retention.MaxAge > 0 || done != nil) {
			for i, p := range s.parts {
				n := 0
				if s.cfg.Retention.MaxAge > 0 {
					n += s.expire(b.stopCtx, p, now)
				}
				if done != nil && i < len(done) {
					m, err := p.ApplyRetention(logstore.Retention{DoneBefore: done[i]}, now)
					if err != nil {
						b.opts.Logger.Warn("sluice: retention", "stream", s.cfg.Name, "partition", i, "error", err)
					}
					n += m
				}
				if n > 0 {
					b.opts.Logger.Info("sluice: retention removed segments", "stream", s.cfg.Name, "partition", i, "segments", n)
				}
				removed += n
			}
		}
		if !s.gone {
			s.refreshFloors()
		}
		s.mu.RUnlock()
		if removed > 0 || done != nil {
			s.signalRoom()
		}
		if err := b.saveDedupe(s, false); err != nil {
			b.opts.Logger.Warn("sluice: dedupe snapshot", "stream", s.cfg.Name, "error", err)
		}
	}
}

// settledFloors returns, for a stream under RetainWork with subscriptions, each
// partition's lowest subscription floor: every message before it is settled by
// every subscription. It returns nil otherwise.
func (s *stream) settledFloors() []int64 {
	s.mu.RLock()
	work := s.cfg.Retention.Policy == RetainWork
	n := len(s.parts)
	s.mu.RUnlock()
	if !work {
		return nil
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if len(s.subs) == 0 {
		return nil
	}
	floors := make([]int64, n)
	for i := range floors {
		first := true
		for _, st := range s.subs {
			if f := st.sub.Floor(i); first || f < floors[i] {
				floors[i], first = f, false
			}
		}
	}
	return floors
}
