package subscription

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// modelMsg is the model's view of one message (partition 0 only).
type modelMsg struct {
	done       bool
	dead       bool
	deliveries int
	lease      uint64 // live lease, 0 when none
	deadline   time.Time
	notBefore  time.Time // earliest redelivery after a failure
}

// TestPropertySubscriptionAgainstModel drives a queue subscription with random
// publishes, fetches, acks, nacks, stale settles, clock jumps and crashes, and
// checks every answer against a simple model: a message is never delivered after
// it is done, never to two holders with live leases, counts its deliveries, is
// dead-lettered exactly at the limit, and everything not done is eventually
// delivered.
func TestPropertySubscriptionAgainstModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		const maxDeliveries = 3
		e := newEnv(t, 1, Config{Name: "p", MaxDeliveries: maxDeliveries, Lease: time.Second,
			BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
		defer func() { e.sub.Close(); e.sub = nil }()
		var msgs []*modelMsg
		type held struct {
			off   int64
			lease uint64
		}
		var holding []held
		check := func(ds []Delivery) {
			now := e.clk.now()
			for _, d := range ds {
				if d.Offset < 0 || int(d.Offset) >= len(msgs) {
					rt.Fatalf("delivered unknown offset %d", d.Offset)
				}
				m := msgs[d.Offset]
				if m.done {
					rt.Fatalf("offset %d delivered after it was done", d.Offset)
				}
				if m.lease != 0 && now.Before(m.deadline) {
					rt.Fatalf("offset %d delivered while leased until %v", d.Offset, m.deadline)
				}
				if m.deliveries > 0 && now.Before(m.notBefore.Add(-time.Millisecond)) {
					rt.Fatalf("offset %d redelivered before its backoff", d.Offset)
				}
				m.deliveries++
				if d.Deliveries != m.deliveries {
					rt.Fatalf("offset %d: delivery count %d, model %d", d.Offset, d.Deliveries, m.deliveries)
				}
				m.lease, m.deadline = d.Lease, d.Deadline
				holding = append(holding, held{d.Offset, d.Lease})
			}
		}
		// expire applies lease expiries the model knows about.
		expire := func() {
			now := e.clk.now()
			for _, m := range msgs {
				if m.lease != 0 && !now.Before(m.deadline) {
					m.lease = 0
					m.notBefore = m.deadline
					if m.deliveries >= maxDeliveries {
						m.done, m.dead = true, true
					}
				}
			}
		}
		settle := func(kind string) {
			if len(holding) == 0 {
				return
			}
			i := rapid.IntRange(0, len(holding)-1).Draw(rt, "which")
			h := holding[i]
			holding = append(holding[:i], holding[i+1:]...)
			m := msgs[h.off]
			expire()
			live := m.lease == h.lease && !m.done
			var err error
			switch kind {
			case "ack":
				err = e.sub.Ack(e.ctx, 0, h.off, h.lease)
			case "nack":
				err = e.sub.Nack(e.ctx, 0, h.off, h.lease, nil, "x")
			}
			if !live {
				if !errors.Is(err, ErrStaleLease) {
					rt.Fatalf("%s of a stale lease on %d: %v", kind, h.off, err)
				}
				return
			}
			if err != nil {
				rt.Fatalf("%s of %d: %v", kind, h.off, err)
			}
			m.lease = 0
			switch {
			case kind == "ack":
				m.done = true
			case m.deliveries >= maxDeliveries:
				m.done, m.dead = true, true
			default:
				m.notBefore = e.clk.now().Add(time.Millisecond)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"publish": func(rt *rapid.T) {
				for range rapid.IntRange(1, 5).Draw(rt, "n") {
					e.publish(0, fmt.Sprint(len(msgs)))
					msgs = append(msgs, &modelMsg{})
				}
			},
			"fetch": func(rt *rapid.T) {
				expire()
				ctx, cancel := context.WithTimeout(e.ctx, 5*time.Millisecond)
				ds, err := e.sub.Fetch(ctx, rapid.SampledFrom([]string{"a", "b"}).Draw(rt, "consumer"), rapid.IntRange(1, 4).Draw(rt, "limit"), 1000)
				cancel()
				if err != nil && ctx.Err() == nil {
					rt.Fatal(err)
				}
				check(ds)
			},
			"ack":  func(rt *rapid.T) { settle("ack") },
			"nack": func(rt *rapid.T) { settle("nack") },
			"clock": func(rt *rapid.T) {
				e.clk.advance(time.Duration(rapid.IntRange(1, 1500).Draw(rt, "ms")) * time.Millisecond)
			},
			"crash": func(rt *rapid.T) {
				e.kill()
				for _, m := range msgs {
					if m.lease != 0 { // a crash ends every lease; the delivery counted
						m.lease = 0
						if m.deliveries >= maxDeliveries {
							m.done, m.dead = true, true
						}
					}
				}
				holding = nil
			},
		})
		// Liveness: everything not done is delivered once time moves on.
		e.clk.advance(time.Hour)
		expire()
		for {
			ctx, cancel := context.WithTimeout(e.ctx, 5*time.Millisecond)
			ds, _ := e.sub.Fetch(ctx, "z", 1000, 10000)
			cancel()
			if len(ds) == 0 {
				break
			}
			check(ds)
			for _, d := range ds {
				msgs[d.Offset].lease = 0
				if err := e.sub.Ack(e.ctx, 0, d.Offset, d.Lease); err != nil {
					rt.Fatal(err)
				}
				msgs[d.Offset].done = true
			}
		}
		dead := 0
		for i, m := range msgs {
			if !m.done {
				rt.Fatalf("offset %d never delivered to completion", i)
			}
			if m.dead {
				dead++
			}
		}
		if got := len(e.deadLetters()); got != dead {
			rt.Fatalf("%d dead letters, model %d", got, dead)
		}
	})
}

// TestPropertyPartitionedGroupAgainstModel drives a partitioned subscription with
// random publishes, members joining, leaving and going silent, fetches, acks,
// nacks and crashes, and checks: a member only gets messages of partitions it
// owns; no acknowledged message comes back; within a partition nothing is
// delivered below an offset that was already acknowledged; and everything is
// settled in the end.
func TestPropertyPartitionedGroupAgainstModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		const parts = 3
		e := newEnv(t, parts, Config{Name: "g", Mode: ModePartitioned, Session: time.Second, Lease: time.Hour,
			MaxDeliveries: 1000, BackoffInitial: time.Millisecond, BackoffMax: time.Millisecond})
		defer func() { e.sub.Close(); e.sub = nil }()
		published := make([]int64, parts) // per partition: messages published
		acked := make([]map[int64]bool, parts)
		maxAcked := make([]int64, parts)
		for p := range acked {
			acked[p], maxAcked[p] = map[int64]bool{}, -1
		}
		var members []string
		held := map[string][]Delivery{}
		owns := func(m string, p int) bool {
			ms, _ := e.sub.Members()
			for _, mi := range ms {
				if mi.Name == m {
					return slices.Contains(mi.Partitions, p)
				}
			}
			return false
		}
		fetch := func(m string, limit int) {
			ctx, cancel := context.WithTimeout(e.ctx, 5*time.Millisecond)
			ds, err := e.sub.Fetch(ctx, m, limit, 1000)
			cancel()
			if err != nil && ctx.Err() == nil {
				rt.Fatal(err)
			}
			for _, d := range ds {
				switch {
				case !owns(m, d.Partition):
					rt.Fatalf("%s got partition %d it does not own", m, d.Partition)
				case acked[d.Partition][d.Offset]:
					rt.Fatalf("acknowledged %d/%d delivered again", d.Partition, d.Offset)
				case d.Offset < maxAcked[d.Partition]:
					rt.Fatalf("%d/%d delivered after %d was acknowledged", d.Partition, d.Offset, maxAcked[d.Partition])
				}
			}
			held[m] = append(held[m], ds...)
		}
		rt.Repeat(map[string]func(*rapid.T){
			"publish": func(rt *rapid.T) {
				p := rapid.IntRange(0, parts-1).Draw(rt, "partition")
				e.publish(p, fmt.Sprint(published[p]))
				published[p]++
			},
			"join": func(rt *rapid.T) {
				if len(members) < 4 {
					m := fmt.Sprintf("m%d", rapid.IntRange(0, 9).Draw(rt, "member"))
					if !slices.Contains(members, m) {
						members = append(members, m)
						fetch(m, 1)
					}
				}
			},
			"leave": func(rt *rapid.T) {
				if len(members) > 0 {
					k := rapid.IntRange(0, len(members)-1).Draw(rt, "who")
					e.sub.Leave(members[k])
					delete(held, members[k])
					members = append(members[:k], members[k+1:]...)
				}
			},
			"fetch": func(rt *rapid.T) {
				if len(members) > 0 {
					fetch(rapid.SampledFrom(members).Draw(rt, "member"), rapid.IntRange(1, 5).Draw(rt, "limit"))
				}
			},
			"settle": func(rt *rapid.T) {
				if len(members) == 0 {
					return
				}
				m := rapid.SampledFrom(members).Draw(rt, "member")
				if len(held[m]) == 0 {
					return
				}
				d := held[m][0] // a member works through its deliveries in order
				held[m] = held[m][1:]
				if rapid.IntRange(0, 5).Draw(rt, "fail") == 0 {
					if err := e.sub.Nack(e.ctx, d.Partition, d.Offset, d.Lease, nil, "x"); err != nil && !errors.Is(err, ErrStaleLease) {
						rt.Fatal(err)
					}
					return
				}
				err := e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease)
				if errors.Is(err, ErrStaleLease) {
					return
				}
				if err != nil {
					rt.Fatal(err)
				}
				acked[d.Partition][d.Offset] = true
				maxAcked[d.Partition] = max(maxAcked[d.Partition], d.Offset)
			},
			"silence": func(rt *rapid.T) { // time passes; members that do not fetch expire
				e.clk.advance(time.Duration(rapid.IntRange(1, 1500).Draw(rt, "ms")) * time.Millisecond)
			},
			"crash": func(rt *rapid.T) {
				e.kill()
				members, held = nil, map[string][]Delivery{}
			},
		})
		// Liveness: one member drains everything.
		e.clk.advance(time.Hour)
		for {
			ctx, cancel := context.WithTimeout(e.ctx, 5*time.Millisecond)
			ds, _ := e.sub.Fetch(ctx, "last", 1000, 10000)
			cancel()
			if len(ds) == 0 {
				break
			}
			for _, d := range ds {
				if acked[d.Partition][d.Offset] {
					rt.Fatalf("acknowledged %d/%d delivered again", d.Partition, d.Offset)
				}
				if err := e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease); err != nil {
					rt.Fatal(err)
				}
				acked[d.Partition][d.Offset] = true
			}
		}
		for p := range parts {
			if int64(len(acked[p])) != published[p] {
				rt.Fatalf("partition %d: %d of %d settled", p, len(acked[p]), published[p])
			}
		}
	})
}
