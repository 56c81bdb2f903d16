package batch

import (
	"bytes"
	"fmt"
	"testing"
)

// benchShapes are the batch shapes of the encode and decode benchmarks: a
// single-message publish and a batched one, with small and 1 KiB values.
var benchShapes = []struct{ records, valueBytes int }{
	{1, 100}, {1, 1024}, {100, 100}, {100, 1024},
}

func benchRecords(n, size int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{
			Timestamp: 1_700_000_000_000 + int64(i),
			Key:       []byte(fmt.Sprintf("key-%06d", i)),
			Value:     bytes.Repeat([]byte{'x'}, size),
			Headers:   []RecordHeader{{Key: "content-type", Value: []byte("text/plain")}},
		}
	}
	return recs
}

// BenchmarkAppend measures encoding (with the CRC). Bytes/s counts encoded bytes.
//
//	go test -run '^$' -bench . -benchmem ./internal/batch
func BenchmarkAppend(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("records=%d/value=%dB", s.records, s.valueBytes), func(b *testing.B) {
			recs := benchRecords(s.records, s.valueBytes)
			buf := make([]byte, 0, EncodedSize(recs))
			b.SetBytes(int64(EncodedSize(recs)))
			b.ReportAllocs()
			for b.Loop() {
				buf = Append(buf[:0], recs)
			}
		})
	}
}

// BenchmarkIter measures verification (CRC) plus decoding of every record.
func BenchmarkIter(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("records=%d/value=%dB", s.records, s.valueBytes), func(b *testing.B) {
			data := Append(nil, benchRecords(s.records, s.valueBytes))
			var it Iter
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := it.Reset(data); err != nil {
					b.Fatal(err)
				}
				n := 0
				for it.Next() {
					n++
				}
				if it.Err() != nil || n != s.records {
					b.Fatalf("decoded %d records: %v", n, it.Err())
				}
			}
		})
	}
}
