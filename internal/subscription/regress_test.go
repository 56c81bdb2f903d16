package subscription

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
)

// Regression tests for problems found in review.

// A revoked delivery (behind a failure in partitioned mode) does not use up the
// message's deliveries.
func TestRevokedDeliveriesDoNotCount(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "g", Mode: ModePartitioned, MaxDeliveries: 1, BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	e.publish(0, "a", "b", "c", "d")
	ds := e.fetch("m", 10)
	e.nack(ds[0], "boom") // a is dead-lettered (limit 1); b, c, d are revoked
	e.clk.advance(time.Second)
	again := e.fetch("m", 10)
	if got := values(again); !slices.Equal(got, []string{"b", "c", "d"}) || again[0].Deliveries != 1 {
		t.Fatalf("after the failure: %v (deliveries %d)", got, again[0].Deliveries)
	}
	if dead := e.deadLetters(); len(dead) != 1 || string(dead[0].Value) != "a" {
		t.Fatalf("dead letters: %d", len(dead))
	}
}

type startLog struct {
	logstore.Log
	start int64
}

func (l *startLog) StartOffset() int64 { return max(l.start, l.Log.StartOffset()) }

// When retention removes a key's head, the key's next message takes its place.
func TestRetentionOfAKeysHeadDoesNotStallTheKey(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "w", Mode: ModeKeyOrdered, BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	sl := &startLog{Log: e.parts[0]}
	e.parts[0] = sl
	defer func() { e.parts[0] = sl.Log }()
	e.publishKeyed(0, "k", "k0")
	e.publishKeyed(0, "k", "k1")
	ds := e.fetch("c", 10)
	e.nack(ds[0], "x")
	sl.start = 1 // retention removed offset 0
	e.clk.advance(time.Second)
	if got := values(e.fetch("c", 10)); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("after the head was removed: %v", got)
	}
	if info := e.sub.Info(); info.Held != 0 {
		t.Fatalf("held %d", info.Held)
	}
}

type failLog struct {
	logstore.Log
	fail bool
}

func (l *failLog) Read(off int64, n int, buf []byte) ([]byte, int64, error) {
	if l.fail {
		return nil, 0, errors.New("injected read error")
	}
	return l.Log.Read(off, n, buf)
}

// A read error on one partition does not lose what was read from another.
func TestDispatchErrorLosesNothing(t *testing.T) {
	e := newEnv(t, 2, Config{Name: "q"})
	fl := &failLog{Log: e.parts[1]}
	e.parts[1] = fl
	defer func() { e.parts[1] = fl.Log }()
	e.publish(0, "p0-a", "p0-b")
	e.publish(1, "p1-a")
	fl.fail = true
	if _, err := e.sub.Fetch(e.ctx, "c", 10, 100); err == nil {
		t.Fatal("no error from a failing read")
	}
	fl.fail = false
	e.restart()
	var all []string
	for range 3 {
		all = append(all, values(e.fetch("c", 10))...)
	}
	slices.Sort(all)
	if !slices.Equal(all, []string{"p0-a", "p0-b", "p1-a"}) {
		t.Fatalf("delivered %v", all)
	}
}

// A terminated message whose dead-lettering fails is not handed back to consumers.
func TestTerminatedMessageIsNotRedeliveredWhileDeadLetteringFails(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "q", BackoffInitial: time.Millisecond, BackoffMax: time.Second})
	e.publish(0, "bad")
	d := e.fetch("c", 1)[0]
	e.deadMu.Lock()
	e.deadFail = true
	e.deadMu.Unlock()
	if err := e.sub.Term(e.ctx, 0, d.Offset, d.Lease, "unparseable"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.clk.advance(2 * time.Second)
		if got := e.fetch("c", 1); len(got) != 0 {
			t.Fatalf("terminated message delivered again: %+v", got)
		}
	}
	e.kill()
	e.deadMu.Lock()
	e.deadFail = false
	e.deadMu.Unlock()
	e.clk.advance(2 * time.Second)
	if got := e.fetch("c", 1); len(got) != 0 {
		t.Fatalf("terminated message delivered after a restart: %+v", got)
	}
	if dead := e.deadLetters(); len(dead) != 1 {
		t.Fatalf("dead letters: %d", len(dead))
	}
}

// MaxHeld holds within one fetch: a key with a long run of messages does not make
// the subscription track more than MaxHeld of them.
func TestMaxHeldIsEnforced(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes over 100,000 messages")
	}
	e := newEnv(t, 1, Config{Name: "w", Mode: ModeKeyOrdered})
	const n = MaxHeld + 5000
	for i := 0; i < n; i += 10000 {
		var recs []batch.Record
		for j := i; j < min(n, i+10000); j++ {
			recs = append(recs, batch.Record{Key: []byte("k"), Value: []byte(fmt.Sprint(j))})
		}
		if _, err := e.parts[0].Append(e.ctx, batch.Append(nil, recs)); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		e.fetch("c", 1)
	}
	if held := e.sub.Info().Held; held > MaxHeld {
		t.Fatalf("held %d, limit %d", held, MaxHeld)
	}
}

// A consumer that has no room does not spin on a retry it cannot take.
func TestFetchDoesNotSpinWhenFull(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "q", BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	e.publish(0, "a", "b")
	ds, _ := e.sub.Fetch(e.ctx, "c", 2, 2)
	e.nack(ds[1], "x")
	e.clk.advance(time.Second) // b is due, but c holds a and may hold only one
	calls := 0
	e.sub.mu.Lock()
	e.sub.now = func() time.Time { calls++; return e.clk.now() }
	e.sub.mu.Unlock()
	ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
	defer cancel()
	e.sub.Fetch(ctx, "c", 1, 1)
	e.sub.mu.Lock()
	n := calls
	e.sub.mu.Unlock()
	if n > 20 {
		t.Fatalf("Fetch looped %d times in 200 ms", n)
	}
}

// The lease heap stays proportional to what is in flight.
func TestLeaseHeapStaysBounded(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "q", Lease: 12 * time.Hour})
	for i := range 5000 {
		e.publish(0, fmt.Sprint(i))
	}
	for {
		ds := e.fetch("c", 100)
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			e.ack(d)
		}
	}
	e.sub.mu.Lock()
	n := len(e.sub.leases)
	e.sub.mu.Unlock()
	if n > 1024+100 {
		t.Fatalf("lease heap holds %d entries with nothing in flight", n)
	}
}
