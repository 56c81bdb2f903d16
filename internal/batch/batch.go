package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Layout constants of the batch header.
const (
	HeaderSize = 61 // bytes before the first record
	Magic      = 2  // the only supported format version

	// lengthPrefix is the number of bytes not counted by batchLength.
	lengthPrefix = 12
	crcStart     = 21

	offBaseOffset   = 0
	offLength       = 8
	offLeaderEpoch  = 12
	offMagic        = 16
	offCRC          = 17
	offAttributes   = 21
	offLastDelta    = 23
	offFirstTS      = 27
	offMaxTS        = 35
	offProducerID   = 43
	offProducerEp   = 51
	offBaseSequence = 53
	offNumRecords   = 57
)

// Limits on what a decoder accepts. They bound the memory any input can make the
// decoder use; the broker's own limits (message size, header count) are stricter.
const (
	// MaxBatchBytes is the largest batch, header included.
	MaxBatchBytes = 64 << 20
	// MaxRecords is the most records one batch may hold.
	MaxRecords = 1 << 20
	// MaxHeaders is the most headers one record may hold.
	MaxHeaders = 1024
)

// Attribute bits.
const (
	AttrCompressionMask = 0x07
	AttrControl         = 0x20
)

// Errors returned by the decoder. Each is wrapped with the detail of the failure.
var (
	ErrShort       = errors.New("batch: truncated")
	ErrCorrupt     = errors.New("batch: corrupt")
	ErrCRC         = errors.New("batch: crc mismatch")
	ErrUnsupported = errors.New("batch: unsupported")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the decoded fixed part of a batch.
type Header struct {
	BaseOffset      int64
	Length          int32 // batchLength: bytes after the length field
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// Size is the total size of the batch in bytes.
func (h Header) Size() int { return lengthPrefix + int(h.Length) }

// NextOffset is the offset just after the last record of the batch.
func (h Header) NextOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) + 1 }

// PeekSize reads the total size of the batch that starts at b from its length field
// alone. It checks the length against HeaderSize and MaxBatchBytes.
func PeekSize(b []byte) (int, error) {
	if len(b) < lengthPrefix {
		return 0, fmt.Errorf("%w: %d bytes, need %d for the length", ErrShort, len(b), lengthPrefix)
	}
	n := int64(int32(binary.BigEndian.Uint32(b[offLength:]))) + lengthPrefix
	if n < HeaderSize || n > MaxBatchBytes {
		return 0, fmt.Errorf("%w: batch size %d outside [%d, %d]", ErrCorrupt, n, HeaderSize, MaxBatchBytes)
	}
	return int(n), nil
}

// ParseHeader decodes the fixed header at the start of b and checks that its
// fields are consistent. It does not check the CRC; Verify does.
func ParseHeader(b []byte) (Header, error) {
	size, err := PeekSize(b)
	if err != nil {
		return Header{}, err
	}
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d for the header", ErrShort, len(b), HeaderSize)
	}
	be := binary.BigEndian
	h := Header{
		BaseOffset:      int64(be.Uint64(b[offBaseOffset:])),
		Length:          int32(size - lengthPrefix),
		LeaderEpoch:     int32(be.Uint32(b[offLeaderEpoch:])),
		Magic:           int8(b[offMagic]),
		CRC:             be.Uint32(b[offCRC:]),
		Attributes:      int16(be.Uint16(b[offAttributes:])),
		LastOffsetDelta: int32(be.Uint32(b[offLastDelta:])),
		FirstTimestamp:  int64(be.Uint64(b[offFirstTS:])),
		MaxTimestamp:    int64(be.Uint64(b[offMaxTS:])),
		ProducerID:      int64(be.Uint64(b[offProducerID:])),
		ProducerEpoch:   int16(be.Uint16(b[offProducerEp:])),
		BaseSequence:    int32(be.Uint32(b[offBaseSequence:])),
		NumRecords:      int32(be.Uint32(b[offNumRecords:])),
	}
	switch {
	case h.Magic != Magic:
		return h, fmt.Errorf("%w: magic %d, want %d", ErrUnsupported, h.Magic, Magic)
	case h.BaseOffset < 0:
		return h, fmt.Errorf("%w: negative base offset %d", ErrCorrupt, h.BaseOffset)
	case h.NumRecords < 1 || h.NumRecords > MaxRecords:
		return h, fmt.Errorf("%w: record count %d outside [1, %d]", ErrCorrupt, h.NumRecords, MaxRecords)
	case h.LastOffsetDelta != h.NumRecords-1:
		return h, fmt.Errorf("%w: last offset delta %d with %d records", ErrCorrupt, h.LastOffsetDelta, h.NumRecords)
	case h.MaxTimestamp < h.FirstTimestamp:
		return h, fmt.Errorf("%w: max timestamp %d before first timestamp %d", ErrCorrupt, h.MaxTimestamp, h.FirstTimestamp)
	}
	return h, nil
}

// Verify checks that b holds exactly one whole batch with a valid header and CRC,
// and returns its header. It does not decode the records; Iter does.
func Verify(b []byte) (Header, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	if len(b) != h.Size() {
		if len(b) < h.Size() {
			return h, fmt.Errorf("%w: have %d of %d bytes", ErrShort, len(b), h.Size())
		}
		return h, fmt.Errorf("%w: %d bytes for a batch of %d", ErrCorrupt, len(b), h.Size())
	}
	if got := crc32.Checksum(b[crcStart:], castagnoli); got != h.CRC {
		return h, fmt.Errorf("%w: stored %#08x, computed %#08x", ErrCRC, h.CRC, got)
	}
	return h, nil
}

// SetBaseOffset patches the base offset of the encoded batch b. The CRC does not
// cover it, so the batch stays valid.
func SetBaseOffset(b []byte, off int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(off))
}

// SetLeaderEpoch patches the leader epoch of the encoded batch b.
func SetLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}
