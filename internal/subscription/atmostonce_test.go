package subscription

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
)

// publishDelayed appends one message with key to partition p, not to be
// delivered before at.
func (e *env) publishDelayed(p int, key, value string, at time.Time) {
	e.t.Helper()
	r := batch.Record{Timestamp: e.clk.now().UnixMilli(), Key: []byte(key), Value: []byte(value),
		Headers: []batch.RecordHeader{{Key: DeliverAtHeader, Value: []byte(fmt.Sprint(at.UnixMilli()))}}}
	if _, err := e.parts[p].Append(e.ctx, batch.Append(nil, []batch.Record{r})); err != nil {
		e.t.Fatal(err)
	}
}

// drain fetches in batches of limit until nothing is available.
func (e *env) drain(consumer string, limit int) []Delivery {
	e.t.Helper()
	var out []Delivery
	for {
		ds := e.fetch(consumer, limit)
		if len(ds) == 0 {
			return out
		}
		out = append(out, ds...)
	}
}

// checkSettledOnFetch checks what every at_most_once delivery must look like: a
// first delivery, with no lease and no deadline.
func checkSettledOnFetch(t *testing.T, ds []Delivery) {
	t.Helper()
	for _, d := range ds {
		if d.Lease != 0 || !d.Deadline.IsZero() || d.Deliveries != 1 {
			t.Fatalf("at_most_once delivery %s at %d/%d: lease %d, deadline %v, deliveries %d; want 0, zero, 1",
				d.Value, d.Partition, d.Offset, d.Lease, d.Deadline, d.Deliveries)
		}
	}
}

var allModes = []Mode{ModeQueue, ModeKeyOrdered, ModePartitioned}

// TestAtMostOnceFetchedMessagesNeverComeBack: in every mode, what one Fetch handed
// out is never handed out again, whether the subscription goes on after a lease's
// worth of time, is closed and reopened, or is killed without compacting; and
// every other message is handed out once, in key order (key_ordered) or partition
// order (partitioned).
func TestAtMostOnceFetchedMessagesNeverComeBack(t *testing.T) {
	const lease = time.Second
	afters := []struct {
		name string
		do   func(e *env)
	}{
		{"lease expired", func(e *env) { e.clk.advance(3 * lease) }},
		{"restart", (*env).restart},
		{"kill", (*env).kill},
	}
	for _, mode := range allModes {
		for _, after := range afters {
			t.Run(string(mode)+"/"+after.name, func(t *testing.T) {
				e := newEnv(t, 2, Config{Name: "amo", Mode: mode, Delivery: AtMostOnce, Lease: lease})
				const n = 60
				for i := range n {
					e.publishKeyed(i%2, fmt.Sprintf("k%d", i%5), fmt.Sprintf("m%d", i))
				}
				var first []Delivery
				for len(first) < n/2 {
					ds := e.fetch("a", 7)
					if len(ds) == 0 {
						t.Fatalf("nothing to fetch after %d of %d messages", len(first), n)
					}
					first = append(first, ds...)
				}
				checkSettledOnFetch(t, first)
				if info := e.sub.Info(); info.InFlight != 0 || info.Waiting != 0 {
					t.Fatalf("after fetching %d: in flight %d, waiting %d; want none", len(first), info.InFlight, info.Waiting)
				}
				after.do(e)
				// Another consumer takes the rest; in partitioned mode the same one,
				// which still owns its partitions until its session ends.
				next := "b"
				if mode == ModePartitioned {
					next = "a"
				}
				rest := e.drain(next, 7)
				checkSettledOnFetch(t, rest)
				all := append(slices.Clone(first), rest...)
				count := map[string]int{}
				for _, d := range all {
					count[string(d.Value)]++
				}
				for i := range n {
					if c := count[fmt.Sprintf("m%d", i)]; c != 1 {
						t.Errorf("m%d handed out %d times, want once", i, c)
					}
				}
				// Hand-out order: by key within a partition (key_ordered), by
				// partition (partitioned).
				last := map[string]int64{}
				for _, d := range all {
					var k string
					switch mode {
					case ModeKeyOrdered:
						k = fmt.Sprintf("%d/%s", d.Partition, d.Key)
					case ModePartitioned:
						k = fmt.Sprint(d.Partition)
					default:
						continue
					}
					if prev, ok := last[k]; ok && d.Offset < prev {
						t.Errorf("%s: offset %d handed out after %d", k, d.Offset, prev)
					}
					last[k] = d.Offset
				}
				info := e.sub.Info()
				if info.Backlog != 0 || info.InFlight != 0 || info.DeadLettered != 0 || info.Redeliveries != 0 {
					t.Fatalf("after handing out everything: %+v", info)
				}
				for i, p := range info.Partitions {
					if p.Floor != n/2 || p.Next != n/2 {
						t.Fatalf("partition %d: floor %d, next %d; want both %d", i, p.Floor, p.Next, n/2)
					}
				}
			})
		}
	}
}

// TestAtMostOnceJournalHoldsEachDeliveryWithItsAck reads the journal: every
// deliver event is followed, in the same record batch, by the ack of the same
// message; and a replay of it (a kill, then open) leaves those messages settled,
// in the state the live subscription had, delayed messages among them included.
func TestAtMostOnceJournalHoldsEachDeliveryWithItsAck(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, 2, Config{Name: "amo", Mode: mode, Delivery: AtMostOnce})
			const n = 40
			for i := range n {
				if i%7 == 3 {
					e.publishDelayed(i%2, fmt.Sprintf("k%d", i%3), fmt.Sprintf("m%d", i), e.clk.now().Add(time.Hour))
					continue
				}
				e.publishKeyed(i%2, fmt.Sprintf("k%d", i%3), fmt.Sprintf("m%d", i))
			}
			fetched := 0
			for _, limit := range []int{1, 3, 8} {
				fetched += len(e.fetch("a", limit))
			}
			delivers := 0
			j := e.sub.journal
			for off := j.StartOffset(); off < j.HighWatermark(); {
				data, next, err := j.Read(off, 1<<20, nil)
				if err != nil {
					t.Fatal(err)
				}
				for len(data) > 0 {
					size, err := batch.PeekSize(data)
					if err != nil {
						t.Fatal(err)
					}
					var evs []event
					if err := batch.Each(data[:size], func(r *batch.Record) bool {
						ev, err := decodeEvent(r.Value)
						if err != nil {
							t.Fatal(err)
						}
						evs = append(evs, ev)
						return true
					}); err != nil {
						t.Fatal(err)
					}
					for k, ev := range evs {
						if ev.kind != evDeliver {
							continue
						}
						delivers++
						if !slices.ContainsFunc(evs[k+1:], func(a event) bool {
							return a.kind == evAck && a.partition == ev.partition && a.offset == ev.offset
						}) {
							t.Fatalf("deliver %d/%d has no ack after it in its batch: %+v", ev.partition, ev.offset, evs)
						}
					}
					data = data[size:]
				}
				off = next
			}
			if delivers != fetched {
				t.Fatalf("journal holds %d deliveries, Fetch returned %d", delivers, fetched)
			}
			live := e.sub.Info()
			e.kill()
			replayed := e.sub.Info()
			if !slices.Equal(live.Partitions, replayed.Partitions) {
				t.Fatalf("live state %+v, after replay %+v", live.Partitions, replayed.Partitions)
			}
			if replayed.InFlight != 0 || replayed.Backlog != int64(n-fetched) {
				t.Fatalf("after replay: %+v; want nothing in flight and a backlog of %d", replayed, n-fetched)
			}
		})
	}
}

// TestAtMostOnceDelayedMessagesStillWait: a message with a deliver-at time in the
// future is not handed out before it, in every mode, and then once; key_ordered
// holds its key behind it and partitioned holds its partition.
func TestAtMostOnceDelayedMessagesStillWait(t *testing.T) {
	for _, tc := range []struct {
		mode        Mode
		before, due []string // handed out before the delay is over, and after
	}{
		{ModeQueue, []string{"a0", "a3", "b2"}, []string{"b1"}},
		{ModeKeyOrdered, []string{"a0", "a3"}, []string{"b1", "b2"}},
		{ModePartitioned, []string{"a0"}, []string{"b1", "b2", "a3"}},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			e := newEnv(t, 1, Config{Name: "amo", Mode: tc.mode, Delivery: AtMostOnce})
			at := e.clk.now().Add(time.Minute)
			e.publishKeyed(0, "a", "a0")
			e.publishDelayed(0, "b", "b1", at)
			e.publishKeyed(0, "b", "b2")
			e.publishKeyed(0, "a", "a3")
			before := e.drain("c", 10)
			got := values(before)
			if tc.mode == ModeQueue {
				slices.Sort(got)
			}
			if !slices.Equal(got, tc.before) {
				t.Fatalf("before the deliver-at time: %v, want %v", got, tc.before)
			}
			if info := e.sub.Info(); info.Delayed != 1 || info.NextDue != at.UnixMilli() {
				t.Fatalf("before the deliver-at time: delayed %d, next due %d; want 1, %d", info.Delayed, info.NextDue, at.UnixMilli())
			}
			e.restart()
			e.clk.advance(59 * time.Second)
			if ds := e.fetch("c", 10); len(ds) != 0 {
				t.Fatalf("a second early: %v", values(ds))
			}
			e.clk.advance(time.Second)
			due := e.drain("c", 10)
			checkSettledOnFetch(t, append(before, due...))
			if got := values(due); !slices.Equal(got, tc.due) {
				t.Fatalf("once due: %v, want %v", got, tc.due)
			}
			e.kill()
			e.clk.advance(time.Hour)
			if ds := e.fetch("c", 10); len(ds) != 0 {
				t.Fatalf("after a kill: %v handed out again", values(ds))
			}
		})
	}
}

// TestAtMostOnceKeyOrderedHandsOutARunOfAKeyInOneFetch: nothing waits for a
// settled delivery, so one Fetch may take several messages of a key, in order.
func TestAtMostOnceKeyOrderedHandsOutARunOfAKeyInOneFetch(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "amo", Mode: ModeKeyOrdered, Delivery: AtMostOnce})
	for i := range 5 {
		e.publishKeyed(0, "k", fmt.Sprint(i))
	}
	if got := values(e.fetch("c", 10)); !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("one fetch: %v", got)
	}
	if info := e.sub.Info(); info.Held != 0 || info.Backlog != 0 {
		t.Fatalf("after the fetch: %+v", info)
	}
}

// TestAtMostOnceHasNothingToSettle: ack, nack, term and extend of an
// at_most_once delivery find no lease.
func TestAtMostOnceHasNothingToSettle(t *testing.T) {
	e := newEnv(t, 1, Config{Name: "amo", Delivery: AtMostOnce})
	e.publish(0, "x")
	ds := e.fetch("c", 1)
	if len(ds) != 1 {
		t.Fatalf("fetched %d", len(ds))
	}
	d := ds[0]
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"ack", func() error { return e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease) }},
		{"nack", func() error { return e.sub.Nack(e.ctx, d.Partition, d.Offset, d.Lease, nil, "x") }},
		{"term", func() error { return e.sub.Term(e.ctx, d.Partition, d.Offset, d.Lease, "x") }},
		{"extend", func() error { _, err := e.sub.Extend(d.Partition, d.Offset, d.Lease, time.Minute); return err }},
	} {
		if err := op.do(); !errors.Is(err, ErrStaleLease) {
			t.Errorf("%s: %v, want ErrStaleLease", op.name, err)
		}
	}
	if ds := e.fetch("c", 1); len(ds) != 0 || len(e.deadLetters()) != 0 {
		t.Fatalf("after nack and term: fetched %v, %d dead letters", values(ds), len(e.deadLetters()))
	}
}

func TestDeliveryGuaranteeConfig(t *testing.T) {
	if d := (Config{Name: "x"}).WithDefaults().Delivery; d != AtLeastOnce {
		t.Fatalf("default delivery %q, want %q", d, AtLeastOnce)
	}
	for _, tc := range []struct {
		delivery DeliveryGuarantee
		ok       bool
	}{
		{"", true},
		{AtLeastOnce, true},
		{AtMostOnce, true},
		{"exactly_once", false},
		{"AT_MOST_ONCE", false},
	} {
		err := Config{Name: "x", Delivery: tc.delivery}.Validate()
		var fe *FieldError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%q: %v", tc.delivery, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Field != "SubscriptionConfig.Delivery"):
			t.Errorf("%q: %v, want a FieldError naming SubscriptionConfig.Delivery", tc.delivery, err)
		}
	}
}

// MaxPending holds under at_most_once too: delayed messages are tracked, and the
// partition reads no further than MaxPending of them.
func TestAtMostOnceMaxPendingIsEnforced(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes over 200,000 messages")
	}
	e := newEnv(t, 1, Config{Name: "amo", Delivery: AtMostOnce})
	at := fmt.Sprint(e.clk.now().Add(time.Hour).UnixMilli())
	const n = MaxPending + 5000
	for i := 0; i < n; i += 10000 {
		var recs []batch.Record
		for j := i; j < min(n, i+10000); j++ {
			recs = append(recs, batch.Record{Value: []byte(fmt.Sprint(j)), Headers: []batch.RecordHeader{{Key: DeliverAtHeader, Value: []byte(at)}}})
		}
		if _, err := e.parts[0].Append(e.ctx, batch.Append(nil, recs)); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(0, "now")
	for range 30 {
		if ds := e.fetch("c", 10); len(ds) != 0 {
			t.Fatalf("handed out %v from behind %d delayed messages", values(ds), n)
		}
	}
	if info := e.sub.Info(); info.Delayed > MaxPending || info.Delayed < MaxPending-maxEventsPerDispatch {
		t.Fatalf("delayed %d, limit %d", info.Delayed, MaxPending)
	}
}
