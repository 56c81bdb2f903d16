package logstore

import (
	"errors"
	"fmt"
	"io"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// scanWindow is how much a scan reads at once.
const scanWindow = 1 << 20

// scanner walks the batches of a segment file from a position, verifying each one
// (header, size, CRC) and the continuity of offsets.
type scanner struct {
	f      vfs.File
	buf    []byte
	bufPos int64 // file position of buf[0]
	pos    int64 // position of the next batch
	limit  int64 // bytes of the file that may be read
	expect int64 // base offset the next batch must have
}

// errEnd is returned by next at a clean end of the readable bytes.
var errEnd = errors.New("end of segment")

func newScanner(f vfs.File, pos, limit, expectBase int64) *scanner {
	return &scanner{f: f, pos: pos, limit: limit, expect: expectBase}
}

// fill makes sure buf holds [pos, pos+n) of the file, reading a window.
func (s *scanner) fill(n int64) error {
	if s.pos >= s.bufPos && s.pos+n <= s.bufPos+int64(len(s.buf)) {
		return nil
	}
	want := max(n, scanWindow)
	want = min(want, s.limit-s.pos)
	if want < n {
		return io.ErrUnexpectedEOF
	}
	if int64(cap(s.buf)) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	got, err := s.f.ReadAt(s.buf, s.pos)
	if int64(got) < want {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.buf = s.buf[:0]
		return err
	}
	s.bufPos = s.pos
	return nil
}

// next returns the next verified batch and its position. The bytes alias an
// internal buffer valid until the next call. It returns errEnd at a clean end, and
// another error (wrapping batch errors or io.ErrUnexpectedEOF) at an invalid batch,
// whose position is then s.pos.
func (s *scanner) next() (pos int64, b []byte, h batch.Header, err error) {
	if s.pos == s.limit {
		return s.pos, nil, h, errEnd
	}
	if err := s.fill(min(12, s.limit-s.pos)); err != nil {
		return s.pos, nil, h, err
	}
	off := s.pos - s.bufPos
	size, err := batch.PeekSize(s.buf[off:])
	if err != nil {
		return s.pos, nil, h, err
	}
	if err := s.fill(int64(size)); err != nil {
		return s.pos, nil, h, fmt.Errorf("batch of %d bytes at %d: %w", size, s.pos, err)
	}
	off = s.pos - s.bufPos
	b = s.buf[off : off+int64(size)]
	h, err = batch.Verify(b)
	if err != nil {
		return s.pos, nil, h, err
	}
	if h.BaseOffset != s.expect {
		return s.pos, nil, h, fmt.Errorf("%w: batch at %d has base offset %d, want %d", batch.ErrCorrupt, s.pos, h.BaseOffset, s.expect)
	}
	pos = s.pos
	s.pos += int64(size)
	s.expect = h.NextOffset()
	return pos, b, h, nil
}
