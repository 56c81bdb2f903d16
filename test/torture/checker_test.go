package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
)

// The checker tests feed hand-made histories to the checker and show that each
// check passes a sound history and fails a broken one.

const (
	tQueue = iota
	tKeyed
	tGroup
)

func newTestChecker() *Checker {
	return NewChecker([]subSpec{{"queue", kindQueue}, {"keyed", kindKeyed}, {"group", kindPartitioned}}, 2, 3)
}

// publish registers and acknowledges n messages of key (-1: none) in
// partition part, at the next offsets there.
func publish(c *Checker, next map[int]int64, key int32, part, n int) []int64 {
	var ids []int64
	for range n {
		id, _ := c.NewMessage(key, false)
		c.Published(id, sluice.Position{Partition: part, Offset: next[part]})
		next[part]++
		ids = append(ids, id)
	}
	return ids
}

// deliver delivers message id on sub (delivery number no) and, when ack is
// set, acknowledges it within its lease.
func deliver(t *testing.T, c *Checker, sub int, id int64, no int, ack bool) {
	t.Helper()
	m := c.msgs[id]
	ids, _ := c.Delivered(sub, 0, []Delivery{{Partition: int(m.part), Offset: m.off, Deliveries: no, Body: body(id)}})
	if ids[0] != id {
		t.Fatalf("delivered id %d, want %d", ids[0], id)
	}
	if ack {
		c.AckStarted(sub, []int64{id})
		c.AckDone(sub, 0, id, Delivery{}, true, nil)
	}
}

// deliverAll delivers and acknowledges every message on every subscription, in
// order.
func deliverAll(t *testing.T, c *Checker, ids []int64) {
	for sub := range 3 {
		for _, id := range ids {
			deliver(t, c, sub, id, 1, true)
		}
	}
}

func TestCheckerPassesSoundHistory(t *testing.T) {
	c := newTestChecker()
	next := map[int]int64{}
	k := c.NewKey()
	ids := publish(c, next, k, 0, 5)
	ids = append(ids, publish(c, next, -1, 1, 5)...)
	deliverAll(t, c, ids)
	// A redelivery of a message whose ack was lost is a duplicate, not a
	// violation.
	id, _ := c.NewMessage(-1, false)
	c.Published(id, sluice.Position{Partition: 1, Offset: next[1]})
	for sub := range 3 {
		deliver(t, c, sub, id, 1, false)
		c.AckStarted(sub, []int64{id})
		c.AckDone(sub, 0, id, Delivery{}, true, fmt.Errorf("stream broke: %w", sluice.ErrUnavailable))
		deliver(t, c, sub, id, 2, true)
	}
	r := c.Finish(make([][]sluice.DeadLetter, 3))
	if r.Failed() || r.Lost != 0 || r.OrderViolations != 0 {
		t.Fatalf("sound history failed: %v\n%s", r.Details(), r.Line())
	}
	if r.Duplicates != 3 || r.Delivered != 11 || r.Acked != 11 {
		t.Fatalf("duplicates=%d delivered=%d acked=%d, want 3, 11, 11", r.Duplicates, r.Delivered, r.Acked)
	}
}

func TestCheckerDetectsLostMessage(t *testing.T) {
	c := newTestChecker()
	next := map[int]int64{}
	ids := publish(c, next, -1, 0, 4)
	for sub := range 3 {
		for i, id := range ids {
			if sub == tQueue && i == 2 {
				continue // the queue subscription never delivers message 2
			}
			deliver(t, c, sub, id, 1, true)
		}
	}
	r := c.Finish(make([][]sluice.DeadLetter, 3))
	if r.Lost != 1 || !r.Failed() {
		t.Fatalf("lost=%d failed=%v, want 1 lost: %v", r.Lost, r.Failed(), r.Details())
	}
	// A message that was only started ("maybe") is not lost.
	c = newTestChecker()
	c.NewMessage(-1, false)
	if r := c.Finish(make([][]sluice.DeadLetter, 3)); r.Lost != 0 || r.Maybe != 1 {
		t.Fatalf("unacknowledged publish: lost=%d maybe=%d, want 0 and 1", r.Lost, r.Maybe)
	}
}

func TestCheckerDetectsAckedThenRedelivered(t *testing.T) {
	c := newTestChecker()
	next := map[int]int64{}
	ids := publish(c, next, -1, 0, 2)
	deliverAll(t, c, ids)
	deliver(t, c, tQueue, ids[1], 2, true)
	r := c.Finish(make([][]sluice.DeadLetter, 3))
	if r.AckedRedelivered != 1 || !r.Failed() {
		t.Fatalf("acked_redelivered=%d, want 1: %v", r.AckedRedelivered, r.Details())
	}

	// An ack sent after the lease deadline does not forbid a redelivery.
	c = newTestChecker()
	ids = publish(c, map[int]int64{}, -1, 0, 1)
	deliver(t, c, tQueue, ids[0], 1, false)
	c.AckStarted(tQueue, ids)
	c.AckDone(tQueue, 0, ids[0], Delivery{}, false, nil)
	deliver(t, c, tQueue, ids[0], 2, true)
	if r := c.Finish(make([][]sluice.DeadLetter, 3)); r.AckedRedelivered != 0 {
		t.Fatalf("late ack: acked_redelivered=%d, want 0", r.AckedRedelivered)
	}
}

// TestCheckerFencedCopyIsNotARedelivery: a copy that the subscription handed
// out before the acked delivery, and that reached its consumer only after the
// Ack (a rebalance revoked its lease while it was on its way), is a duplicate;
// a delivery handed out after the acked one, or not known to be before it, is
// a violation.
func TestCheckerFencedCopyIsNotARedelivery(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	for _, tc := range []struct {
		name     string
		lease    uint64
		deadline time.Time
		fails    bool
	}{
		{"handed out before", 10, t0.Add(-5 * time.Millisecond), false},
		{"same millisecond, lower token", 19, t0, false},
		{"handed out after", 21, t0.Add(5 * time.Millisecond), true},
		{"higher token, same millisecond", 21, t0, true},
		{"lower token, later deadline (another server run)", 10, t0.Add(time.Second), true},
		{"lease unknown", 0, t0.Add(-5 * time.Millisecond), true},
		{"deadline unknown", 10, time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestChecker()
			ids := publish(c, map[int]int64{}, -1, 1, 1)
			m := c.msgs[ids[0]]
			acked := Delivery{Partition: int(m.part), Offset: m.off, Deliveries: 1, Body: body(ids[0]), Lease: 20, Deadline: t0}
			c.Delivered(tGroup, 1, []Delivery{acked})
			c.AckStarted(tGroup, ids)
			c.AckDone(tGroup, 1, ids[0], acked, true, nil)
			late := acked
			late.Lease, late.Deadline = tc.lease, tc.deadline
			c.Delivered(tGroup, 0, []Delivery{late})
			for _, sub := range []int{tQueue, tKeyed} {
				deliver(t, c, sub, ids[0], 1, true)
			}
			r := c.Finish(make([][]sluice.DeadLetter, 3))
			if r.Failed() != tc.fails || (r.AckedRedelivered != 0) != tc.fails || (r.FencedCopies != 0) == tc.fails {
				t.Fatalf("acked_redelivered=%d fenced_copies=%d failed=%v, want a violation: %v; %v",
					r.AckedRedelivered, r.FencedCopies, r.Failed(), tc.fails, r.Details())
			}
			if r.Duplicates != 1 {
				t.Fatalf("duplicates=%d, want 1", r.Duplicates)
			}
		})
	}
}

func TestCheckerDetectsKeyOrderViolation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		run   func(t *testing.T, c *Checker, ids []int64)
		fails bool
	}{
		{"in order", func(t *testing.T, c *Checker, ids []int64) {
			for _, id := range ids {
				deliver(t, c, tKeyed, id, 1, true)
			}
		}, false},
		{"second before first", func(t *testing.T, c *Checker, ids []int64) {
			deliver(t, c, tKeyed, ids[1], 1, true)
			deliver(t, c, tKeyed, ids[0], 1, true)
			deliver(t, c, tKeyed, ids[2], 1, true)
		}, true},
		{"second while first in flight", func(t *testing.T, c *Checker, ids []int64) {
			deliver(t, c, tKeyed, ids[0], 1, false)
			deliver(t, c, tKeyed, ids[1], 1, true)
			c.AckStarted(tKeyed, ids[:1])
			c.AckDone(tKeyed, 0, ids[0], Delivery{}, true, nil)
			deliver(t, c, tKeyed, ids[2], 1, true)
		}, true},
		{"second while first's ack in flight", func(t *testing.T, c *Checker, ids []int64) {
			deliver(t, c, tKeyed, ids[0], 1, false)
			c.AckStarted(tKeyed, ids[:1])
			deliver(t, c, tKeyed, ids[1], 1, true)
			c.AckDone(tKeyed, 0, ids[0], Delivery{}, true, nil)
			deliver(t, c, tKeyed, ids[2], 1, true)
		}, false},
		{"first redelivered after a stale ack", func(t *testing.T, c *Checker, ids []int64) {
			deliver(t, c, tKeyed, ids[0], 1, false)
			c.AckStarted(tKeyed, ids[:1])
			c.AckDone(tKeyed, 0, ids[0], Delivery{}, true, fmt.Errorf("late: %w", sluice.ErrStaleLease))
			deliver(t, c, tKeyed, ids[0], 2, true)
			deliver(t, c, tKeyed, ids[1], 1, true)
			deliver(t, c, tKeyed, ids[2], 1, true)
		}, false},
		{"second after a stale ack of the first", func(t *testing.T, c *Checker, ids []int64) {
			deliver(t, c, tKeyed, ids[0], 1, false)
			c.AckStarted(tKeyed, ids[:1])
			c.AckDone(tKeyed, 0, ids[0], Delivery{}, true, fmt.Errorf("late: %w", sluice.ErrStaleLease))
			deliver(t, c, tKeyed, ids[1], 1, true)
			deliver(t, c, tKeyed, ids[0], 2, true)
			deliver(t, c, tKeyed, ids[2], 1, true)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestChecker()
			next := map[int]int64{}
			k := c.NewKey()
			ids := publish(c, next, k, 0, 3)
			for _, sub := range []int{tQueue, tGroup} {
				for _, id := range ids {
					deliver(t, c, sub, id, 1, true)
				}
			}
			tc.run(t, c, ids)
			r := c.Finish(make([][]sluice.DeadLetter, 3))
			if got := r.OrderViolations != 0; got != tc.fails {
				t.Fatalf("order_violations=%d, want a violation: %v; %v", r.OrderViolations, tc.fails, r.Details())
			}
			if r.Failed() != tc.fails {
				t.Fatalf("Failed()=%v, want %v", r.Failed(), tc.fails)
			}
		})
	}
}

func TestCheckerDetectsPartitionOrderViolation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order []int // indexes into the partition's messages, in delivery order
		dead  []int // dead-lettered on the group subscription
		fails bool
	}{
		{"in order", []int{0, 1, 2, 3}, nil, false},
		{"rewound", []int{0, 1, 2, 1, 2, 3}, nil, false},
		{"skipped then delivered", []int{0, 2, 1, 3}, nil, true},
		{"skipped for good", []int{0, 1, 3}, nil, true},
		{"skipped, dead-lettered", []int{0, 1, 3}, []int{2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestChecker()
			ids := publish(c, map[int]int64{}, -1, 1, 4)
			for _, sub := range []int{tQueue, tKeyed} {
				for _, id := range ids {
					deliver(t, c, sub, id, 1, true)
				}
			}
			for _, i := range tc.order {
				deliver(t, c, tGroup, ids[i], 1, true)
			}
			dead := make([][]sluice.DeadLetter, 3)
			for _, i := range tc.dead {
				m := c.msgs[ids[i]]
				dead[tGroup] = append(dead[tGroup], sluice.DeadLetter{Deliveries: 3,
					Source: sluice.Position{Partition: int(m.part), Offset: m.off}, Message: sluice.Record{Body: body(ids[i])}})
			}
			r := c.Finish(dead)
			if got := r.OrderViolations != 0; got != tc.fails {
				t.Fatalf("order_violations=%d, want a violation: %v; %v", r.OrderViolations, tc.fails, r.Details())
			}
		})
	}
}

func TestCheckerDeadLetters(t *testing.T) {
	mk := func(c *Checker, id int64, deliveries int) sluice.DeadLetter {
		m := c.msgs[id]
		return sluice.DeadLetter{Deliveries: deliveries, Attempts: make([]sluice.DeadLetterAttempt, deliveries),
			Source: sluice.Position{Partition: int(m.part), Offset: m.off}, Message: sluice.Record{Body: body(id)}}
	}
	setup := func() (*Checker, int64) {
		c := newTestChecker()
		id, _ := c.NewMessage(c.NewKey(), true)
		c.Published(id, sluice.Position{Partition: 0, Offset: 0})
		for sub := range 3 {
			for no := 1; no <= 3; no++ {
				c.Delivered(sub, 0, []Delivery{{Partition: 0, Offset: 0, Deliveries: no, Body: body(id)}})
			}
		}
		return c, id
	}
	c, id := setup()
	r := c.Finish([][]sluice.DeadLetter{{mk(c, id, 3)}, {mk(c, id, 3)}, {mk(c, id, 3)}})
	if r.Failed() {
		t.Fatalf("sound dead letters failed: %v", r.Details())
	}
	c, id = setup()
	r = c.Finish([][]sluice.DeadLetter{{mk(c, id, 3)}, {mk(c, id, 2)}, {mk(c, id, 3)}})
	if r.DeadLetterMismatches != 1 || !r.Failed() {
		t.Fatalf("dead letter after 2 of 3 deliveries: mismatches=%d: %v", r.DeadLetterMismatches, r.Details())
	}
	c, id = setup()
	r = c.Finish([][]sluice.DeadLetter{{mk(c, id, 3)}, nil, {mk(c, id, 3)}})
	if r.DeadLetterMissing != 1 || !r.Failed() {
		t.Fatalf("poison not dead-lettered: missing=%d: %v", r.DeadLetterMissing, r.Details())
	}
	c, id = setup()
	c.Delivered(tQueue, 0, []Delivery{{Partition: 0, Offset: 0, Deliveries: 4, Body: body(id)}})
	r = c.Finish([][]sluice.DeadLetter{{mk(c, id, 3)}, {mk(c, id, 3)}, {mk(c, id, 3)}})
	if r.OverLimit != 1 || !r.Failed() {
		t.Fatalf("fourth delivery of three: over_limit=%d: %v", r.OverLimit, r.Details())
	}
}

func TestCheckerDetectsIntegrityViolations(t *testing.T) {
	c := newTestChecker()
	ids := publish(c, map[int]int64{}, -1, 0, 1)
	c.Delivered(tQueue, 0, []Delivery{{Partition: 0, Offset: 0, Deliveries: 1, Body: []byte("torture|0|0000000000000000|")}})
	c.Delivered(tKeyed, 0, []Delivery{{Partition: 0, Offset: 7, Deliveries: 1, Body: body(ids[0])}})
	r := c.Finish(make([][]sluice.DeadLetter, 3))
	if r.Corrupt != 1 || r.StoredTwice != 1 || !r.Failed() {
		t.Fatalf("corrupt=%d stored_twice=%d, want 1 and 1: %v", r.Corrupt, r.StoredTwice, r.Details())
	}
}

func TestBodyRoundTrip(t *testing.T) {
	for _, id := range []int64{0, 1, 99, 1 << 40} {
		got, ok := parseBody(body(id))
		if !ok || got != id {
			t.Fatalf("parseBody(body(%d)) = %d, %v", id, got, ok)
		}
	}
	b := body(5)
	b[len(b)-1] ^= 1
	if _, ok := parseBody(b); ok {
		t.Fatal("a changed body parsed")
	}
	if !errors.Is(fmt.Errorf("x: %w", sluice.ErrUnavailable), sluice.ErrUnavailable) || !ackUnknown(sluice.ErrUnavailable) {
		t.Fatal("ErrUnavailable is not an unknown outcome")
	}
}
