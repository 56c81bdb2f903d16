package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
)

// subKind is what a subscription's mode lets the checker verify beyond
// delivery: nothing more (queue), key order, or partition order.
type subKind uint8

const (
	kindQueue subKind = iota
	kindKeyed
	kindPartitioned
)

// Publish states of a message.
const (
	pubMaybe uint8 = iota + 1 // started; stored or not
	pubAcked                  // the publish returned a position
)

// Flags of a (subscription, message) pair.
const (
	ackOK    uint8 = 1 << iota // an Ack sent before the lease deadline returned nil
	ackMaybe                   // an Ack returned nil late, or with an unknown outcome
)

// maxDetails is how many violations of each kind a report keeps for printing.
const maxDetails = 10

// msgInfo is what the checker knows of one message; its index is the id.
type msgInfo struct {
	off    int64 // -1 until known
	kseq   uint32
	key    int32 // -1: no key
	part   int16 // -1 until known
	pub    uint8
	poison bool
}

// subMsg is one message as one subscription delivered it.
type subMsg struct {
	ackLease    uint64 // the lease of the delivery whose Ack set ackOK
	ackDeadline int64  // its deadline, unix ms
	n           uint16 // deliveries received (saturating)
	pending     uint8  // acks started and not answered (saturating)
	flags       uint8
	ackBy       uint8 // the consumer whose Ack set ackOK
	ackEpoch    uint8 // the server's start count (mod 256) when that Ack was answered
}

// partTrack follows the first deliveries of one partition on a partitioned
// subscription: seen is a bitmap of offsets delivered, next the lowest offset
// not delivered yet.
type partTrack struct {
	seen []uint64
	next int64
}

func (t *partTrack) has(o int64) bool {
	i := o / 64
	return i < int64(len(t.seen)) && t.seen[i]&(1<<(o%64)) != 0
}

func (t *partTrack) set(o int64) {
	i := o / 64
	for int64(len(t.seen)) <= i {
		t.seen = append(t.seen, 0)
	}
	t.seen[i] |= 1 << (o % 64)
}

// orderCand is a possible order violation, resolved at the end: it is excused
// when the message it names was dead-lettered by the subscription (and so may
// never have reached a consumer).
type orderCand struct {
	sub  int
	part int   // partitioned: the partition; keyed: -1
	off  int64 // partitioned: the offset skipped
	msg  int64 // keyed: the previous message of the key, not settled
	by   string
}

// maxCands bounds the order candidates kept; beyond it each one counts as a
// violation at once.
const maxCands = 100000

// Checker records what the producers and consumers saw and checks it. It is
// safe for concurrent use.
type Checker struct {
	mu            sync.Mutex
	subs          []subSpec
	maxDeliveries int
	msgs          []msgInfo
	state         [][]subMsg           // [sub][msg]
	keys          [][]uint32           // [key][kseq] -> msg
	offsets       [][]int32            // [partition][offset] -> msg+1 (0: unknown)
	parts         map[int][]*partTrack // [sub][partition], partitioned subscriptions
	cands         map[orderCand]bool
	epoch         int // server starts so far, for the violation details
	r             Report
}

// SetEpoch records how many times the server was started so far.
func (c *Checker) SetEpoch(n int) {
	c.mu.Lock()
	c.epoch = n
	c.mu.Unlock()
}

// subSpec names a subscription and what the checker verifies on it.
type subSpec struct {
	name string
	kind subKind
}

// NewChecker returns a checker for the subscriptions subs, whose MaxDeliveries
// is maxDeliveries, over a stream of partitions partitions.
func NewChecker(subs []subSpec, partitions, maxDeliveries int) *Checker {
	c := &Checker{subs: subs, maxDeliveries: maxDeliveries, state: make([][]subMsg, len(subs)),
		offsets: make([][]int32, partitions), parts: map[int][]*partTrack{}, cands: map[orderCand]bool{}}
	for i, s := range subs {
		if s.kind == kindPartitioned {
			pts := make([]*partTrack, partitions)
			for p := range pts {
				pts[p] = &partTrack{}
			}
			c.parts[i] = pts
		}
	}
	return c
}

// NewKey returns a new key id.
func (c *Checker) NewKey() int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys = append(c.keys, nil)
	return int32(len(c.keys) - 1)
}

// NewMessage registers a message about to be published with key (-1: none)
// and returns its id and its sequence number within the key. The caller
// publishes a key's messages one after the other, each once the previous one
// was acknowledged.
func (c *Checker) NewMessage(key int32, poison bool) (id int64, kseq uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id = int64(len(c.msgs))
	m := msgInfo{off: -1, part: -1, key: key, pub: pubMaybe, poison: poison}
	if key >= 0 {
		m.kseq = uint32(len(c.keys[key]))
		c.keys[key] = append(c.keys[key], uint32(id))
	}
	c.msgs = append(c.msgs, m)
	for i := range c.state {
		c.state[i] = append(c.state[i], subMsg{})
	}
	c.r.Published++
	return id, m.kseq
}

// Published records the acknowledged publish of message id at pos.
func (c *Checker) Published(id int64, pos sluice.Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := &c.msgs[id]
	if m.pub != pubAcked {
		m.pub = pubAcked
		c.r.Acked++
	}
	c.placeLocked(id, pos.Partition, pos.Offset, "publish")
}

// placeLocked records that message id is stored at (part, off), and reports a
// message stored at two positions.
func (c *Checker) placeLocked(id int64, part int, off int64, by string) {
	m := &c.msgs[id]
	if m.off >= 0 {
		if int(m.part) != part || m.off != off {
			c.r.StoredTwice++
			c.r.detail(&c.r.StoredTwiceDetails, fmt.Sprintf("message %d at %d/%d and at %d/%d (seen by %s)", id, m.part, m.off, part, off, by))
		}
		return
	}
	if part < 0 || part >= len(c.offsets) || off < 0 {
		c.r.Corrupt++
		c.r.detail(&c.r.CorruptDetails, fmt.Sprintf("message %d at impossible position %d/%d", id, part, off))
		return
	}
	m.part, m.off = int16(part), off
	o := c.offsets[part]
	for int64(len(o)) <= off {
		o = append(o, 0)
	}
	o[off] = int32(id + 1)
	c.offsets[part] = o
}

// Delivery is what the checker needs of a sluice.Delivery.
type Delivery struct {
	Partition  int
	Offset     int64
	Deliveries int
	Body       []byte
	// Lease and Deadline tell when the subscription handed the delivery out,
	// relative to the others: fencing tokens increase with every hand-out, and
	// the deadline is the hand-out time plus the subscription's Lease. Zero
	// when unknown.
	Lease    uint64
	Deadline time.Time
}

// Delivered records deliveries received by consumer con of subscription sub
// and returns, for each, the message id (-1 for a body the driver did not
// write) and whether it is poison.
func (c *Checker) Delivered(sub, con int, ds []Delivery) (ids []int64, poison []bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids = make([]int64, len(ds))
	poison = make([]bool, len(ds))
	for i, d := range ds {
		id, ok := parseBody(d.Body)
		if !ok || id >= int64(len(c.msgs)) {
			c.r.Corrupt++
			c.r.detail(&c.r.CorruptDetails, fmt.Sprintf("%s: body at %d/%d is not one the driver wrote: %.60q", c.subs[sub].name, d.Partition, d.Offset, d.Body))
			ids[i] = -1
			continue
		}
		ids[i], poison[i] = id, c.msgs[id].poison
		c.deliveredLocked(sub, con, id, d)
	}
	return ids, poison
}

func (c *Checker) deliveredLocked(sub, con int, id int64, d Delivery) {
	name := c.subs[sub].name
	c.placeLocked(id, d.Partition, d.Offset, name)
	m := &c.msgs[id]
	s := &c.state[sub][id]
	c.r.Deliveries++
	switch {
	case s.flags&ackOK == 0:
	case handedOutBefore(d, s):
		// A copy the subscription handed out before the acked delivery, whose
		// lease was revoked (a rebalance, or a failure before it) or expired,
		// reached its consumer only now: it is fenced (its Ack fails with
		// ErrStaleLease), not delivered again.
		c.r.FencedCopies++
	default:
		c.r.AckedRedelivered++
		c.r.detail(&c.r.AckedRedeliveredDetails, fmt.Sprintf("%s: message %d at %d/%d delivered again (delivery %d, to consumer %d, server start %d, lease %d) after an Ack within its lease returned nil (consumer %d, server start %d, lease %d)",
			name, id, d.Partition, d.Offset, d.Deliveries, con, c.epoch, d.Lease, s.ackBy, s.ackEpoch, s.ackLease))
	}
	if d.Deliveries > c.maxDeliveries || d.Deliveries < 1 {
		c.r.OverLimit++
		c.r.detail(&c.r.DeadLetterDetails, fmt.Sprintf("%s: message %d at %d/%d delivered with Deliveries=%d, limit %d", name, id, d.Partition, d.Offset, d.Deliveries, c.maxDeliveries))
	}
	first := s.n == 0
	if s.n < ^uint16(0) {
		s.n++
	}
	if !first {
		c.r.Duplicates++
	}
	switch c.subs[sub].kind {
	case kindKeyed:
		if m.key >= 0 && m.kseq > 0 {
			prev := int64(c.keys[m.key][m.kseq-1])
			ps := c.state[sub][prev]
			if ps.flags&(ackOK|ackMaybe) == 0 && ps.pending == 0 {
				c.candLocked(orderCand{sub: sub, part: -1, msg: prev,
					by: fmt.Sprintf("message %d (key %d, #%d) delivered while message %d (#%d) was not settled", id, m.key, m.kseq, prev, m.kseq-1)})
			}
		}
	case kindPartitioned:
		t := c.parts[sub][d.Partition]
		if t.has(d.Offset) {
			return
		}
		if gap := d.Offset - t.next; gap > 0 {
			if gap > 1000 {
				c.r.OrderViolations++
				c.r.detail(&c.r.OrderDetails, fmt.Sprintf("%s: partition %d: offset %d first delivered while %d lower offsets from %d were not", name, d.Partition, d.Offset, gap, t.next))
			} else {
				for o := t.next; o < d.Offset; o++ {
					if !t.has(o) {
						c.candLocked(orderCand{sub: sub, part: d.Partition, off: o,
							by: fmt.Sprintf("partition %d: offset %d first delivered before offset %d", d.Partition, d.Offset, o)})
					}
				}
			}
		}
		t.set(d.Offset)
		for t.has(t.next) {
			t.next++
		}
	}
}

// handedOutBefore reports whether the subscription handed delivery d out
// before the delivery whose Ack set ackOK in s: its fencing token is lower
// (tokens increase with every hand-out, exact within one server run) and its
// deadline is not later (the hand-out times, to the millisecond, which also
// orders deliveries of different server runs). A delivery that fails either
// test may have been handed out after the Ack, and is a violation.
func handedOutBefore(d Delivery, s *subMsg) bool {
	return d.Lease != 0 && s.ackLease != 0 && d.Lease < s.ackLease &&
		!d.Deadline.IsZero() && d.Deadline.UnixMilli() <= s.ackDeadline
}

// candLocked keeps a possible order violation for the final check.
func (c *Checker) candLocked(k orderCand) {
	// One candidate per skipped message, whatever skipped it.
	key := orderCand{sub: k.sub, part: k.part, off: k.off, msg: k.msg}
	if _, ok := c.cands[key]; ok {
		return
	}
	if len(c.cands) >= maxCands {
		c.r.OrderViolations++
		c.r.detail(&c.r.OrderDetails, c.subs[k.sub].name+": "+k.by+" (not resolved: too many candidates)")
		return
	}
	c.cands[key] = true
	c.candBy(key, k.by)
}

// candBy keeps the description of the first few candidates.
func (c *Checker) candBy(key orderCand, by string) {
	if c.r.candText == nil {
		c.r.candText = map[orderCand]string{}
	}
	if len(c.r.candText) < 1000 {
		c.r.candText[key] = by
	}
}

// AckStarted records that Acks of messages ids on sub are about to be sent.
func (c *Checker) AckStarted(sub int, ids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if s := &c.state[sub][id]; s.pending < ^uint8(0) {
			s.pending++
		}
	}
}

// AckDone records the answer to an Ack of message id, delivered as d, by
// consumer con of sub; inLease says it was sent before the delivery's lease
// deadline.
func (c *Checker) AckDone(sub, con int, id int64, d Delivery, inLease bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.state[sub][id]
	if s.pending > 0 && s.pending < ^uint8(0) {
		s.pending--
	}
	switch {
	case err == nil && inLease:
		s.flags |= ackOK
		s.ackBy, s.ackEpoch = uint8(con), uint8(c.epoch)
		s.ackLease, s.ackDeadline = d.Lease, d.Deadline.UnixMilli()
	case err == nil, ackUnknown(err):
		s.flags |= ackMaybe
	case errors.Is(err, sluice.ErrStaleLease):
		c.r.StaleAcks++
	default:
		c.r.AckErrors++
	}
}

// ackUnknown reports whether an Ack's error leaves its outcome unknown.
func ackUnknown(err error) bool {
	return errors.Is(err, sluice.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled)
}

// Finish runs the final checks, given each subscription's dead letters, and
// returns the report.
func (c *Checker) Finish(dead [][]sluice.DeadLetter) Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.r
	// inDLQ[sub] holds the ids the subscription dead-lettered.
	inDLQ := make([]map[int64]int, len(c.subs))
	for sub, dls := range dead {
		inDLQ[sub] = map[int64]int{}
		name := c.subs[sub].name
		for _, dl := range dls {
			id, ok := parseBody(dl.Message.Body)
			if !ok || id >= int64(len(c.msgs)) {
				r.Corrupt++
				r.detail(&r.CorruptDetails, fmt.Sprintf("%s: dead letter %d holds a body the driver did not write", name, dl.Offset))
				continue
			}
			inDLQ[sub][id]++
			if inDLQ[sub][id] > 1 {
				r.DeadLetterDuplicates++
			}
			r.DeadLetters++
			if !c.msgs[id].poison {
				r.DeadLetteredNormal++
			}
			if dl.Deliveries != c.maxDeliveries || len(dl.Attempts) > dl.Deliveries {
				r.DeadLetterMismatches++
				r.detail(&r.DeadLetterDetails, fmt.Sprintf("%s: dead letter %d (message %d, poison %v) has Deliveries=%d and %d attempts, limit %d",
					name, dl.Offset, id, c.msgs[id].poison, dl.Deliveries, len(dl.Attempts), c.maxDeliveries))
			}
			m := c.msgs[id]
			if m.off >= 0 && (dl.Source.Partition != int(m.part) || dl.Source.Offset != m.off) {
				r.DeadLetterMismatches++
				r.detail(&r.DeadLetterDetails, fmt.Sprintf("%s: dead letter %d names source %d/%d, message %d is at %d/%d",
					name, dl.Offset, dl.Source.Partition, dl.Source.Offset, id, m.part, m.off))
			}
		}
	}
	everywhere := 0
	for id := range c.msgs {
		m := c.msgs[id]
		all := true
		for sub := range c.subs {
			s := c.state[sub][id]
			_, dead := inDLQ[sub][int64(id)]
			if s.n == 0 {
				all = false
			}
			if m.pub == pubAcked && s.n == 0 && !dead {
				r.Lost++
				r.detail(&r.LostDetails, fmt.Sprintf("%s: message %d at %d/%d (acknowledged publish) never delivered nor dead-lettered", c.subs[sub].name, id, m.part, m.off))
			}
			if m.pub == pubAcked && m.poison && !dead {
				r.DeadLetterMissing++
				r.detail(&r.DeadLetterDetails, fmt.Sprintf("%s: poison message %d at %d/%d (delivered %d times) is not in the dead-letter stream", c.subs[sub].name, id, m.part, m.off, s.n))
			}
		}
		if all {
			everywhere++
		}
		if m.pub == pubMaybe {
			r.Maybe++
		}
	}
	r.Delivered = everywhere
	for k := range c.cands {
		var dead bool
		if k.part >= 0 {
			o := c.offsets[k.part]
			if k.off < int64(len(o)) && o[k.off] != 0 {
				_, dead = inDLQ[k.sub][int64(o[k.off]-1)]
			}
		} else {
			_, dead = inDLQ[k.sub][k.msg]
		}
		if dead {
			r.OrderExcused++
			continue
		}
		r.OrderViolations++
		r.detail(&r.OrderDetails, c.subs[k.sub].name+": "+r.candText[k])
	}
	return r
}

// Report is the outcome of a run.
type Report struct {
	Published, Acked, Maybe int
	Delivered               int // messages every subscription delivered
	Deliveries, Duplicates  int
	Lost                    int
	AckedRedelivered        int
	FencedCopies            int // received after an acked delivery, handed out before it (handedOutBefore)
	OrderViolations         int
	OrderExcused            int // order candidates whose message was dead-lettered
	DeadLetters             int
	DeadLetteredNormal      int // dead letters of messages that are not poison
	DeadLetterDuplicates    int
	DeadLetterMismatches    int // Deliveries not the limit, or a wrong source
	DeadLetterMissing       int // poison messages not dead-lettered
	OverLimit               int // deliveries numbered above MaxDeliveries
	StoredTwice             int
	Corrupt                 int
	StaleAcks, AckErrors    int
	Kills                   int
	Undrained               []string // subscriptions with a backlog at the end

	LostDetails, AckedRedeliveredDetails, OrderDetails, DeadLetterDetails,
	StoredTwiceDetails, CorruptDetails []string

	candText map[orderCand]string
}

func (r *Report) detail(list *[]string, s string) {
	if len(*list) < maxDetails {
		*list = append(*list, s)
	}
}

// Failed reports whether a check failed.
func (r *Report) Failed() bool {
	return r.Lost != 0 || r.OrderViolations != 0 || r.AckedRedelivered != 0 ||
		r.DeadLetterMismatches != 0 || r.DeadLetterMissing != 0 || r.OverLimit != 0 ||
		r.StoredTwice != 0 || r.Corrupt != 0
}

// Details returns the violations, a line each, the first few of each kind.
func (r *Report) Details() []string {
	var out []string
	add := func(kind string, n int, list []string) {
		if n == 0 {
			return
		}
		out = append(out, fmt.Sprintf("%s: %d", kind, n))
		for _, s := range list {
			out = append(out, "  "+s)
		}
	}
	add("lost", r.Lost, r.LostDetails)
	add("acked then redelivered", r.AckedRedelivered, r.AckedRedeliveredDetails)
	add("order violations", r.OrderViolations, r.OrderDetails)
	add("dead-letter violations", r.DeadLetterMismatches+r.DeadLetterMissing+r.OverLimit, r.DeadLetterDetails)
	add("stored twice", r.StoredTwice, r.StoredTwiceDetails)
	add("corrupt", r.Corrupt, r.CorruptDetails)
	if len(r.Undrained) > 0 {
		out = append(out, "not drained: "+strings.Join(r.Undrained, ", "))
	}
	return out
}

// Summary is one line of the figures that the TORTURE line leaves out.
func (r *Report) Summary() string {
	return fmt.Sprintf("torture: maybe=%d deliveries=%d dead_letters=%d (normal %d, twice %d) stale_acks=%d ack_errors=%d fenced_copies=%d acked_redelivered=%d dlq_violations=%d stored_twice=%d corrupt=%d order_excused=%d",
		r.Maybe, r.Deliveries, r.DeadLetters, r.DeadLetteredNormal, r.DeadLetterDuplicates, r.StaleAcks, r.AckErrors, r.FencedCopies,
		r.AckedRedelivered, r.DeadLetterMismatches+r.DeadLetterMissing+r.OverLimit, r.StoredTwice, r.Corrupt, r.OrderExcused)
}

// Line is the final TORTURE line.
func (r *Report) Line() string {
	return fmt.Sprintf("TORTURE published=%d acked=%d delivered=%d lost=%d duplicates=%d order_violations=%d kills=%d",
		r.Published, r.Acked, r.Delivered, r.Lost, r.Duplicates, r.OrderViolations, r.Kills)
}

// Body format: "torture|<id>|<check as 16 hex digits>|" and padding derived
// from the id, so that a body the driver did not write is recognised.

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// body returns the body of message id.
func body(id int64) []byte {
	h := mix(uint64(id))
	var b strings.Builder
	fmt.Fprintf(&b, "torture|%d|%016x|", id, h)
	for i := range int(h % 200) {
		b.WriteByte('a' + byte((h>>(i%8*8))%26))
	}
	return []byte(b.String())
}

// parseBody returns the id of a body that body wrote.
func parseBody(b []byte) (int64, bool) {
	f := strings.SplitN(string(b), "|", 4)
	if len(f) != 4 || f[0] != "torture" {
		return 0, false
	}
	id, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || id < 0 {
		return 0, false
	}
	if string(body(id)) != string(b) {
		return 0, false
	}
	return id, true
}
