package sluice

import "time"

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
		s.mu.RLock()
		if !s.gone && (s.cfg.Retention != (Retention{Policy: s.cfg.Retention.Policy}) || done != nil) {
			for i, p := range s.parts {
				r := s.cfg.Retention.internal()
				if done != nil && i < len(done) {
					r.DoneBefore = done[i]
				}
				n, err := p.ApplyRetention(r, now)
				if err != nil {
					b.opts.Logger.Warn("sluice: retention", "stream", s.cfg.Name, "partition", i, "error", err)
				} else if n > 0 {
					b.opts.Logger.Info("sluice: retention removed segments", "stream", s.cfg.Name, "partition", i, "segments", n)
				}
			}
		}
		s.mu.RUnlock()
	}
}

// settledFloors returns, for a stream under RetainWork with subscriptions, each
// partition's lowest subscription floor: every message before it is settled by
// every subscription. It returns nil otherwise.
func (s *stream) settledFloors() []int64 {
	s.mu.RLock()
	work := s.cfg.Retention.Policy == RetainWork
	s.mu.RUnlock()
	if !work {
		return nil
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	var floors []int64
	for _, st := range s.subs {
		info := st.sub.Info()
		for i, p := range info.Partitions {
			if i >= len(floors) {
				floors = append(floors, p.Floor)
			} else {
				floors[i] = min(floors[i], p.Floor)
			}
		}
	}
	return floors
}
