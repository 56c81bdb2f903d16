package logstore

import (
	"runtime"

	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
)

// appendReq is one Append call waiting for the writer.
type appendReq struct {
	roll    bool // a Roll, not an append
	batches [][]byte
	size    int64
	base    int64      // set by the writer
	done    chan error // buffered: the writer never blocks on it

	// mu orders the writer's use of batches with a publisher giving up: the writer
	// reads (and patches) the batches only if the request was not abandoned, and a
	// publisher abandons it only if the writer has not taken it. Either way, once
	// Append returns, the caller may reuse its buffers.
	mu        sync.Mutex
	taken     bool // the writer has copied the batches into its write buffer
	abandoned bool // the publisher gave up before that
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// syncJob is a written group to acknowledge, or (for the test-only lazy engine) a
// sync or barrier for the syncer goroutine.
type syncJob struct {
	seg       *segment
	endPos    int64
	endOffset int64
	reqs      []*appendReq
	barrier   chan struct{}
}

// Append writes encoded batches (package batch) as consecutive offsets and returns
// the base offset of the first. The batches' base offsets are overwritten. Under
// SyncAlways it returns only once the batches are on disk. If ctx ends first, the
// batches may or may not be stored. Once Append returns, however it returns, the
// caller may reuse the batches' memory.
func (p *Partition) Append(ctx context.Context, batches ...[]byte) (int64, error) {
	if len(batches) == 0 {
		return 0, errors.New("logstore: Append with no batches")
	}
	var size int64
	for i, b := range batches {
		if _, err := batch.Verify(b); err != nil {
			return 0, fmt.Errorf("logstore: append batch %d: %w", i, err)
		}
		size += int64(len(b))
	}
	if err := p.writable(); err != nil {
		return 0, err
	}
	r := reqPool.Get().(*appendReq)
	r.batches, r.size, r.taken, r.abandoned = batches, size, false, false
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		r.batches = nil
		reqPool.Put(r)
		return 0, ctx.Err()
	case <-p.closing:
		return 0, ErrClosed
	}
	select {
	case err := <-r.done:
		base := r.base
		r.batches = nil
		reqPool.Put(r)
		return base, err
	case <-ctx.Done():
		// The writer may still hold r in a group, so r is not reused. Unless the
		// writer has taken the batches already (they may then be stored), it must
		// skip them: the caller may overwrite them as soon as Append returns.
		r.mu.Lock()
		r.abandoned = !r.taken
		r.mu.Unlock()
		return 0, ctx.Err()
	case <-p.stopped:
		select {
		case err := <-r.done:
			return r.base, err
		default:
			return 0, ErrClosed
		}
	}
}

// Roll seals the active segment, if it holds anything, and starts a new one, once
// the appends queued before it are written: so that retention, which never removes
// the active segment, can remove what it held.
func (p *Partition) Roll(ctx context.Context) error {
	if err := p.writable(); err != nil {
		return err
	}
	r := &appendReq{roll: true, done: make(chan error, 1)}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-p.stopped:
		select {
		case err := <-r.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (p *Partition) writable() error {
	if p.closed.Load() {
		return ErrClosed
	}
	if e := p.failure.Load(); e != nil {
		return *e
	}
	return nil
}

// fail puts the partition in fail-stop state. The first cause wins.
func (p *Partition) fail(cause error) error {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	if p.failure.CompareAndSwap(nil, &err) {
		p.cfg.Logger.Error("logstore: partition stopped accepting writes", "dir", p.cfg.Dir, "cause", cause)
	}
	return *p.failure.Load()
}

func (p *Partition) writeLoop() {
	defer p.wg.Done()
	defer close(p.syncCh)
	group := make([]*appendReq, 0, 64)
	for {
		var r *appendReq
		select {
		case r = <-p.reqs:
		case <-p.closing:
			for {
				select {
				case r := <-p.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		}
		if p.cfg.Sync == SyncAlways {
			// Publishers acknowledged by the last sync are runnable now; let them
			// enqueue so that they join this group rather than the next.
			for range maxGatherYields {
				n := len(p.reqs)
				runtime.Gosched()
				if len(p.reqs) == n {
					break
				}
			}
		}
		group = append(group[:0], r)
		bytes := r.size
	drain:
		for len(group) < MaxGroupRequests && bytes < MaxGroupBytes {
			select {
			case r = <-p.reqs:
				group = append(group, r)
				bytes += r.size
			default:
				break drain
			}
		}
		p.writeGroup(group)
		p.prezero()
	}
}

// maxGatherYields bounds how often the writer yields to let publishers join a group
// before it writes: it stops as soon as a yield brings no new request.
const maxGatherYields = 8

// writeGroup writes the batches of group with one write per segment and hands them
// to the syncer (or acknowledges them, under the lazier policies).
func (p *Partition) writeGroup(group []*appendReq) {
	if err := p.writable(); err != nil {
		for _, r := range group {
			r.done <- err
		}
		return
	}
	seg := p.active
	buf := p.wbuf[:0]
	start := 0 // first request not yet handed on
	for i, r := range group {
		if r.roll {
			if err := p.flush(seg, buf, group[start:i]); err != nil {
				p.failAll(group[i:], err)
				return
			}
			if seg.size > 0 {
				if err := p.roll(); err != nil {
					p.failAll(group[i:], p.fail(err))
					return
				}
			}
			r.done <- nil
			seg, buf, start = p.active, buf[:0], i+1
			continue
		}
		pos := seg.size + int64(len(buf))
		if pos > 0 && pos+r.size > p.cfg.SegmentBytes {
			if err := p.flush(seg, buf, group[start:i]); err != nil {
				p.failAll(group[i:], err)
				return
			}
			if err := p.roll(); err != nil {
				p.failAll(group[i:], p.fail(err))
				return
			}
			seg, buf, start = p.active, buf[:0], i
		}
		r.mu.Lock()
		if r.abandoned {
			r.mu.Unlock()
			continue // its publisher gave up and owns the batches again
		}
		r.taken = true
		r.base = p.next
		for _, b := range r.batches {
			batch.SetBaseOffset(b, p.next)
			h, _ := batch.ParseHeader(b) // verified in Append
			seg.mu.Lock()
			seg.indexBatchLocked(seg.size+int64(len(buf)), p.next, h.NextOffset(), h.MaxTimestamp, p.cfg.IndexIntervalBytes)
			seg.mu.Unlock()
			buf = append(buf, b...)
			p.next = h.NextOffset()
		}
		r.mu.Unlock()
	}
	if err := p.flush(seg, buf, group[start:]); err != nil {
		return
	}
	if cap(buf) <= 2*MaxGroupBytes {
		p.wbuf = buf[:0]
	}
}

func (p *Partition) failAll(reqs []*appendReq, err error) {
	for _, r := range reqs {
		r.done <- err
	}
}

// flush writes buf to the end of seg and passes reqs on for acknowledgement.
func (p *Partition) flush(seg *segment, buf []byte, reqs []*appendReq) error {
	if len(reqs) == 0 {
		return nil
	}
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		err = p.fail(fmt.Errorf("write %s: %w", seg.path, err))
		p.failAll(reqs, err)
		return err
	}
	seg.mu.Lock()
	seg.size += int64(len(buf))
	p.bytes.Add(int64(len(buf)))
	seg.mu.Unlock()
	seg.fileSize = max(seg.fileSize, seg.size)
	p.groupBytes += (int64(len(buf)) - p.groupBytes) / 8
	job := &syncJob{seg: seg, endPos: seg.size, endOffset: p.next, reqs: reqs}
	switch {
	case p.cfg.ackBeforeSync:
		p.publish(job, nil)
		p.syncCh <- &syncJob{seg: seg, endPos: job.endPos, endOffset: job.endOffset}
	case p.cfg.Sync == SyncAlways:
		// The writer syncs inline: while it does, the next group gathers in p.reqs,
		// so one fdatasync serves every publisher that arrived meanwhile.
		var err error
		if serr := p.timedSync(seg); serr != nil {
			err = p.fail(fmt.Errorf("sync %s: %w", seg.path, serr))
		}
		p.publish(job, err)
		return err
	default:
		p.publish(job, nil)
		if p.cfg.Sync == SyncInterval {
			p.dirty.Store(true)
		}
	}
	return nil
}

// timedSync syncs seg's file, telling Config.OnSync how long it took.
func (p *Partition) timedSync(seg *segment) error {
	if p.cfg.OnSync == nil {
		return seg.f.Sync()
	}
	start := time.Now()
	err := seg.f.Sync()
	p.cfg.OnSync(time.Since(start))
	return err
}

// publish makes a written (and, if required, synced) job visible to readers and
// acknowledges its publishers with err.
func (p *Partition) publish(job *syncJob, err error) {
	if err == nil && job.endOffset > p.hw.Load() {
		job.seg.visible.Store(job.endPos)
		p.hw.Store(job.endOffset)
		p.notifyMu.Lock()
		close(p.notify)
		p.notify = make(chan struct{})
		p.notifyMu.Unlock()
	}
	for _, r := range job.reqs {
		r.done <- err
	}
}

// roll seals the active segment and starts a new one at p.next.
func (p *Partition) roll() error {
	old := p.active
	if p.cfg.ackBeforeSync {
		barrier := make(chan struct{})
		p.syncCh <- &syncJob{barrier: barrier}
		<-barrier
		if err := p.writable(); err != nil {
			return err
		}
	}
	// A sealed segment ends with its last batch: the zeros past it go, and the
	// sync makes the new length durable before the next segment exists.
	if old.fileSize > old.size {
		if err := old.f.Truncate(old.size); err != nil {
			return fmt.Errorf("truncate %s: %w", old.path, err)
		}
		old.fileSize = old.size
	}
	if err := old.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", old.path, err)
	}
	old.visible.Store(old.size)
	if err := old.sealIndex(p.fs); err != nil {
		return err
	}
	path := segmentName(p.cfg.Dir, p.next)
	f, err := p.fs.Create(path)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if err := p.fs.SyncDir(p.cfg.Dir); err != nil {
		f.Close()
		return fmt.Errorf("sync dir %s: %w", p.cfg.Dir, err)
	}
	s := newSegment(p.next, path, f)
	p.mu.Lock()
	p.segs = append(p.segs, s)
	p.mu.Unlock()
	p.active = s
	return nil
}

// Preallocation of the active segment (prezero). On ext4 and most file systems an
// fdatasync after a write that grows the file also commits the file system's
// journal (the new size and blocks), while one after overwriting blocks that were
// already written and synced only flushes the data. So, under SyncAlways, the
// writer keeps the active segment's file zero-filled and synced ahead of the write
// position, and the groups it writes next overwrite those zeros.
//
// Zero-filling writes every byte twice. That pays while groups are small and each
// fdatasync is dominated by its fixed cost; with large groups the disk's bandwidth
// dominates and the zeros cost more than the journal commits they save. The writer
// therefore preallocates only while the average group is below
// prezeroMaxGroupBytes. BENCHMARKS.md has the measurements behind these numbers.
const (
	// prezeroMinStep and prezeroMaxStep bound the step by which the file is
	// zero-filled ahead of the data: the segment's data size clamped to these
	// bounds (the file never passes SegmentBytes). The file is extended by a step
	// once less than half a step of zeros is left, so a partition holds less than
	// one and a half steps of zeros: 1.5 MiB while its segment is small, 6 MiB at
	// most.
	prezeroMinStep = 1 << 20
	prezeroMaxStep = 4 << 20
	// prezeroMaxGroupBytes is the average group size (bytes per fdatasync) from
	// which the writer stops preallocating.
	prezeroMaxGroupBytes = 128 << 10
	// prezeroChunk is the size of one zero-filling write.
	prezeroChunk = 1 << 20
)

// zeroChunk is prezeroChunk bytes of zeros, only ever read.
var zeroChunk = make([]byte, prezeroChunk)

// prezero zero-fills the active segment a step further, and syncs the zeros, when
// less than half a step of zeros is left ahead of the data. It runs in the writer
// goroutine between groups, after the previous group was acknowledged, so no
// publisher waits for it unless it arrives meanwhile. It never writes below
// fileSize, so never over data. A failed write or sync stops the partition like
// any other (fail-stop): the file's state is then unknown.
func (p *Partition) prezero() {
	seg := p.active
	if p.cfg.Sync != SyncAlways || p.groupBytes >= prezeroMaxGroupBytes || p.writable() != nil {
		return
	}
	step := min(max(seg.size, prezeroMinStep), prezeroMaxStep)
	if seg.fileSize-seg.size >= step/2 {
		return
	}
	target := min(seg.fileSize+step, p.cfg.SegmentBytes)
	for seg.fileSize < target {
		n := min(target-seg.fileSize, prezeroChunk)
		if _, err := seg.f.WriteAt(zeroChunk[:n], seg.fileSize); err != nil {
			p.fail(fmt.Errorf("zero-fill %s: %w", seg.path, err))
			return
		}
		seg.fileSize += n
	}
	if p.cfg.prezeroNoSync {
		return
	}
	if err := seg.f.Sync(); err != nil {
		p.fail(fmt.Errorf("sync %s: %w", seg.path, err))
	}
}

func (p *Partition) syncLoop() {
	defer p.wg.Done()
	if p.cfg.Sync == SyncInterval {
		p.intervalSyncLoop()
		return
	}
	var jobs []*syncJob
	for job := range p.syncCh {
		jobs = append(jobs[:0], job)
	drain:
		for {
			select {
			case j, ok := <-p.syncCh:
				if !ok {
					break drain
				}
				jobs = append(jobs, j)
			default:
				break drain
			}
		}
		p.syncJobs(jobs)
	}
}

// syncJobs syncs each run of jobs on one segment once, then acknowledges them.
func (p *Partition) syncJobs(jobs []*syncJob) {
	for i := 0; i < len(jobs); {
		if jobs[i].barrier != nil {
			close(jobs[i].barrier)
			i++
			continue
		}
		j := i
		for j < len(jobs) && jobs[j].barrier == nil && jobs[j].seg == jobs[i].seg {
			j++
		}
		err := p.writable()
		if err == nil {
			if serr := jobs[i].seg.f.Sync(); serr != nil {
				err = p.fail(fmt.Errorf("sync %s: %w", jobs[i].seg.path, serr))
			}
		}
		for _, job := range jobs[i:j] {
			p.publish(job, err)
		}
		i = j
	}
}
