package logstore

import (
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/internal/vfs"
)

// Partition is one durable partition log. It is safe for concurrent use.
type Partition struct {
	cfg Config
	fs  vfs.FS

	mu   sync.RWMutex
	segs []*segment // by base offset; the last is active

	hw       atomic.Int64 // offset after the last visible batch
	failure  atomic.Pointer[error]
	closed   atomic.Bool
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced when hw advances

	// Writer state, owned by the writer goroutine.
	next       int64 // offset the next batch gets
	active     *segment
	wbuf       []byte
	groupBytes int64 // moving average of the bytes written per group

	reqs      chan *appendReq
	syncCh    chan *syncJob
	closing   chan struct{}
	stopped   chan struct{} // closed when the writer and syncer have exited
	closeOnce sync.Once
	wg        sync.WaitGroup
	dirty     atomic.Bool // SyncInterval: written since the last sync
	closeErr  error
	bytes     atomic.Int64 // the segments' sizes, summed
}

// Open opens (recovering if needed) or creates the partition log in cfg.Dir.
func Open(cfg Config) (*Partition, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	p := &Partition{
		cfg:     c,
		fs:      c.FS,
		notify:  make(chan struct{}),
		reqs:    make(chan *appendReq, QueueDepth),
		syncCh:  make(chan *syncJob, 1),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if err := p.recover(); err != nil {
		for _, s := range p.segs {
			s.close()
		}
		return nil, fmt.Errorf("logstore: open %s: %w", c.Dir, err)
	}
	p.active = p.segs[len(p.segs)-1]
	p.next = p.active.next
	p.hw.Store(p.next)
	p.recountBytes()
	p.wg.Add(2)
	go p.writeLoop()
	go p.syncLoop()
	return p, nil
}

func (p *Partition) recover() error {
	dir := p.cfg.Dir
	// MkdirAll may create several levels (a new data directory and the partition's):
	// each new directory's name is durable only once its own parent is synced.
	var created []string
	for d := filepath.Clean(dir); d != filepath.Dir(d) && !p.fs.Exists(d); d = filepath.Dir(d) {
		created = append(created, d)
	}
	if err := p.fs.MkdirAll(dir); err != nil {
		return err
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := p.fs.SyncDir(filepath.Dir(created[i])); err != nil {
			return err
		}
	}
	names, err := p.fs.ReadDir(dir)
	if err != nil {
		return err
	}
	var bases []int64
	for _, n := range names {
		if strings.HasSuffix(n, ".tmp") {
			// An atomic write that did not finish: the old file, if any, is intact.
			if err := p.fs.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
			continue
		}
		if b, ok := parseSegmentName(n); ok {
			bases = append(bases, b) // ReadDir sorts; fixed-width names sort by offset
		}
	}
	if len(bases) == 0 {
		path := segmentName(dir, 0)
		f, err := p.fs.Create(path)
		if err != nil {
			return err
		}
		p.segs = []*segment{newSegment(0, path, f)}
		return p.fs.SyncDir(dir)
	}
	for i, b := range bases {
		var s *segment
		var err error
		if i == len(bases)-1 {
			s, err = p.openActive(b)
		} else {
			s, err = p.openSealed(b)
		}
		if err != nil {
			return err
		}
		if s == nil {
			continue // quarantined
		}
		if n := len(p.segs); n > 0 {
			prev := p.segs[n-1]
			if s.base < prev.next {
				return fmt.Errorf("%w: segment %s starts at offset %d, inside the previous segment (ends at %d)", ErrCorrupt, s.path, s.base, prev.next)
			}
			if s.base > prev.next {
				p.cfg.Logger.Warn("logstore: offsets missing between segments (quarantined data)",
					"dir", dir, "from", prev.next, "to", s.base)
			}
		}
		p.segs = append(p.segs, s)
	}
	return nil
}

// openActive opens the last segment for writing: it verifies every batch, rebuilds
// the in-memory index and finds the end of the data. If only zeros follow the last
// valid batch, that is the clean end and the zeros stay (preallocated space);
// anything else after it is a torn tail, and the file is truncated there, so that no
// stale byte past the end can ever be mistaken for data.
func (p *Partition) openActive(base int64) (*segment, error) {
	path := segmentName(p.cfg.Dir, base)
	f, size, err := openSized(p.fs.OpenWrite, path)
	if err != nil {
		return nil, err
	}
	s := newSegment(base, path, f)
	s.fileSize = size
	sc := newScanner(f, 0, size, base)
	for {
		pos, _, h, err := sc.next()
		if err == errEnd {
			break
		}
		if err != nil {
			zeros, zerr := p.zeroTail(f, pos, size)
			if zerr != nil {
				f.Close()
				return nil, fmt.Errorf("read %s: %w", path, zerr)
			}
			if zeros {
				break
			}
			p.cfg.Logger.Warn("logstore: truncating torn tail of the active segment",
				"segment", path, "position", pos, "dropped_bytes", size-pos, "reason", err)
			if err := f.Truncate(pos); err != nil {
				f.Close()
				return nil, fmt.Errorf("truncate %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, fmt.Errorf("sync %s: %w", path, err)
			}
			s.fileSize = pos
			break
		}
		s.indexBatchLocked(pos, h.BaseOffset, h.NextOffset(), h.MaxTimestamp, p.cfg.IndexIntervalBytes)
		s.size = pos + int64(h.Size())
	}
	// A stale index of this segment (it was sealed once, then the later segments
	// were lost) is dropped; the in-memory one is authoritative.
	if idx := indexName(path); p.fs.Exists(idx) {
		if err := p.fs.Remove(idx); err != nil {
			f.Close()
			return nil, err
		}
	}
	s.visible.Store(s.size)
	return s, nil
}

// openSealed opens a sealed segment read-only. Its index is checked and, if missing
// or damaged, rebuilt from the data. A segment whose data fails verification is
// quarantined and nil is returned.
func (p *Partition) openSealed(base int64) (*segment, error) {
	path := segmentName(p.cfg.Dir, base)
	f, size, err := openSized(p.fs.Open, path)
	if err != nil {
		return nil, err
	}
	s := newSegment(base, path, f)
	if err := p.loadIndex(s, size); err != nil {
		p.cfg.Logger.Warn("logstore: rebuilding segment index", "segment", path, "reason", err)
		if err := p.rebuildIndex(s, size); err != nil {
			if errors.Is(err, ErrCorrupt) {
				f.Close()
				p.cfg.Logger.Error("logstore: sealed segment failed verification; quarantined",
					"segment", path, "reason", err)
				return nil, p.quarantineFiles(path)
			}
			f.Close()
			return nil, err
		}
	}
	s.visible.Store(s.size)
	return s, nil
}

// loadIndex checks the index file of s and scans the data after its last entry to
// learn the end offset and max timestamp.
func (p *Partition) loadIndex(s *segment, size int64) error {
	name := indexName(s.path)
	data, err := p.fs.ReadFile(name)
	if err != nil {
		return err
	}
	if len(data)%entrySize != 0 || len(data) == 0 {
		return fmt.Errorf("index size %d is not a positive multiple of %d", len(data), entrySize)
	}
	n := len(data) / entrySize
	prev := getEntry(data)
	if prev.pos != 0 || prev.rel != 0 {
		return fmt.Errorf("first index entry %+v does not point at the segment start", prev)
	}
	for i := 1; i < n; i++ {
		e := getEntry(data[i*entrySize:])
		if e.rel <= prev.rel || e.pos <= prev.pos || e.maxTSPrev < prev.maxTSPrev {
			return fmt.Errorf("index entry %d (%+v) out of order after %+v", i, e, prev)
		}
		prev = e
	}
	if int64(prev.pos) >= size {
		return fmt.Errorf("last index entry at %d beyond the segment's %d bytes", prev.pos, size)
	}
	s.maxTS, s.size, s.lastIx = prev.maxTSPrev, size, int64(prev.pos)
	sc := newScanner(s.f, int64(prev.pos), size, s.base+int64(prev.rel))
	for {
		pos, _, h, err := sc.next()
		if err == errEnd {
			break
		}
		if err != nil {
			return fmt.Errorf("scan after the last index entry: %w", err)
		}
		s.indexBatchLocked(pos, h.BaseOffset, h.NextOffset(), h.MaxTimestamp, math.MaxInt64)
	}
	f, err := p.fs.Open(name)
	if err != nil {
		return err
	}
	s.idx, s.idxFile, s.idxN = nil, f, n
	return nil
}

// rebuildIndex scans the whole segment, verifying every batch, and writes its index.
func (p *Partition) rebuildIndex(s *segment, size int64) error {
	s.idx, s.lastIx, s.next, s.maxTS, s.size = nil, -1, s.base, math.MinInt64, 0
	sc := newScanner(s.f, 0, size, s.base)
	for {
		pos, _, h, err := sc.next()
		if err == errEnd {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %s at position %d: %v", ErrCorrupt, s.path, pos, err)
		}
		s.indexBatchLocked(pos, h.BaseOffset, h.NextOffset(), h.MaxTimestamp, p.cfg.IndexIntervalBytes)
		s.size = pos + int64(h.Size())
	}
	if s.size == 0 {
		return fmt.Errorf("%w: sealed segment %s is empty", ErrCorrupt, s.path)
	}
	return s.sealIndex(p.fs)
}

// quarantineFiles renames a segment to .bad and removes its index, so that it is
// never read again but stays for inspection.
func (p *Partition) quarantineFiles(path string) error {
	if err := p.fs.Rename(path, path+badSuffix); err != nil {
		return err
	}
	if idx := indexName(path); p.fs.Exists(idx) {
		if err := p.fs.Remove(idx); err != nil {
			return err
		}
	}
	return p.fs.SyncDir(p.cfg.Dir)
}

// zeroTail reports whether bytes [from, to) of f are all zero.
func (p *Partition) zeroTail(f vfs.File, from, to int64) (bool, error) {
	if p.cfg.zeroLengthEnds {
		// The mutant: a zero length field is taken for the end, whatever follows.
		var field [batchLengthField]byte
		n, _ := f.ReadAt(field[:], from)
		return n == len(field) && field == [batchLengthField]byte{}, nil
	}
	buf := make([]byte, min(to-from, scanWindow))
	for pos := from; pos < to; {
		b := buf[:min(to-pos, int64(len(buf)))]
		if n, err := f.ReadAt(b, pos); n < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
		for _, c := range b {
			if c != 0 {
				return false, nil
			}
		}
		pos += int64(len(b))
	}
	return true, nil
}

// openSized opens path with open and returns the file and its size.
func openSized(open func(string) (vfs.File, error), path string) (vfs.File, int64, error) {
	f, err := open(path)
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}
