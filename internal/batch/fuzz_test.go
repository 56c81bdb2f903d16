package batch

import (
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder. It must never panic, must fail
// only with the package's sentinels, and whatever it accepts must be a faithful
// batch: the decoded records, encoded again by Append, decode to the same records.
//
// The seed corpus in testdata/fuzz/FuzzDecode holds valid batches (headers, nil and
// empty fields, negative timestamp deltas) and damaged ones (flipped CRC, record
// count off by one behind a fixed CRC, truncated). Run with:
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 20s ./internal/batch
func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, []Record{{Timestamp: 1, Key: []byte("k"), Value: []byte("v")}}))
	f.Add(Append(nil, manyRecords(20)))
	f.Fuzz(func(t *testing.T, data []byte) {
		it, err := NewIter(data)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("NewIter error %v wraps no package sentinel", err)
			}
			return
		}
		h := it.Header()
		if h.Size() != len(data) {
			t.Fatalf("accepted %d bytes as a batch of %d", len(data), h.Size())
		}
		var recs []Record
		for it.Next() {
			r := it.Record()
			if r.Offset != h.BaseOffset+int64(len(recs)) {
				t.Fatalf("record %d has offset %d, base %d", len(recs), r.Offset, h.BaseOffset)
			}
			if r.Timestamp > h.MaxTimestamp {
				t.Fatalf("record %d timestamp %d above the batch max %d", len(recs), r.Timestamp, h.MaxTimestamp)
			}
			if len(r.Headers) > MaxHeaders {
				t.Fatalf("record %d has %d headers", len(recs), len(r.Headers))
			}
			recs = append(recs, cloneRecord(r))
		}
		if err := it.Err(); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("iteration error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(recs) != int(h.NumRecords) {
			t.Fatalf("iterated %d records of %d", len(recs), h.NumRecords)
		}
		again := Append(nil, recs)
		if len(again) != EncodedSize(recs) {
			t.Fatalf("re-encoded %d bytes, EncodedSize %d", len(again), EncodedSize(recs))
		}
		SetBaseOffset(again, h.BaseOffset)
		_, got, err := decodeAll(again)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		for i := range recs {
			if d := diffRecord(got[i], recs[i]); d != "" {
				t.Fatalf("record %d after re-encoding: %s", i, d)
			}
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrShort, ErrCorrupt, ErrCRC, ErrUnsupported} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
