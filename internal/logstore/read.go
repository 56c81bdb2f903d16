package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
)

// HighWatermark is the offset after the last batch readers may see.
func (p *Partition) HighWatermark() int64 { return p.hw.Load() }

// StartOffset is the first offset still stored.
func (p *Partition) StartOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.segs[0].base
}

// Wait blocks until the high watermark passes off, ctx ends or the partition
// closes. It returns the high watermark.
func (p *Partition) Wait(ctx context.Context, off int64) (int64, error) {
	for {
		p.notifyMu.Lock()
		ch := p.notify
		p.notifyMu.Unlock()
		if hw := p.hw.Load(); hw > off {
			return hw, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return p.hw.Load(), ctx.Err()
		case <-p.closing:
			return p.hw.Load(), ErrClosed
		}
	}
}

// Read returns whole, verified batches: the one holding off and those after it, up
// to maxBytes in all (but always at least one batch) and never past the high
// watermark. The first batch may start before off. next is the offset after the last
// returned batch; when off is the high watermark, no data is returned and next is
// off. Offsets lost to quarantine are skipped (the first batch then starts after
// off; if the lost range ends at the high watermark, no data is returned and next
// is the high watermark). Data is read into buf when it fits.
func (p *Partition) Read(off int64, maxBytes int, buf []byte) (data []byte, next int64, err error) {
	return p.read(off, maxBytes, buf, true)
}

// read is Read; with retry, a read that found a damaged index (and rebuilt it) is
// made again, once.
func (p *Partition) read(off int64, maxBytes int, buf []byte, retry bool) (data []byte, next int64, err error) {
	if maxBytes < 1 {
		return nil, off, fmt.Errorf("logstore: Read maxBytes %d < 1", maxBytes)
	}
	p.mu.RLock()
	if p.closed.Load() {
		p.mu.RUnlock()
		return nil, off, ErrClosed
	}
	hw := p.hw.Load()
	if off < p.segs[0].base || off > hw {
		start := p.segs[0].base
		p.mu.RUnlock()
		return nil, off, fmt.Errorf("%w: %d not in [%d, %d]", ErrOutOfRange, off, start, hw)
	}
	if off == hw {
		p.mu.RUnlock()
		return nil, off, nil
	}
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].base > off }) - 1
	seg := p.segs[i]
	if i < len(p.segs)-1 && off >= p.segs[i+1].base {
		panic("logstore: segment search")
	}
	seg.mu.Lock()
	segNext := seg.next
	seg.mu.Unlock()
	if off >= segNext && i < len(p.segs)-1 {
		// A quarantined range: continue at the next segment, unless that is where
		// the log ends (an empty active segment).
		seg = p.segs[i+1]
		off = seg.base
		if off >= hw {
			p.mu.RUnlock()
			return nil, hw, nil
		}
	}
	data, next, pos, err := p.readSegment(seg, off, maxBytes, buf)
	p.mu.RUnlock()
	if err != nil && errors.Is(err, ErrCorrupt) {
		if p.corrupted(seg, pos, err) && retry {
			return p.read(off, maxBytes, buf, false)
		}
	}
	return data, next, err
}

// batchLengthField is how many bytes of a batch batch.PeekSize needs.
const batchLengthField = 12

// readSegment reads batches of seg starting with the one holding off. Lock held:
// p.mu (shared). On corruption pos is where it was found.
func (p *Partition) readSegment(seg *segment, off int64, maxBytes int, buf []byte) (data []byte, next, pos int64, err error) {
	pos, expect, err := seg.lookupByOffset(off)
	if err != nil {
		return nil, off, pos, err
	}
	limit := seg.visible.Load()
	// The window: maxBytes plus the index interval, since the batch holding off may
	// start up to an interval after pos. Written so that a huge maxBytes cannot
	// overflow into a negative size.
	want := limit - pos
	if int64(maxBytes) < want-p.cfg.IndexIntervalBytes {
		want = int64(maxBytes) + p.cfg.IndexIntervalBytes
	}
	if int64(cap(buf)) < want {
		buf = make([]byte, want)
	}
	buf = buf[:want]
	if n, err := seg.f.ReadAt(buf, pos); int64(n) < want {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, off, pos, fmt.Errorf("read %s at %d: %w", seg.path, pos, err)
	}
	first := -1
	p0 := pos
	at := 0
	window := len(buf)
	// Until the batch holding off is found, the loop reads on past the window: the
	// batch may start near the window's end, or beyond it when the segment's index
	// was written with a larger IndexIntervalBytes than the current one.
	for at < len(buf) || (first < 0 && p0+int64(at) < limit) {
		size, err := batch.PeekSize(buf[at:])
		if err != nil && !errors.Is(err, batch.ErrShort) {
			return nil, off, p0 + int64(at), fmt.Errorf("%w: %s at %d: %w", ErrCorrupt, seg.path, p0+int64(at), err)
		}
		if err == nil && first >= 0 && at+size-first > maxBytes {
			break // maxBytes may be exceeded only by the first batch
		}
		if err != nil || at+size > len(buf) {
			if first >= 0 {
				break
			}
			// Read on from this batch, dropping the verified bytes before it: at
			// least its length field, else the whole batch, and a window if there is.
			p0 += int64(at)
			at = 0
			need := int64(batchLengthField)
			if err == nil {
				need = int64(size)
			}
			if p0+need > limit {
				return nil, off, p0, fmt.Errorf("%w: %s: batch at %d runs past the %d readable bytes", ErrCorrupt, seg.path, p0, limit)
			}
			buf = make([]byte, min(max(need, int64(window)), limit-p0))
			if _, err := seg.f.ReadAt(buf, p0); err != nil {
				return nil, off, p0, fmt.Errorf("read %s at %d: %w", seg.path, p0, err)
			}
			continue
		}
		h, err := batch.Verify(buf[at : at+size])
		if err == nil && h.BaseOffset != expect {
			err = fmt.Errorf("base offset %d, want %d", h.BaseOffset, expect)
		}
		if err != nil {
			return nil, off, p0 + int64(at), fmt.Errorf("%w: %s at %d: %w", ErrCorrupt, seg.path, p0+int64(at), err)
		}
		expect = h.NextOffset()
		if first < 0 && expect > off {
			first = at
		}
		at += size
		if first >= 0 && at-first >= maxBytes {
			break
		}
	}
	if first < 0 {
		// The readable bytes end before off: the segment's offsets end early.
		return nil, off, p0, fmt.Errorf("logstore: offset %d not found in %s", off, seg.path)
	}
	return buf[first:at], expect, pos, nil
}

// corrupted reports corruption found at pos of seg. A sealed segment is quarantined
// so that its bytes are never served; corruption in the active segment stops writes.
// Quarantine loses data for good, so a sealed segment is first scanned whole: if
// every batch verifies, what was damaged is its index (Open checks only the index's
// structure, and an entry that is wrong but in order shows up here), which is
// rebuilt instead, and corrupted reports true: the read may be made again.
func (p *Partition) corrupted(seg *segment, pos int64, cause error) (reindexed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := -1
	for j, s := range p.segs {
		if s == seg {
			i = j
		}
	}
	if i < 0 {
		return false // already quarantined or removed
	}
	if i == len(p.segs)-1 {
		p.cfg.Logger.Error("logstore: corrupt data in segment", "segment", seg.path, "position", pos, "cause", cause)
		p.fail(fmt.Errorf("corruption in the active segment: %w", cause))
		return false
	}
	// Readers are excluded (p.mu is held), so the segment's index can be replaced.
	old := seg.idxFile
	seg.mu.Lock()
	seg.idxFile, seg.idxN = nil, 0
	seg.mu.Unlock()
	if old != nil {
		old.Close()
	}
	err := p.rebuildIndex(seg, seg.size)
	defer p.recountBytes()
	if err == nil || !errors.Is(err, ErrCorrupt) {
		// The data verifies. If writing the new index failed, the in-memory one
		// built by the scan serves lookups.
		p.cfg.Logger.Warn("logstore: damaged index of a sealed segment; the data verifies, index rebuilt",
			"segment", seg.path, "position", pos, "cause", cause, "index_error", err)
		return true
	}
	p.cfg.Logger.Error("logstore: corrupt data in segment", "segment", seg.path, "position", pos, "cause", cause)
	p.segs = append(p.segs[:i:i], p.segs[i+1:]...)
	seg.close()
	if err := p.quarantineFiles(seg.path); err != nil {
		p.cfg.Logger.Error("logstore: quarantine failed", "segment", seg.path, "error", err)
	}
	return false
}

// OffsetForTime returns the first offset whose record timestamp is at or after t,
// or the high watermark if there is none.
func (p *Partition) OffsetForTime(t time.Time) (int64, error) {
	ts := t.UnixMilli()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	hw := p.hw.Load()
	for _, seg := range p.segs {
		seg.mu.Lock()
		maxTS := seg.maxTS
		seg.mu.Unlock()
		if maxTS < ts {
			continue
		}
		pos, base, err := seg.lookupByTime(ts)
		if err != nil {
			return 0, err
		}
		sc := newScanner(seg.f, pos, seg.visible.Load(), base)
		for {
			_, b, h, err := sc.next()
			if err == errEnd {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrCorrupt, seg.path, err)
			}
			if h.MaxTimestamp < ts {
				continue
			}
			it, err := batch.NewIter(b)
			if err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrCorrupt, seg.path, err)
			}
			for it.Next() {
				if it.Record().Timestamp >= ts {
					return it.Record().Offset, nil
				}
			}
			if err := it.Err(); err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrCorrupt, seg.path, err)
			}
		}
	}
	return hw, nil
}

// Stats describes a partition.
type Stats struct {
	StartOffset   int64
	HighWatermark int64
	Segments      int
	Bytes         int64
	// OldestTimestamp is the max timestamp of the oldest segment (ms), or
	// math.MinInt64 when the log is empty.
	OldestTimestamp int64
}

// Bytes returns the bytes the partition's segments hold (written, synced or not),
// without taking a lock: what a publish checks a byte bound against.
func (p *Partition) Bytes() int64 { return p.bytes.Load() }

// recountBytes sets the byte count from the segments. Lock held: p.mu, or p is
// not shared yet.
func (p *Partition) recountBytes() {
	var n int64
	for _, s := range p.segs {
		s.mu.Lock()
		n += s.size
		s.mu.Unlock()
	}
	p.bytes.Store(n)
}

// Stats returns the partition's offsets and size.
func (p *Partition) Stats() Stats {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st := Stats{StartOffset: p.segs[0].base, HighWatermark: p.hw.Load(), Segments: len(p.segs), OldestTimestamp: math.MinInt64}
	for i, s := range p.segs {
		s.mu.Lock()
		st.Bytes += s.size
		if i == 0 {
			st.OldestTimestamp = s.maxTS
		}
		s.mu.Unlock()
	}
	return st
}
