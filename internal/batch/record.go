package batch

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// RecordHeader is one key/value header of a record.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Record is one record to encode, or one decoded record. A decoded record's Key,
// Value and header values alias the batch buffer.
type Record struct {
	Offset    int64 // absolute offset; ignored by the encoder
	Timestamp int64 // milliseconds since the Unix epoch
	Key       []byte
	Value     []byte
	Headers   []RecordHeader
}

func varintLen(v int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutVarint(tmp[:], v)
}

func bytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

// recordBodyLen is the size of a record after its length prefix.
func recordBodyLen(r *Record, tsDelta int64, offDelta int) int {
	n := 1 + varintLen(tsDelta) + varintLen(int64(offDelta)) + bytesLen(r.Key) + bytesLen(r.Value)
	n += varintLen(int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		n += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	return n
}

// EncodedSize returns the size Append will add for recs.
func EncodedSize(recs []Record) int {
	if len(recs) == 0 {
		return 0
	}
	n := HeaderSize
	first := recs[0].Timestamp
	for i := range recs {
		body := recordBodyLen(&recs[i], recs[i].Timestamp-first, i)
		n += varintLen(int64(body)) + body
	}
	return n
}

// Append encodes recs as one batch with base offset 0 and leader epoch 0, appends it
// to dst and returns the extended slice. recs must hold at least one record.
func Append(dst []byte, recs []Record) []byte {
	if len(recs) == 0 {
		panic("batch: Append with no records")
	}
	size := EncodedSize(recs)
	start := len(dst)
	if cap(dst)-start < size {
		grown := make([]byte, start, start+size)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+size]
	b := dst[start:]
	first, maxTS := recs[0].Timestamp, recs[0].Timestamp
	for i := range recs {
		if recs[i].Timestamp > maxTS {
			maxTS = recs[i].Timestamp
		}
	}
	be := binary.BigEndian
	be.PutUint64(b[offBaseOffset:], 0)
	be.PutUint32(b[offLength:], uint32(size-lengthPrefix))
	be.PutUint32(b[offLeaderEpoch:], 0)
	b[offMagic] = Magic
	be.PutUint16(b[offAttributes:], 0)
	be.PutUint32(b[offLastDelta:], uint32(len(recs)-1))
	be.PutUint64(b[offFirstTS:], uint64(first))
	be.PutUint64(b[offMaxTS:], uint64(maxTS))
	be.PutUint64(b[offProducerID:], ^uint64(0))
	be.PutUint16(b[offProducerEp:], ^uint16(0))
	be.PutUint32(b[offBaseSequence:], ^uint32(0))
	be.PutUint32(b[offNumRecords:], uint32(len(recs)))
	p := HeaderSize
	for i := range recs {
		r := &recs[i]
		tsDelta := r.Timestamp - first
		p += binary.PutVarint(b[p:], int64(recordBodyLen(r, tsDelta, i)))
		b[p] = 0
		p++
		p += binary.PutVarint(b[p:], tsDelta)
		p += binary.PutVarint(b[p:], int64(i))
		p = putBytes(b, p, r.Key)
		p = putBytes(b, p, r.Value)
		p += binary.PutVarint(b[p:], int64(len(r.Headers)))
		for j := range r.Headers {
			h := &r.Headers[j]
			p += binary.PutVarint(b[p:], int64(len(h.Key)))
			p += copy(b[p:], h.Key)
			p = putBytes(b, p, h.Value)
		}
	}
	if p != size {
		panic(fmt.Sprintf("batch: encoded %d bytes, computed %d", p, size))
	}
	be.PutUint32(b[offCRC:], crc32.Checksum(b[crcStart:], castagnoli))
	return dst
}

func putBytes(b []byte, p int, v []byte) int {
	if v == nil {
		return p + binary.PutVarint(b[p:], -1)
	}
	p += binary.PutVarint(b[p:], int64(len(v)))
	return p + copy(b[p:], v)
}

// Iter walks the records of one verified batch without allocating. Use it as:
//
//	it, err := batch.NewIter(b)
//	for it.Next() { r := it.Record() ... }
//	if err := it.Err(); err != nil { ... }
type Iter struct {
	h    Header
	b    []byte
	p    int
	i    int32
	rec  Record
	hdrs []RecordHeader
	err  error
}

// NewIter verifies b (header, size and CRC) and returns an iterator over its records.
// Compressed batches are reported as ErrUnsupported.
func NewIter(b []byte) (*Iter, error) {
	it := &Iter{}
	if err := it.Reset(b); err != nil {
		return nil, err
	}
	return it, nil
}

// Reset points the iterator at a new batch, verifying it as NewIter does.
func (it *Iter) Reset(b []byte) error {
	h, err := Verify(b)
	if err != nil {
		return err
	}
	if h.Attributes&AttrCompressionMask != 0 {
		return fmt.Errorf("%w: compression codec %d", ErrUnsupported, h.Attributes&AttrCompressionMask)
	}
	*it = Iter{h: h, b: b, p: HeaderSize, hdrs: it.hdrs[:0]}
	return nil
}

// Header returns the header of the batch.
func (it *Iter) Header() Header { return it.h }

// Next decodes the next record. It returns false at the end of the batch or on a
// decoding error, which Err then reports.
func (it *Iter) Next() bool {
	if it.err != nil {
		return false
	}
	if it.i == it.h.NumRecords {
		if it.p != len(it.b) {
			it.err = fmt.Errorf("%w: %d trailing bytes after %d records", ErrCorrupt, len(it.b)-it.p, it.h.NumRecords)
		}
		return false
	}
	if err := it.decode(); err != nil {
		it.err = fmt.Errorf("%w: record %d: %v", ErrCorrupt, it.i, err)
		return false
	}
	it.i++
	return true
}

// Record returns the record Next decoded. Its slices alias the batch and are valid
// until the next call to Next or Reset.
func (it *Iter) Record() *Record { return &it.rec }

// Err returns the first decoding error.
func (it *Iter) Err() error { return it.err }

type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.p:])
	if n <= 0 {
		r.err = fmt.Errorf("bad varint at byte %d", r.p)
		return 0
	}
	r.p += n
	return v
}

// bytes reads a length-prefixed byte string; -1 means absent.
func (r *reader) bytes(nullable bool) []byte {
	n := r.varint()
	if r.err != nil {
		return nil
	}
	if n == -1 && nullable {
		return nil
	}
	if n < 0 || n > int64(len(r.b)-r.p) {
		r.err = fmt.Errorf("length %d at byte %d exceeds the record", n, r.p)
		return nil
	}
	v := r.b[r.p : r.p+int(n) : r.p+int(n)]
	r.p += int(n)
	return v
}

func (it *Iter) decode() error {
	outer := reader{b: it.b, p: it.p}
	length := outer.varint()
	if outer.err != nil {
		return outer.err
	}
	if length < 1 || length > int64(len(it.b)-outer.p) {
		return fmt.Errorf("length %d exceeds the batch", length)
	}
	end := outer.p + int(length)
	r := reader{b: it.b[:end], p: outer.p}
	if r.p >= end {
		return fmt.Errorf("empty record")
	}
	r.p++ // attributes: unused
	tsDelta := r.varint()
	offDelta := r.varint()
	if r.err == nil && offDelta != int64(it.i) {
		return fmt.Errorf("offset delta %d, want %d", offDelta, it.i)
	}
	key := r.bytes(true)
	val := r.bytes(true)
	nh := r.varint()
	if r.err != nil {
		return r.err
	}
	if nh < 0 || nh > MaxHeaders {
		return fmt.Errorf("header count %d outside [0, %d]", nh, MaxHeaders)
	}
	it.hdrs = it.hdrs[:0]
	for j := int64(0); j < nh; j++ {
		k := r.bytes(false)
		v := r.bytes(true)
		if r.err != nil {
			return r.err
		}
		it.hdrs = append(it.hdrs, RecordHeader{Key: string(k), Value: v})
	}
	if r.p != end {
		return fmt.Errorf("%d unread bytes in the record", end-r.p)
	}
	ts := it.h.FirstTimestamp + tsDelta
	if ts > it.h.MaxTimestamp {
		return fmt.Errorf("timestamp delta %d outside the batch's range", tsDelta)
	}
	it.rec = Record{
		Offset:    it.h.BaseOffset + offDelta,
		Timestamp: ts,
		Key:       key,
		Value:     val,
	}
	if nh > 0 {
		it.rec.Headers = it.hdrs
	}
	it.p = end
	return nil
}

// Each calls fn for every record of the consecutive batches in data, in order,
// until fn returns false. The records alias data (and are valid only until fn
// returns, as Iter's are).
func Each(data []byte, fn func(*Record) bool) error {
	var it Iter
	for len(data) > 0 {
		size, err := PeekSize(data)
		if err != nil {
			return err
		}
		if err := it.Reset(data[:size]); err != nil {
			return err
		}
		for it.Next() {
			if !fn(it.Record()) {
				return nil
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		data = data[size:]
	}
	return nil
}

// EachFrom is Each for batches verified before (logstore's Read returns only
// such): it does not check their CRCs again, passes over the batches that end
// before from, and skips the records before from by their lengths alone. It
// still checks every size and every record it decodes. A consumer taking a few
// records at a time out of a large batch pays for those records, not for the
// batch.
func EachFrom(data []byte, from int64, fn func(*Record) bool) error {
	var it Iter
	for len(data) > 0 {
		size, err := PeekSize(data)
		if err != nil {
			return err
		}
		if size > len(data) {
			return fmt.Errorf("%w: a batch of %d bytes, %d left", ErrShort, size, len(data))
		}
		h, err := ParseHeader(data[:size])
		if err != nil {
			return err
		}
		if h.NextOffset() > from {
			if h.Attributes&AttrCompressionMask != 0 {
				return fmt.Errorf("%w: compression codec %d", ErrUnsupported, h.Attributes&AttrCompressionMask)
			}
			it = Iter{h: h, b: data[:size], p: HeaderSize, hdrs: it.hdrs[:0]}
			if err := it.skip(from - h.BaseOffset); err != nil {
				return err
			}
			for it.Next() {
				if !fn(it.Record()) {
					return nil
				}
			}
			if err := it.Err(); err != nil {
				return err
			}
		}
		data = data[size:]
	}
	return nil
}

// skip passes over the next n records (offset deltas are consecutive, so the
// n-th is the one at BaseOffset+n) reading only their lengths.
func (it *Iter) skip(n int64) error {
	for ; n > 0 && it.i < it.h.NumRecords; n-- {
		length, k := binary.Varint(it.b[it.p:])
		if k <= 0 || length < 1 || length > int64(len(it.b)-it.p-k) {
			return fmt.Errorf("%w: record %d: bad length", ErrCorrupt, it.i)
		}
		it.p += k + int(length)
		it.i++
	}
	return nil
}
