// Package dedupesnap encodes and decodes the snapshot of a stream's dedupe index
// (the file dedupe.snap in the stream's directory): a cache that shortens the
// rebuild of the index after a restart; the index's durable record is the
// idempotency-key header of each message.
//
// Format, little-endian: "SLDD", version u32 (1), partitions u32, then per
// partition the offset it covers (i64: every keyed message before it is in the
// snapshot), entry count u64, entries (hash u64, ref u64, ms i64), and a CRC-32C
// of everything before it. A ref is partition << RefOffsetBits | offset.
package dedupesnap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Entry is one accepted idempotency key: its hash, the position of its message
// (a ref), and the message's time in unix ms.
type Entry struct {
	Hash, Ref uint64
	Ms        int64
}

// RefOffsetBits is the width of a ref's offset; the partition is above it.
const RefOffsetBits = 53

// Limits a decoded snapshot must be within.
type Limits struct {
	Partitions int // the most partitions
	Entries    int // the most entries
}

const (
	magic     = "SLDD"
	version   = 1
	entrySize = 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBad is matched by every decoding error.
var ErrBad = errors.New("bad dedupe snapshot")

// Encode returns the snapshot of covered offsets and entries.
func Encode(covered []int64, entries []Entry) []byte {
	b := make([]byte, 0, 16+8*len(covered)+8+entrySize*len(entries)+4)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(covered)))
	for _, c := range covered {
		b = binary.LittleEndian.AppendUint64(b, uint64(c))
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint64(b, e.Hash)
		b = binary.LittleEndian.AppendUint64(b, e.Ref)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Ms))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Decode checks and decodes a snapshot. Every entry's partition is one of the
// snapshot's, and every offset fits a ref.
func Decode(b []byte, lim Limits) (covered []int64, entries []Entry, err error) {
	bad := func(why string) ([]int64, []Entry, error) {
		return nil, nil, fmt.Errorf("%w: %s", ErrBad, why)
	}
	if len(b) < 16+4 || !bytes.Equal(b[:4], []byte(magic)) {
		return bad("no header")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return bad("checksum")
	}
	if v := binary.LittleEndian.Uint32(body[4:]); v != version {
		return bad(fmt.Sprintf("version %d", v))
	}
	n := binary.LittleEndian.Uint32(body[8:])
	if int64(n) > int64(lim.Partitions) {
		return bad(fmt.Sprintf("%d partitions", n))
	}
	rest := body[12:]
	if len(rest) < 8*int(n)+8 {
		return bad("short")
	}
	covered = make([]int64, n)
	for i := range covered {
		covered[i] = int64(binary.LittleEndian.Uint64(rest[8*i:]))
		if covered[i] < 0 || covered[i] >= 1<<RefOffsetBits {
			return bad("offset out of range")
		}
	}
	rest = rest[8*n:]
	count := binary.LittleEndian.Uint64(rest)
	rest = rest[8:]
	if count > uint64(lim.Entries) || uint64(len(rest)) != count*entrySize {
		return bad("entry count")
	}
	entries = make([]Entry, count)
	for i := range entries {
		e := rest[entrySize*i:]
		entries[i] = Entry{Hash: binary.LittleEndian.Uint64(e), Ref: binary.LittleEndian.Uint64(e[8:]), Ms: int64(binary.LittleEndian.Uint64(e[16:]))}
		if p := entries[i].Ref >> RefOffsetBits; p >= uint64(n) {
			return bad("entry partition")
		}
	}
	return covered, entries, nil
}
