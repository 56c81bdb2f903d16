package logstore

import (
	"errors"
	"fmt"
	"time"
)

func (p *Partition) intervalSyncLoop() {
	t := time.NewTicker(p.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.syncActive()
		case _, ok := <-p.syncCh:
			if !ok {
				return
			}
		}
	}
}

// syncActive syncs the active segment if it was written since the last sync.
func (p *Partition) syncActive() {
	if !p.dirty.Swap(false) || p.writable() != nil {
		return
	}
	p.mu.RLock()
	seg := p.segs[len(p.segs)-1]
	err := p.timedSync(seg)
	p.mu.RUnlock()
	if err != nil {
		p.fail(fmt.Errorf("sync %s: %w", seg.path, err))
	}
}

// Sync makes every batch whose Append returned before it was called durable now,
// under any policy: it fdatasyncs the active segment and returns the error. A
// segment that rolled meanwhile was synced by the roll before its successor
// became active, so syncing the segment that is active when Sync looks covers
// everything written before. It runs beside the writer goroutine, as the interval
// syncer does: the segment list is held shared, so that Close cannot close the
// file under it. A failed sync stops the partition (fail-stop): which of the
// written bytes reached the disk is then unknown.
func (p *Partition) Sync() error {
	if err := p.writable(); err != nil {
		return err
	}
	// Cleared before the sync: a write that lands after it sets the flag again,
	// and one before it is covered by this sync.
	p.dirty.Store(false)
	p.mu.RLock()
	if p.closed.Load() {
		p.mu.RUnlock()
		return ErrClosed
	}
	seg := p.segs[len(p.segs)-1]
	err := p.timedSync(seg)
	p.mu.RUnlock()
	if err != nil {
		return p.fail(fmt.Errorf("sync %s: %w", seg.path, err))
	}
	return nil
}

// Close stops the writer after the requests it already took, syncs the active
// segment (under every policy) and closes the files. Requests still queued get
// ErrClosed. Close may be called more than once.
func (p *Partition) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		p.wg.Wait()
		close(p.stopped)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.closed.Store(true)
		var errs []error
		if p.failure.Load() == nil {
			// A cleanly closed segment ends with its last batch, as a sealed one
			// does: preallocated zeros are not left behind on an idle partition.
			active := p.segs[len(p.segs)-1]
			if active.fileSize > active.size {
				if err := active.f.Truncate(active.size); err != nil {
					errs = append(errs, fmt.Errorf("logstore: truncate %s: %w", active.path, err))
				}
			}
			if err := active.f.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("logstore: final sync: %w", err))
			}
		}
		for _, s := range p.segs {
			if err := s.close(); err != nil {
				errs = append(errs, err)
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
