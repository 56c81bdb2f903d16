package logstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/internal/vfs"
)

const (
	logSuffix   = ".log"
	indexSuffix = ".index"
	badSuffix   = ".bad"
	entrySize   = 16
	nameDigits  = 20
)

// indexEntry locates a batch inside a segment.
type indexEntry struct {
	rel       uint32 // base offset - segment base
	pos       uint32 // byte position
	maxTSPrev int64  // largest batch max timestamp before pos
}

func (e indexEntry) put(b []byte) {
	binary.BigEndian.PutUint32(b[0:], e.rel)
	binary.BigEndian.PutUint32(b[4:], e.pos)
	binary.BigEndian.PutUint64(b[8:], uint64(e.maxTSPrev))
}

func getEntry(b []byte) indexEntry {
	return indexEntry{
		rel:       binary.BigEndian.Uint32(b[0:]),
		pos:       binary.BigEndian.Uint32(b[4:]),
		maxTSPrev: int64(binary.BigEndian.Uint64(b[8:])),
	}
}

// segment is one log file and its index.
type segment struct {
	base int64
	path string // the .log file
	f    vfs.File

	// visible is the number of bytes readers may read: whole batches that are
	// durable (or written, under the lazier sync policies).
	visible atomic.Int64

	// fileSize is the length of the file, which the writer owns: the active
	// segment's file may extend past size, and [size, fileSize) then holds zeros
	// (preallocation; see prezero). A sealed segment's file is truncated to size.
	fileSize int64

	mu     sync.Mutex
	size   int64 // bytes written; == visible once the segment is sealed
	next   int64 // offset after the last batch written
	maxTS  int64 // largest batch max timestamp; math.MinInt64 when empty
	idx    []indexEntry
	lastIx int64 // position of the last index entry, -1 when none

	// A sealed segment's index is searched in its file.
	idxFile vfs.File
	idxN    int
}

func segmentName(dir string, base int64) string {
	return filepath.Join(dir, fmt.Sprintf("%0*d%s", nameDigits, base, logSuffix))
}

func indexName(logPath string) string {
	return strings.TrimSuffix(logPath, logSuffix) + indexSuffix
}

// parseSegmentName returns the base offset of a segment file name.
func parseSegmentName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, logSuffix)
	if !ok || len(s) != nameDigits {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func newSegment(base int64, path string, f vfs.File) *segment {
	return &segment{base: base, path: path, f: f, next: base, maxTS: math.MinInt64, lastIx: -1}
}

// indexBatchLocked records a batch at pos: an index entry if one is due, the end
// offset and the max timestamp. It does not change size. Lock held: s.mu (or the
// segment is not shared yet).
func (s *segment) indexBatchLocked(pos int64, base, next, maxTS int64, interval int64) {
	if s.lastIx < 0 || pos-s.lastIx >= interval {
		s.idx = append(s.idx, indexEntry{rel: uint32(base - s.base), pos: uint32(pos), maxTSPrev: s.maxTS})
		s.lastIx = pos
	}
	s.next = next
	if maxTS > s.maxTS {
		s.maxTS = maxTS
	}
}

// lookupByOffset returns the position and base offset of the indexed batch at or
// before the one holding off.
func (s *segment) lookupByOffset(off int64) (pos, base int64, err error) {
	rel := off - s.base
	return s.search(func(e indexEntry) bool { return int64(e.rel) > rel })
}

// lookupByTime returns the position and base offset of an indexed batch such that
// every batch before it has max timestamp below ts.
func (s *segment) lookupByTime(ts int64) (pos, base int64, err error) {
	return s.search(func(e indexEntry) bool { return e.maxTSPrev >= ts })
}

// search returns the position and base offset of the last index entry for which past
// is false, or the start of the segment. past must be monotonic over the entries.
func (s *segment) search(past func(indexEntry) bool) (pos, base int64, err error) {
	s.mu.Lock()
	if s.idxFile == nil {
		i := sort.Search(len(s.idx), func(i int) bool { return past(s.idx[i]) })
		var e indexEntry
		if i > 0 {
			e = s.idx[i-1]
		}
		s.mu.Unlock()
		return int64(e.pos), s.base + int64(e.rel), nil
	}
	f, n := s.idxFile, s.idxN
	s.mu.Unlock()
	var buf [entrySize]byte
	var rerr error
	i := sort.Search(n, func(i int) bool {
		if rerr != nil {
			return true
		}
		if _, err := f.ReadAt(buf[:], int64(i)*entrySize); err != nil {
			rerr = err
			return true
		}
		return past(getEntry(buf[:]))
	})
	if rerr != nil {
		return 0, 0, fmt.Errorf("read index of %s: %w", s.path, rerr)
	}
	if i == 0 {
		return 0, s.base, nil
	}
	if _, err := f.ReadAt(buf[:], int64(i-1)*entrySize); err != nil {
		return 0, 0, fmt.Errorf("read index of %s: %w", s.path, err)
	}
	e := getEntry(buf[:])
	return int64(e.pos), s.base + int64(e.rel), nil
}

// encodeIndex serializes the in-memory index.
func encodeIndex(idx []indexEntry) []byte {
	b := make([]byte, len(idx)*entrySize)
	for i, e := range idx {
		e.put(b[i*entrySize:])
	}
	return b
}

// sealIndex writes the in-memory index to its file atomically and switches lookups
// to the file, freeing the memory.
func (s *segment) sealIndex(fsys vfs.FS) error {
	s.mu.Lock()
	data := encodeIndex(s.idx)
	s.mu.Unlock()
	name := indexName(s.path)
	if err := vfs.WriteFileAtomic(fsys, name, data); err != nil {
		return fmt.Errorf("write index %s: %w", name, err)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return fmt.Errorf("open index %s: %w", name, err)
	}
	s.mu.Lock()
	s.idxFile, s.idxN, s.idx = f, len(data)/entrySize, nil
	s.mu.Unlock()
	return nil
}

func (s *segment) close() error {
	err := s.f.Close()
	if s.idxFile != nil {
		if cerr := s.idxFile.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
