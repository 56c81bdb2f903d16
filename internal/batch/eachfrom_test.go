package batch

import (
	"errors"
	"reflect"
	"testing"
)

// recordsFrom is what Each yields at or after from.
func recordsFrom(t *testing.T, data []byte, from int64) []Record {
	t.Helper()
	var out []Record
	if err := Each(data, func(r *Record) bool {
		if r.Offset >= from {
			out = append(out, cloneRecord(r))
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEachFrom(t *testing.T) {
	a := Append(nil, manyRecords(20))
	b := Append(nil, manyRecords(5))
	SetBaseOffset(b, 20)
	data := append(append([]byte(nil), a...), b...)
	for _, from := range []int64{-1, 0, 1, 7, 19, 20, 23, 24, 25, 100} {
		var got []Record
		if err := EachFrom(data, from, func(r *Record) bool {
			got = append(got, cloneRecord(r))
			return true
		}); err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		if want := recordsFrom(t, data, from); !reflect.DeepEqual(got, want) {
			t.Fatalf("from %d: %d records, want %d", from, len(got), len(want))
		}
	}
	// It stops when fn says so.
	n := 0
	EachFrom(data, 3, func(*Record) bool { n++; return n < 4 })
	if n != 4 {
		t.Fatalf("fn called %d times after it returned false", n)
	}
	// A truncated batch is an error, not a short read of records.
	if err := EachFrom(data[:len(data)-1], 0, func(*Record) bool { return true }); !errors.Is(err, ErrShort) {
		t.Fatalf("truncated: %v", err)
	}
}

// FuzzEachFrom: on any input EachFrom returns an error of the package or
// records; on batches that verify, the records Each yields from the same
// offset.
func FuzzEachFrom(f *testing.F) {
	f.Add(Append(nil, manyRecords(20)), int64(5))
	f.Add(Append(nil, manyRecords(3)), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, from int64) {
		var got []Record
		err := EachFrom(data, from, func(r *Record) bool {
			got = append(got, cloneRecord(r))
			return true
		})
		if err != nil && !isSentinel(err) {
			t.Fatalf("error %v wraps no package sentinel", err)
		}
		if _, verr := Verify(data); verr != nil || err != nil {
			return
		}
		if want := recordsFrom(t, data, from); !reflect.DeepEqual(got, want) {
			t.Fatalf("from %d: %d records, Each gives %d", from, len(got), len(want))
		}
	})
}
