package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// MaxDecompressedBytes bounds what one produced record batch may decompress
// to: a few kilobytes of zstd or gzip can claim gigabytes, so the bound is
// checked while decompressing, never trusted from a header.
const MaxDecompressedBytes = 64 << 20

// Compression codecs, the low three bits of a batch's attributes.
const (
	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLz4    = 3
	codecZstd   = 4
)

var errTooLarge = fmt.Errorf("kafka: a record batch decompresses to more than MaxDecompressedBytes=%d", MaxDecompressedBytes)

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecompressedBytes+1))
	if err != nil {
		panic(err) // the options are constant
	}
	return d
}}

// decompress returns the records of a batch's compressed payload.
func decompress(codec int16, src []byte) ([]byte, error) {
	switch codec {
	case codecNone:
		return src, nil
	case codecGzip:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("kafka: gzip: %w", err)
		}
		return readBounded(zr)
	case codecSnappy:
		return unsnappy(src)
	case codecLz4:
		return readBounded(lz4.NewReader(bytes.NewReader(src)))
	case codecZstd:
		d := zstdDecoders.Get().(*zstd.Decoder)
		defer zstdDecoders.Put(d)
		if err := d.Reset(bytes.NewReader(src)); err != nil {
			return nil, fmt.Errorf("kafka: zstd: %w", err)
		}
		return readBounded(d)
	}
	return nil, fmt.Errorf("kafka: compression codec %d is not one of none, gzip, snappy, lz4, zstd", codec)
}

// readBounded reads r to its end, refusing more than MaxDecompressedBytes.
func readBounded(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, MaxDecompressedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("kafka: decompress: %w", err)
	}
	if n > MaxDecompressedBytes {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// xerialHeader starts snappy data in the framing the Java client writes.
var xerialHeader = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// unsnappy decodes raw snappy, or xerial-framed chunks of it.
func unsnappy(src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialHeader) {
		return snappyBlock(nil, src)
	}
	if len(src) < 16 {
		return nil, errors.New("kafka: snappy: xerial header cut short")
	}
	src = src[16:] // header and two version words
	var out []byte
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("kafka: snappy: xerial chunk length cut short")
		}
		n := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(n) > uint64(len(src)) {
			return nil, errors.New("kafka: snappy: xerial chunk past the end")
		}
		var err error
		if out, err = snappyBlock(out, src[:n]); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return out, nil
}

// snappyBlock appends one decoded snappy block to dst, within the bound.
func snappyBlock(dst, src []byte) ([]byte, error) {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("kafka: snappy: %w", err)
	}
	if len(dst)+n > MaxDecompressedBytes {
		return nil, errTooLarge
	}
	block, err := snappy.Decode(nil, src)
	if err != nil {
		return nil, fmt.Errorf("kafka: snappy: %w", err)
	}
	return append(dst, block...), nil
}
