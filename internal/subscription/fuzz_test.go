package subscription

import (
	"bytes"
	"encoding/json"
	"testing"
)

func seedEvents() []event {
	return []event{
		{kind: evDeliver, partition: 3, offset: 1 << 40, deliveries: 2, at: 1_700_000_000_000},
		{kind: evAck, partition: 0, offset: 7},
		{kind: evRetry, partition: 1, offset: 9, notBefore: 1_700_000_001_000, at: 1_700_000_000_000, consumer: "worker-1", reason: "timeout"},
		{kind: evDead, partition: 0, offset: 0},
	}
}

func TestEventRoundTrip(t *testing.T) {
	for _, e := range seedEvents() {
		got, err := decodeEvent(e.append(nil))
		if err != nil || got != e {
			t.Fatalf("round trip of %+v: %+v, %v", e, got, err)
		}
	}
	long := event{kind: evRetry, reason: string(bytes.Repeat([]byte("x"), MaxReasonBytes+1))}
	if _, err := decodeEvent(long.append(nil)); err == nil {
		t.Fatal("a reason over MaxReasonBytes was accepted")
	}
}

// FuzzDecodeEvent: the journal decoder never panics, and what it accepts encodes
// back to the same bytes.
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range seedEvents() {
		f.Add(e.append(nil))
	}
	f.Add([]byte{9})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvent(b)
		if err != nil {
			return
		}
		if again := e.append(nil); !bytes.Equal(again, b) {
			// Varints have one canonical form when written by us; a non-canonical
			// input may decode, but its re-encoding must decode to the same event.
			if e2, err := decodeEvent(again); err != nil || e2 != e {
				t.Fatalf("re-encoding of %+v does not round trip: %v", e, err)
			}
		}
	})
}

// FuzzDecodeSnapshot: the snapshot decoder never panics and accepts only states
// whose pending entries lie in [floor, next).
func FuzzDecodeSnapshot(f *testing.F) {
	good, _ := json.Marshal(snapshot{Version: snapshotFormat, Generation: 2, Partitions: []partSnapshot{
		{Floor: 3, Next: 9, Pending: []*pending{{Offset: 4, Deliveries: 2, Attempts: []Attempt{{At: 1, Error: "e"}}}}},
	}})
	f.Add(good)
	f.Add([]byte(`{"version":1,"partitions":[{"floor":5,"next":1}]}`))
	f.Add([]byte(`{"version":1,"partitions":[{"floor":0,"next":1,"pending":[null]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		snap, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		for _, p := range snap.Partitions {
			for _, pd := range p.Pending {
				if pd.Offset < p.Floor || pd.Offset >= p.Next {
					t.Fatalf("accepted pending %d outside [%d, %d)", pd.Offset, p.Floor, p.Next)
				}
			}
		}
	})
}
