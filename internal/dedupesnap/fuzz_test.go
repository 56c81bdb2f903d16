package dedupesnap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"
)

var limits = Limits{Partitions: 1024, Entries: 100_000_000}

func ref(part int, off int64) uint64 { return uint64(part)<<RefOffsetBits | uint64(off) }

func TestRoundTrip(t *testing.T) {
	covered := []int64{3, 0, 1 << 40}
	entries := []Entry{
		{Hash: 1, Ref: ref(0, 2), Ms: 1_700_000_000_000},
		{Hash: 1<<64 - 1, Ref: ref(2, 1<<40-1), Ms: -5},
		{Hash: 42, Ref: ref(1, 0), Ms: 0},
	}
	c, e, err := Decode(Encode(covered, entries), limits)
	if err != nil || !slices.Equal(c, covered) || !slices.Equal(e, entries) {
		t.Fatalf("a snapshot decodes to %v %v, %v; want %v %v", c, e, err, covered, entries)
	}
	for _, tc := range []struct {
		name string
		lim  Limits
	}{
		{"partitions over the limit", Limits{Partitions: 2, Entries: 10}},
		{"entries over the limit", Limits{Partitions: 10, Entries: 2}},
	} {
		if _, _, err := Decode(Encode(covered, entries), tc.lim); !errors.Is(err, ErrBad) {
			t.Errorf("%s: %v, want ErrBad", tc.name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good := Encode([]int64{3, 0, 1 << 40}, []Entry{
		{Hash: 1, Ref: ref(0, 2), Ms: 1_700_000_000_000},
		{Hash: 42, Ref: ref(2, 0), Ms: 0},
	})
	f.Add(good)
	f.Add(Encode(nil, nil))
	f.Add(Encode([]int64{0}, nil))
	bad := Encode([]int64{1}, []Entry{{Hash: 7, Ref: ref(0, 0), Ms: 9}})
	f.Add(bad[:len(bad)-1])
	f.Add([]byte(magic))
	f.Add([]byte("SLDD\x01\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		// The checksum stops almost every mutation at the door; with it made
		// right, the fuzzer reaches the fields behind it.
		if len(data) >= 4 {
			fixed := bytes.Clone(data[:len(data)-4])
			checkDecode(t, binary.LittleEndian.AppendUint32(fixed, crc32.Checksum(fixed, castagnoli)))
		}
	})
}

// checkDecode decodes data, and checks that what is accepted is within the
// limits and is the one encoding of what it decodes to.
func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	covered, entries, err := Decode(data, limits)
	if err != nil {
		if !errors.Is(err, ErrBad) {
			t.Fatalf("error %v does not match ErrBad", err)
		}
		return
	}
	for _, c := range covered {
		if c < 0 || c >= 1<<RefOffsetBits {
			t.Fatalf("accepted covered offset %d", c)
		}
	}
	for _, e := range entries {
		if p := e.Ref >> RefOffsetBits; p >= uint64(len(covered)) {
			t.Fatalf("accepted entry of partition %d of %d", p, len(covered))
		}
	}
	again := Encode(covered, entries)
	if !bytes.Equal(again, data) {
		t.Fatalf("accepted input re-encodes differently:\n in  %x\n out %x", data, again)
	}
	c2, e2, err := Decode(again, limits)
	if err != nil || !slices.Equal(c2, covered) || !slices.Equal(e2, entries) {
		t.Fatalf("re-encoded snapshot decodes to %v %v (%v), want %v %v", c2, e2, err, covered, entries)
	}
}
