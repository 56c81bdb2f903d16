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
		s.mu.RLock()
		if !s.gone && s.cfg.Retention != (Retention{}) {
			for i, p := range s.parts {
				n, err := p.ApplyRetention(s.cfg.Retention.internal(), now)
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
