package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/sluicemq/sluice"
)

// producedBatch is one record batch of a Produce request, decoded.
type producedBatch struct {
	producerID    int64
	producerEpoch int16
	baseSequence  int32
	transactional bool
	msgs          []sluice.Message
}

var (
	crc32c = crc32.MakeTable(crc32.Castagnoli)
	// errCorrupt is a batch that fails its checks: CORRUPT_MESSAGE.
	errCorrupt = errors.New("kafka: corrupt record batch")
	// errMagic is a batch of the old message formats: v0 and v1 are not
	// accepted (clients since Kafka 0.11 write v2).
	errMagic = errors.New("kafka: record batch magic is not 2")
)

// batchHeaderBytes is the fixed part of a RecordBatch v2 before its records.
const batchHeaderBytes = 61

// decodeBatches decodes the record batches of one partition of a Produce
// request into messages for partition p. Each batch is checked: its length,
// magic 2, its CRC-32C, its record count; compressed ones are decompressed
// within MaxDecompressedBytes.
func decodeBatches(data []byte, p int, now time.Time) ([]producedBatch, error) {
	var out []producedBatch
	for len(data) > 0 {
		if len(data) < batchHeaderBytes {
			return nil, fmt.Errorf("%w: %d bytes left, shorter than a batch header", errCorrupt, len(data))
		}
		length := int64(int32(binary.BigEndian.Uint32(data[8:])))
		if length < batchHeaderBytes-12 || length > int64(len(data)-12) {
			return nil, fmt.Errorf("%w: batch length %d with %d bytes left", errCorrupt, length, len(data)-12)
		}
		b := data[:12+length]
		data = data[12+length:]
		if b[16] != 2 {
			return nil, errMagic
		}
		if crc := binary.BigEndian.Uint32(b[17:]); crc32.Checksum(b[21:], crc32c) != crc {
			return nil, fmt.Errorf("%w: CRC-32C mismatch", errCorrupt)
		}
		attrs := int16(binary.BigEndian.Uint16(b[21:]))
		if attrs&0x20 != 0 {
			return nil, fmt.Errorf("%w: a control batch in a produce", errCorrupt)
		}
		firstTS := int64(binary.BigEndian.Uint64(b[27:]))
		pb := producedBatch{
			producerID:    int64(binary.BigEndian.Uint64(b[43:])),
			producerEpoch: int16(binary.BigEndian.Uint16(b[51:])),
			baseSequence:  int32(binary.BigEndian.Uint32(b[53:])),
			transactional: attrs&0x10 != 0,
		}
		n := int32(binary.BigEndian.Uint32(b[57:]))
		if n < 0 || int(n) > sluice.MaxBatchMessages {
			return nil, fmt.Errorf("%w: %d records, limit %d", errCorrupt, n, sluice.MaxBatchMessages)
		}
		recs, err := decompress(attrs&7, b[batchHeaderBytes:])
		if err != nil {
			return nil, err
		}
		pb.msgs = make([]sluice.Message, 0, n)
		for i := int32(0); i < n; i++ {
			var m sluice.Message
			if recs, err = decodeRecord(recs, &m, firstTS, now); err != nil {
				return nil, fmt.Errorf("%w: record %d: %v", errCorrupt, i, err)
			}
			part := p
			m.Partition = &part
			pb.msgs = append(pb.msgs, m)
		}
		if len(recs) != 0 {
			return nil, fmt.Errorf("%w: %d bytes after the last record", errCorrupt, len(recs))
		}
		out = append(out, pb)
	}
	return out, nil
}

// decodeRecord decodes one record into m and returns what follows it. It is
// not internal/batch's Iter, which reads sluice's own batches and holds them
// to what sluice writes (offset deltas 0, 1, 2..., timestamps within the
// batch's maximum, a record count of at least one); a producer's batch is
// taken as Kafka takes it, and its offsets and times are the log's to give.
func decodeRecord(b []byte, m *sluice.Message, firstTS int64, now time.Time) ([]byte, error) {
	length, n := binary.Varint(b)
	if n <= 0 || length < 0 || length > int64(len(b)-n) {
		return nil, errors.New("bad length")
	}
	r := reader{b: b[n : n+int(length)]}
	rest := b[n+int(length):]
	r.i8() // attributes: unused
	tsDelta := r.varint()
	r.varint() // offset delta: the log assigns offsets
	m.Key = r.bytes()
	m.Body = r.bytes()
	hn := r.varint()
	if hn < 0 || hn > int64(len(r.b)) {
		return nil, fmt.Errorf("%d headers", hn)
	}
	for i := int64(0); i < hn && r.err == nil; i++ {
		k := r.bytes()
		v := r.bytes()
		if k == nil {
			return nil, errors.New("a header with a null key")
		}
		m.Headers = append(m.Headers, sluice.Header{Key: string(k), Value: v})
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes left in the record", len(r.b))
	}
	if ts := firstTS + tsDelta; firstTS >= 0 && ts > 0 {
		m.Time = time.UnixMilli(ts)
	} else {
		m.Time = now
	}
	return rest, nil
}

// reader reads the fields of a record; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) i8() {
	if r.err == nil && len(r.b) < 1 {
		r.err = errors.New("cut short")
	}
	if r.err == nil {
		r.b = r.b[1:]
	}
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a varint-length byte string; -1 is null.
func (r *reader) bytes() []byte {
	n := r.varint()
	if r.err != nil || n == -1 {
		return nil
	}
	if n < 0 || n > int64(len(r.b)) {
		r.err = fmt.Errorf("length %d past the end", n)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	if out == nil {
		out = []byte{}
	}
	return out
}
