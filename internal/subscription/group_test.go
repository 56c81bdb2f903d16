package subscription

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPartitionedAssignmentIsStickyAndBalanced(t *testing.T) {
	e := newEnv(t, 6, Config{Name: "g", Mode: ModePartitioned, Session: time.Second})
	e.fetch("a", 1)
	members, gen := e.sub.Members()
	if len(members) != 1 || len(members[0].Partitions) != 6 {
		t.Fatalf("one member: %+v", members)
	}
	before := members[0].Partitions
	e.fetch("b", 1)
	e.fetch("c", 1)
	members, gen2 := e.sub.Members()
	if gen2 <= gen {
		t.Fatalf("generation did not move: %d -> %d", gen, gen2)
	}
	for _, m := range members {
		if len(m.Partitions) != 2 {
			t.Fatalf("unbalanced: %+v", members)
		}
	}
	if a := members[0]; a.Name != "a" || !isSubset(a.Partitions, before) {
		t.Fatalf("a lost partitions it could keep: %+v", members)
	}
	// c stops fetching: after its session its partitions go to the others.
	e.clk.advance(800 * time.Millisecond)
	e.fetch("a", 1)
	e.fetch("b", 1)
	e.clk.advance(800 * time.Millisecond)
	e.fetch("a", 1)
	members, _ = e.sub.Members()
	if len(members) != 2 || len(members[0].Partitions) != 3 || len(members[1].Partitions) != 3 {
		t.Fatalf("after c expired: %+v", members)
	}
	e.sub.Leave("b")
	members, _ = e.sub.Members()
	if len(members) != 1 || len(members[0].Partitions) != 6 {
		t.Fatalf("after b left: %+v", members)
	}
}

func isSubset(a, b []int) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// TestPartitionedOrderAndNoLossAcrossRebalances: members join, crash (stop
// fetching) and fail messages at random; every partition is settled in offset
// order, across every reassignment, and nothing is lost.
func TestPartitionedOrderAndNoLossAcrossRebalances(t *testing.T) {
	const parts, perPart = 4, 60
	e := newEnv(t, parts, Config{Name: "g", Mode: ModePartitioned, Session: time.Second, Lease: time.Hour,
		MaxDeliveries: 1000, BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
	for i := range perPart {
		for p := range parts {
			e.publish(p, fmt.Sprintf("p%d-%d", p, i))
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	live := []string{"m0"}
	nextID := 1
	acked := make([][]int64, parts) // per partition, offsets in the order they were acked
	total := 0
	for step := 0; total < parts*perPart && step < 20000; step++ {
		switch r := rng.IntN(100); {
		case r < 3 && len(live) < 5: // a member joins
			live = append(live, fmt.Sprintf("m%d", nextID))
			nextID++
		case r < 5 && len(live) > 1: // a member crashes: it just stops fetching
			k := rng.IntN(len(live))
			live = append(live[:k], live[k+1:]...)
		}
		e.clk.advance(100 * time.Millisecond)
		for _, m := range live {
			for _, d := range e.fetch(m, 1+rng.IntN(5)) {
				var err error
				if rng.IntN(8) == 0 {
					err = e.sub.Nack(e.ctx, d.Partition, d.Offset, d.Lease, nil, "flaky")
				} else {
					err = e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease)
					if err == nil {
						acked[d.Partition] = append(acked[d.Partition], d.Offset)
						total++
					}
				}
				if err != nil && !errors.Is(err, ErrStaleLease) {
					t.Fatal(err)
				}
			}
		}
	}
	for p, offs := range acked {
		if len(offs) != perPart {
			t.Fatalf("partition %d: %d of %d settled", p, len(offs), perPart)
		}
		for i, off := range offs {
			if off != int64(i) {
				t.Fatalf("partition %d settled out of order: %v", p, offs)
			}
		}
	}
}

func TestPartitionedFailureHoldsBackThePartition(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "g", Mode: ModePartitioned, BackoffInitial: time.Minute, BackoffMax: time.Minute})
	for i := range 5 {
		e.publish(0, fmt.Sprint(i))
	}
	ds := e.fetch("m", 3) // 0, 1, 2 in flight, in order
	if got := values(ds); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("first fetch: %v", got)
	}
	e.ack(ds[0])
	e.nack(ds[1], "boom") // 2 is revoked: it must come after 1 again
	if err := e.sub.Ack(e.ctx, 0, ds[2].Offset, ds[2].Lease); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("ack of a message revoked behind a failure: %v", err)
	}
	if got := e.fetch("m", 10); len(got) != 0 {
		t.Fatalf("delivered past a failed message: %v", values(got))
	}
	e.clk.advance(time.Minute)
	if got := values(e.fetch("m", 10)); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("after the retry delay: %v", got)
	}
}

// TestPartitionedRevokedCopyIsFencedNotRedelivered is the history the kill -9
// torture once reported as "acked then redelivered": member a is handed a
// partition's messages, b joins and the rebalance revokes them while they are
// on their way to a, b is handed them and acks them, and only then does a's
// copy reach a. The subscription handed the messages out before b's ack, not
// after: a's copy has lower fencing tokens (they increase with every hand-out,
// which is how a checker orders them), its settlements fail, and nothing hands
// the messages out again.
func TestPartitionedRevokedCopyIsFencedNotRedelivered(t *testing.T) {
	e := newEnv(t, 2, Config{Name: "g", Mode: ModePartitioned, Session: time.Minute, Lease: 3 * time.Second})
	for i := range 3 {
		e.publish(0, fmt.Sprintf("p0-%d", i))
		e.publish(1, fmt.Sprintf("p1-%d", i))
	}
	var last uint64
	increasing := func(ds []Delivery) {
		t.Helper()
		for _, d := range ds {
			if d.Lease <= last {
				t.Fatalf("lease %d handed out after lease %d", d.Lease, last)
			}
			last = d.Lease
		}
	}
	toA := e.fetch("a", 10) // a is alone: both partitions
	increasing(toA)
	if len(toA) != 6 {
		t.Fatalf("a got %v", values(toA))
	}
	e.clk.advance(time.Millisecond)
	toB := e.fetch("b", 10) // b joins: the rebalance moves partition 1 and revokes a's leases there
	increasing(toB)
	if got := values(toB); !slices.Equal(got, []string{"p1-0", "p1-1", "p1-2"}) {
		t.Fatalf("b got %v", got)
	}
	for _, d := range toB {
		if d.Deliveries != 1 {
			t.Fatalf("revoked delivery counted: %+v", d)
		}
		e.ack(d)
	}
	// a's copies arrive now: fenced.
	for _, d := range toA {
		err := e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease)
		switch {
		case d.Partition == 0 && err != nil:
			t.Fatalf("ack of a's own partition: %v", err)
		case d.Partition == 1 && !errors.Is(err, ErrStaleLease):
			t.Fatalf("ack of a revoked copy after b's ack: %v, want ErrStaleLease", err)
		}
	}
	// Past every lease and session, neither member is handed anything again.
	for range 3 {
		e.clk.advance(time.Minute)
		for _, m := range []string{"a", "b"} {
			if got := e.fetch(m, 10); len(got) != 0 {
				t.Fatalf("%s was handed acked messages again: %v", m, values(got))
			}
		}
	}
	if info := e.sub.Info(); info.Backlog != 0 || info.InFlight != 0 {
		t.Fatalf("backlog %d, in flight %d after every message was acked", info.Backlog, info.InFlight)
	}
}
