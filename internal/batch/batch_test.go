package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// decodeAll verifies b and returns deep copies of its records, so that they stay
// valid after the iterator moves on.
func decodeAll(b []byte) (Header, []Record, error) {
	it, err := NewIter(b)
	if err != nil {
		return Header{}, nil, err
	}
	var out []Record
	for it.Next() {
		out = append(out, cloneRecord(it.Record()))
	}
	return it.Header(), out, it.Err()
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func cloneRecord(r *Record) Record {
	c := Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: cloneBytes(r.Key), Value: cloneBytes(r.Value)}
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, RecordHeader{Key: h.Key, Value: cloneBytes(h.Value)})
	}
	return c
}

// sameBytes is bytes.Equal that also tells a nil slice from an empty one, which the
// format keeps apart (length -1 versus 0).
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// diffRecord describes how got differs from want, or returns "" when they match.
// Offsets are compared as given; an empty Headers slice equals nil.
func diffRecord(got, want Record) string {
	switch {
	case got.Offset != want.Offset:
		return fmt.Sprintf("offset %d, want %d", got.Offset, want.Offset)
	case got.Timestamp != want.Timestamp:
		return fmt.Sprintf("timestamp %d, want %d", got.Timestamp, want.Timestamp)
	case !sameBytes(got.Key, want.Key):
		return fmt.Sprintf("key %q (nil %v), want %q (nil %v)", got.Key, got.Key == nil, want.Key, want.Key == nil)
	case !sameBytes(got.Value, want.Value):
		return fmt.Sprintf("value %q (nil %v), want %q (nil %v)", got.Value, got.Value == nil, want.Value, want.Value == nil)
	case len(got.Headers) != len(want.Headers):
		return fmt.Sprintf("%d headers, want %d", len(got.Headers), len(want.Headers))
	}
	for i := range got.Headers {
		g, w := got.Headers[i], want.Headers[i]
		if g.Key != w.Key || !sameBytes(g.Value, w.Value) {
			return fmt.Sprintf("header %d = %q:%q (nil %v), want %q:%q (nil %v)", i, g.Key, g.Value, g.Value == nil, w.Key, w.Value, w.Value == nil)
		}
	}
	return ""
}

func manyRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{
			Timestamp: 1_700_000_000_000 + int64(i%7)*1000 - int64(i%3)*5000,
			Key:       []byte(fmt.Sprintf("key-%d", i)),
			Value:     bytes.Repeat([]byte{byte(i)}, i%300),
		}
		if i%5 == 0 {
			recs[i].Headers = []RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}}
		}
	}
	return recs
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<13) // 128 KiB: multi-byte varints
	tests := []struct {
		name string
		recs []Record
	}{
		{"nil key and value", []Record{{Timestamp: 1}}},
		{"empty key and value", []Record{{Timestamp: 1, Key: []byte{}, Value: []byte{}}}},
		{"nil key, empty value", []Record{{Key: nil, Value: []byte{}}}},
		{"empty key, nil value", []Record{{Key: []byte{}, Value: nil}}},
		{"key and value", []Record{{Timestamp: 1_700_000_000_000, Key: []byte("k"), Value: []byte("v")}}},
		{"large value", []Record{{Timestamp: 5, Value: big}, {Timestamp: 6, Key: big[:300]}}},
		{"headers", []Record{{
			Timestamp: 10,
			Value:     []byte("v"),
			Headers: []RecordHeader{
				{Key: "trace", Value: []byte("abc")},
				{Key: "nil-value", Value: nil},
				{Key: "empty-value", Value: []byte{}},
				{Key: "", Value: []byte("empty key")},
				{Key: "trace", Value: []byte("duplicate keys are kept")},
			},
		}}},
		{"max headers", []Record{{Headers: func() []RecordHeader {
			h := make([]RecordHeader, MaxHeaders)
			for i := range h {
				h[i] = RecordHeader{Key: fmt.Sprint(i)}
			}
			return h
		}()}}},
		{"negative timestamp deltas", []Record{
			{Timestamp: 1000, Value: []byte("a")},
			{Timestamp: 400, Value: []byte("b")},
			{Timestamp: 1500, Value: []byte("c")},
			{Timestamp: -20, Value: []byte("d")},
		}},
		{"negative timestamps", []Record{{Timestamp: -5}, {Timestamp: -9}, {Timestamp: -1}}},
		{"extreme timestamps", []Record{{Timestamp: math.MaxInt64 - 1}, {Timestamp: math.MinInt64 + 1}, {Timestamp: math.MaxInt64}}},
		{"many records", manyRecords(5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			out := Append(bytes.Clone(prefix), tt.recs)
			if !bytes.Equal(out[:len(prefix)], prefix) {
				t.Fatalf("Append changed the bytes before the batch: %q", out[:len(prefix)])
			}
			b := out[len(prefix):]
			if len(b) != EncodedSize(tt.recs) {
				t.Fatalf("encoded %d bytes, EncodedSize says %d", len(b), EncodedSize(tt.recs))
			}
			if n, err := PeekSize(b); err != nil || n != len(b) {
				t.Fatalf("PeekSize = %d, %v; want %d", n, err, len(b))
			}
			const base = 1 << 40
			SetBaseOffset(b, base)
			SetLeaderEpoch(b, 7)
			h, got, err := decodeAll(b)
			if err != nil {
				t.Fatal(err)
			}
			maxTS := tt.recs[0].Timestamp
			for _, r := range tt.recs {
				maxTS = max(maxTS, r.Timestamp)
			}
			wantH := Header{
				BaseOffset: base, Length: int32(len(b) - 12), LeaderEpoch: 7, Magic: Magic, CRC: h.CRC,
				LastOffsetDelta: int32(len(tt.recs) - 1), FirstTimestamp: tt.recs[0].Timestamp, MaxTimestamp: maxTS,
				ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, NumRecords: int32(len(tt.recs)),
			}
			if h != wantH {
				t.Fatalf("header\n got %+v\nwant %+v", h, wantH)
			}
			if h.Size() != len(b) || h.NextOffset() != base+int64(len(tt.recs)) {
				t.Fatalf("Size %d NextOffset %d for %d bytes, %d records", h.Size(), h.NextOffset(), len(b), len(tt.recs))
			}
			if len(got) != len(tt.recs) {
				t.Fatalf("decoded %d records, want %d", len(got), len(tt.recs))
			}
			for i := range got {
				want := tt.recs[i]
				want.Offset = base + int64(i)
				if d := diffRecord(got[i], want); d != "" {
					t.Fatalf("record %d: %s", i, d)
				}
			}
		})
	}
}

func TestAppendPanicsWithoutRecords(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Append with no records did not panic")
		}
	}()
	Append(nil, nil)
}

// TestIterReset checks that one iterator can walk several batches and that a failed
// Reset leaves no records behind.
func TestIterReset(t *testing.T) {
	a := Append(nil, []Record{{Value: []byte("a0"), Headers: []RecordHeader{{Key: "h"}}}, {Value: []byte("a1")}})
	b := Append(nil, []Record{{Value: []byte("b0")}})
	it, err := NewIter(a)
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for it.Next() {
		vals = append(vals, string(it.Record().Value))
	}
	if err := it.Reset(b); err != nil {
		t.Fatal(err)
	}
	for it.Next() {
		vals = append(vals, string(it.Record().Value))
		if it.Record().Headers != nil {
			t.Fatalf("record of b has headers %v from a previous batch", it.Record().Headers)
		}
	}
	if it.Err() != nil || fmt.Sprint(vals) != "[a0 a1 b0]" {
		t.Fatalf("values %v, err %v", vals, it.Err())
	}
	if err := it.Reset(a[:len(a)-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("Reset to a truncated batch: %v, want ErrShort", err)
	}
}

// Raw batch construction for the damage tests. These helpers build bytes that
// Append would never produce.

// fixCRC recomputes the CRC of b, so that damage to covered fields reaches the
// checks behind the CRC.
func fixCRC(b []byte) []byte {
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[crcStart:], castagnoli))
	return b
}

// rawBatch wraps hand-made record bytes in a valid header claiming n records.
func rawBatch(n int32, firstTS, maxTS int64, records []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(records))
	be := binary.BigEndian
	be.PutUint32(b[offLength:], uint32(HeaderSize+len(records)-lengthPrefix))
	b[offMagic] = Magic
	be.PutUint32(b[offLastDelta:], uint32(n-1))
	be.PutUint64(b[offFirstTS:], uint64(firstTS))
	be.PutUint64(b[offMaxTS:], uint64(maxTS))
	be.PutUint32(b[offNumRecords:], uint32(n))
	return fixCRC(append(b, records...))
}

// rawRecord frames a record body (attributes onwards) with its length.
func rawRecord(body ...[]byte) []byte {
	joined := bytes.Join(body, nil)
	return append(binary.AppendVarint(nil, int64(len(joined))), joined...)
}

func vi(v int64) []byte { return binary.AppendVarint(nil, v) }

// recordBody is the body of a valid record with the given deltas, nil key, value v
// and no headers.
func recordBody(tsDelta, offDelta int64, v string) []byte {
	return bytes.Join([][]byte{{0}, vi(tsDelta), vi(offDelta), vi(-1), vi(int64(len(v))), []byte(v), vi(0)}, nil)
}

func TestRawBatchHelperIsValid(t *testing.T) {
	// The damage cases below start from rawBatch; it must produce a valid batch.
	b := rawBatch(2, 100, 101, append(rawRecord(recordBody(0, 0, "x")), rawRecord(recordBody(1, 1, "y"))...))
	_, recs, err := decodeAll(b)
	if err != nil || len(recs) != 2 || string(recs[1].Value) != "y" || recs[1].Timestamp != 101 {
		t.Fatalf("raw batch: %v, %+v", err, recs)
	}
}

func TestRejectDamage(t *testing.T) {
	good := func() []byte {
		return Append(nil, []Record{
			{Timestamp: 100, Key: []byte("k0"), Value: []byte("v0"), Headers: []RecordHeader{{Key: "h", Value: []byte("x")}}},
			{Timestamp: 105, Key: []byte("k1"), Value: []byte("v1")},
		})
	}
	put32 := func(b []byte, off int, v uint32) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	put64 := func(b []byte, off int, v uint64) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	flip := func(b []byte, off int) []byte { b[off] ^= 0x10; return b }
	okRec := rawRecord(recordBody(0, 0, "x"))

	tests := []struct {
		name string
		b    []byte
		want error
		// inRecords is true when the header verifies and the damage is found while
		// iterating the records.
		inRecords bool
	}{
		{name: "empty", b: nil, want: ErrShort},
		{name: "shorter than the length field", b: good()[:11], want: ErrShort},
		{name: "shorter than the header", b: good()[:HeaderSize-1], want: ErrShort},
		{name: "truncated by one byte", b: func() []byte { b := good(); return b[:len(b)-1] }(), want: ErrShort},
		{name: "length below the header", b: put32(good(), offLength, HeaderSize-lengthPrefix-1), want: ErrCorrupt},
		{name: "negative length", b: put32(good(), offLength, 0xffffff00), want: ErrCorrupt},
		{name: "length above MaxBatchBytes", b: put32(good(), offLength, MaxBatchBytes), want: ErrCorrupt},
		{name: "length larger than the data", b: func() []byte { b := good(); return put32(b, offLength, uint32(len(b))) }(), want: ErrShort},
		{name: "trailing bytes after the batch", b: append(good(), 0), want: ErrCorrupt},
		{name: "two batches back to back", b: append(good(), good()...), want: ErrCorrupt},
		{name: "magic 1", b: func() []byte { b := good(); b[offMagic] = 1; return b }(), want: ErrUnsupported},
		{name: "magic 3", b: func() []byte { b := good(); b[offMagic] = 3; return b }(), want: ErrUnsupported},
		{name: "crc field flipped", b: flip(good(), offCRC+2), want: ErrCRC},
		{name: "attributes flipped", b: flip(good(), offAttributes+1), want: ErrCRC},
		{name: "max timestamp flipped", b: flip(good(), offMaxTS+5), want: ErrCRC},
		{name: "record byte flipped", b: func() []byte { b := good(); return flip(b, len(b)-3) }(), want: ErrCRC},
		{name: "negative base offset", b: put64(good(), offBaseOffset, 1<<63), want: ErrCorrupt},
		{name: "zero records", b: fixCRC(put32(put32(good(), offNumRecords, 0), offLastDelta, 0xffffffff)), want: ErrCorrupt},
		{name: "negative records", b: fixCRC(put32(good(), offNumRecords, 0xffffffff)), want: ErrCorrupt},
		{name: "records above MaxRecords", b: fixCRC(put32(put32(good(), offNumRecords, MaxRecords+1), offLastDelta, MaxRecords)), want: ErrCorrupt},
		{name: "last offset delta mismatch", b: fixCRC(put32(good(), offLastDelta, 5)), want: ErrCorrupt},
		{name: "max timestamp before first", b: fixCRC(put64(good(), offMaxTS, 99)), want: ErrCorrupt},
		{name: "compressed", b: fixCRC(func() []byte { b := good(); b[offAttributes+1] |= 1; return b }()), want: ErrUnsupported},

		// Damage behind a valid CRC: found while iterating.
		{name: "more records than counted", b: fixCRC(put32(put32(good(), offNumRecords, 1), offLastDelta, 0)), want: ErrCorrupt, inRecords: true},
		{name: "fewer records than counted", b: fixCRC(put32(put32(good(), offNumRecords, 3), offLastDelta, 2)), want: ErrCorrupt, inRecords: true},
		{name: "trailing garbage after the records", b: rawBatch(1, 0, 0, append(bytes.Clone(okRec), 0, 0, 0)), want: ErrCorrupt, inRecords: true},
		{name: "record length zero", b: rawBatch(1, 0, 0, []byte{0, 0, 0, 0}), want: ErrCorrupt, inRecords: true},
		{name: "record length negative", b: rawBatch(1, 0, 0, append(vi(-3), okRec...)), want: ErrCorrupt, inRecords: true},
		{name: "record length past the batch", b: rawBatch(1, 0, 0, append(vi(100), recordBody(0, 0, "x")...)), want: ErrCorrupt, inRecords: true},
		{name: "record longer than its fields", b: rawBatch(1, 0, 0, rawRecord(recordBody(0, 0, "x"), []byte{9})), want: ErrCorrupt, inRecords: true},
		{name: "bad varint", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, bytes.Repeat([]byte{0xff}, 11))), want: ErrCorrupt, inRecords: true},
		{name: "wrong offset delta", b: rawBatch(1, 0, 0, rawRecord(recordBody(0, 1, "x"))), want: ErrCorrupt, inRecords: true},
		{name: "offset deltas out of order", b: rawBatch(2, 0, 0, append(rawRecord(recordBody(0, 1, "x")), rawRecord(recordBody(0, 0, "y"))...)), want: ErrCorrupt, inRecords: true},
		{name: "timestamp past max", b: rawBatch(1, 0, 0, rawRecord(recordBody(1, 0, "x"))), want: ErrCorrupt, inRecords: true},
		{name: "value length past the record", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(50), []byte("x"), vi(0))), want: ErrCorrupt, inRecords: true},
		{name: "value length below -1", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-2), vi(0))), want: ErrCorrupt, inRecords: true},
		{name: "negative header count", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(-1))), want: ErrCorrupt, inRecords: true},
		{name: "header count above MaxHeaders", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(MaxHeaders+1))), want: ErrCorrupt, inRecords: true},
		{name: "header count past the record", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(2), vi(1), []byte("k"), vi(-1))), want: ErrCorrupt, inRecords: true},
		{name: "null header key", b: rawBatch(1, 0, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1), vi(-1), vi(-1))), want: ErrCorrupt, inRecords: true},
		{name: "record without attributes", b: rawBatch(1, 0, 0, rawRecord(nil)), want: ErrCorrupt, inRecords: true},
	}
	sentinels := []error{ErrShort, ErrCorrupt, ErrCRC, ErrUnsupported}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, verr := Verify(tt.b)
			it, err := NewIter(tt.b)
			if !tt.inRecords {
				if err == nil {
					t.Fatal("NewIter accepted the batch")
				}
				if it != nil {
					t.Fatal("NewIter returned an iterator with an error")
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("NewIter: %v, want %v", err, tt.want)
				}
				if tt.want != ErrUnsupported || verr != nil {
					// Verify checks the header and CRC only; compression is NewIter's.
					if !errors.Is(verr, tt.want) {
						t.Fatalf("Verify: %v, want %v", verr, tt.want)
					}
				}
			} else {
				if verr != nil || err != nil {
					t.Fatalf("header damage found too early: Verify %v, NewIter %v", verr, err)
				}
				for it.Next() {
				}
				if err = it.Err(); !errors.Is(err, tt.want) {
					t.Fatalf("iteration: %v, want %v", err, tt.want)
				}
				if it.Next() {
					t.Fatal("Next returned true after an error")
				}
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Fatalf("error %v also matches %v", err, s)
				}
			}
		})
	}
}

// TestDamageStopsAtTheBadRecord checks that records before the damaged one are
// returned intact and nothing after it.
func TestDamageStopsAtTheBadRecord(t *testing.T) {
	recs := append(rawRecord(recordBody(0, 0, "a")), rawRecord(recordBody(0, 1, "b"))...)
	recs = append(recs, rawRecord(recordBody(0, 7, "c"))...) // wrong offset delta
	recs = append(recs, rawRecord(recordBody(0, 3, "d"))...)
	it, err := NewIter(rawBatch(4, 0, 0, recs))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for it.Next() {
		got = append(got, string(it.Record().Value))
	}
	if fmt.Sprint(got) != "[a b]" || !errors.Is(it.Err(), ErrCorrupt) {
		t.Fatalf("got %v, %v; want [a b] and ErrCorrupt", got, it.Err())
	}
}

// TestBaseOffsetOutsideCRC checks the property the log relies on: patching the base
// offset and leader epoch keeps the batch valid, and any other header byte is covered.
func TestBaseOffsetOutsideCRC(t *testing.T) {
	b := Append(nil, []Record{{Value: []byte("v")}})
	SetBaseOffset(b, 123456)
	SetLeaderEpoch(b, 9)
	if _, err := Verify(b); err != nil {
		t.Fatal(err)
	}
	for i := crcStart; i < HeaderSize; i++ {
		c := bytes.Clone(b)
		c[i] ^= 1
		if _, err := Verify(c); err == nil {
			t.Fatalf("flipping header byte %d went unnoticed", i)
		}
	}
}
