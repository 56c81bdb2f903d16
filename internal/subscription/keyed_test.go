package subscription

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
)

// publishKeyed appends one message per (key, value) to partition p.
func (e *env) publishKeyed(p int, key, value string) {
	e.t.Helper()
	b := batch.Append(nil, []batch.Record{{Timestamp: e.clk.now().UnixMilli(), Key: []byte(key), Value: []byte(value)}})
	if _, err := e.parts[p].Append(e.ctx, b); err != nil {
		e.t.Fatal(err)
	}
}

func TestKeyOrderUnderConcurrentConsumersWithFailures(t *testing.T) {
	e := newEnv(t, 2, Config{Name: "work", Mode: ModeKeyOrdered, MaxDeliveries: 1000,
		BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	const keys, perKey = 40, 25
	for k := range keys {
		for i := range perKey {
			e.publishKeyed(k%2, fmt.Sprintf("k%d", k), fmt.Sprintf("k%d-%d", k, i))
		}
	}
	stop := make(chan struct{})
	go func() { // the fake clock runs so that backoffs elapse
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				e.clk.advance(5 * time.Millisecond)
			}
		}
	}()
	defer close(stop)
	var mu sync.Mutex
	acked := make([]int, keys) // per key: how many acked, in order
	inFlightKey := map[string]string{}
	total := 0
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			name := fmt.Sprintf("c%d", c)
			for {
				mu.Lock()
				done := total == keys*perKey
				mu.Unlock()
				if done {
					return
				}
				for _, d := range e.fetch(name, 8) {
					var k, i int
					fmt.Sscanf(string(d.Value), "k%d-%d", &k, &i)
					key := string(d.Key)
					mu.Lock()
					if other, busy := inFlightKey[key]; busy {
						t.Errorf("key %s delivered twice at once: %s and %s", key, other, d.Value)
					}
					if i != acked[k] {
						t.Errorf("key %s: delivered item %d while %d are acked", key, i, acked[k])
					}
					inFlightKey[key] = string(d.Value)
					mu.Unlock()
					fail := rng.IntN(5) == 0
					mu.Lock()
					delete(inFlightKey, key)
					if !fail {
						acked[k]++
						total++
					}
					mu.Unlock()
					var err error
					if fail {
						err = e.sub.Nack(e.ctx, d.Partition, d.Offset, d.Lease, nil, "random failure")
					} else {
						err = e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease)
					}
					if err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	for k, n := range acked {
		if n != perKey {
			t.Fatalf("key %d: %d of %d acked", k, n, perKey)
		}
	}
}

func TestParkedKeyDoesNotStallOtherKeys(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", Mode: ModeKeyOrdered, MaxDeliveries: 100,
		BackoffInitial: time.Minute, BackoffMax: time.Minute})
	e.publishKeyed(0, "bad", "bad-0")
	for i := range 3 {
		e.publishKeyed(0, "bad", fmt.Sprintf("bad-%d", i+1))
		e.publishKeyed(0, "good", fmt.Sprintf("good-%d", i))
		e.publishKeyed(0, "", fmt.Sprintf("keyless-%d", i))
	}
	first := e.fetch("w", 100)
	if got := values(first); !slices.Equal(got, []string{"bad-0", "good-0", "keyless-0", "keyless-1", "keyless-2"}) {
		t.Fatalf("first fetch: %v", got)
	}
	for _, d := range first {
		if string(d.Key) == "bad" {
			e.nack(d, "downstream 500")
		} else {
			e.ack(d)
		}
	}
	// "bad" is parked; "good" flows, one at a time.
	for i := 1; i < 3; i++ {
		got := e.fetch("w", 100)
		if v := values(got); !slices.Equal(v, []string{fmt.Sprintf("good-%d", i)}) {
			t.Fatalf("while bad is parked: %v", v)
		}
		e.ack(got[0])
	}
	info := e.sub.Info()
	parked := e.sub.ParkedKeys(10)
	if info.Parked != 1 || info.Held != 3 || len(parked) != 1 || parked[0].Key != "bad" || parked[0].Held != 3 ||
		parked[0].LastError != "downstream 500" {
		t.Fatalf("info %+v, parked %+v", info, parked)
	}
	e.kill() // parking survives a crash
	e.clk.advance(time.Minute)
	retry := e.fetch("w", 100)
	if v := values(retry); !slices.Equal(v, []string{"bad-0"}) || retry[0].Deliveries != 2 {
		t.Fatalf("retry of the parked key: %v", v)
	}
	e.ack(retry[0])
	for i := 1; i <= 3; i++ {
		got := e.fetch("w", 100)
		if v := values(got); !slices.Equal(v, []string{fmt.Sprintf("bad-%d", i)}) {
			t.Fatalf("after the parked key resumed: %v", v)
		}
		e.ack(got[0])
	}
	if info := e.sub.Info(); info.Backlog != 0 || info.Parked != 0 || info.Held != 0 {
		t.Fatalf("at the end: %+v", info)
	}
}

func TestParkedKeyResumesWhenDeadLettered(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", Mode: ModeKeyOrdered, MaxDeliveries: 2,
		BackoffInitial: time.Second, BackoffMax: time.Second})
	e.publishKeyed(0, "k", "poison")
	e.publishKeyed(0, "k", "next")
	for range 2 {
		ds := e.fetch("w", 10)
		if v := values(ds); !slices.Equal(v, []string{"poison"}) {
			t.Fatalf("got %v", v)
		}
		e.nack(ds[0], "boom")
		e.clk.advance(2 * time.Second)
	}
	if v := values(e.fetch("w", 10)); !slices.Equal(v, []string{"next"}) {
		t.Fatalf("after dead-lettering the head: %v", v)
	}
	if len(e.deadLetters()) != 1 {
		t.Fatal("poison not dead-lettered")
	}
}

// countingLog counts the reads made of a partition.
type countingLog struct {
	logstore.Log
	reads atomic.Int64
}

func (l *countingLog) Read(off int64, maxBytes int, buf []byte) ([]byte, int64, error) {
	l.reads.Add(1)
	return l.Log.Read(off, maxBytes, buf)
}

// Held messages released by their keys' acks are served from the batch they
// were stored in, read once: not one read of the whole batch per message.
func TestReleasedKeysShareOneRead(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "work", Mode: ModeKeyOrdered})
	cl := &countingLog{Log: e.parts[0]}
	e.parts[0] = cl
	const keys = 50
	var recs []batch.Record
	for round := range 2 {
		for k := range keys {
			recs = append(recs, batch.Record{Timestamp: e.clk.now().UnixMilli(), Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "k%d-%d", k, round)})
		}
	}
	if _, err := cl.Append(e.ctx, batch.Append(nil, recs)); err != nil {
		t.Fatal(err)
	}
	heads := e.fetch("w", 2*keys)
	if len(heads) != keys {
		t.Fatalf("first fetch: %d deliveries, want one per key (%d)", len(heads), keys)
	}
	for _, d := range heads {
		e.ack(d)
	}
	before := cl.reads.Load()
	next := e.fetch("w", 2*keys)
	reads := cl.reads.Load() - before
	var want []string
	for k := range keys {
		want = append(want, fmt.Sprintf("k%d-1", k))
	}
	if got := values(next); !slices.Equal(got, want) {
		t.Fatalf("second fetch: %v", got)
	}
	if reads > 2 {
		t.Fatalf("the %d released messages of one batch took %d reads of the log", keys, reads)
	}
}
