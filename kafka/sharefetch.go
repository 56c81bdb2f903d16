package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/batch"
)

func init() {
	// v1 is KIP-932 as released (v0 was its early access); v2 adds
	// KIP-1206's ShareAcquireMode and KIP-1222's renew acknowledgements.
	register(78, &handler{name: "ShareFetch", min: 1, max: 2, serve: (*Server).shareFetch})
}

// recordOverheadBytes approximates a record's framing in a batch (length,
// attributes, deltas, lengths), for MinBytes and MaxBytes.
const recordOverheadBytes = 16

// shareAnswer indexes a ShareFetch response's partitions. Pointers it
// returns are valid until the next call.
type shareAnswer struct {
	resp  *kmsg.ShareFetchResponse
	topic map[[16]byte]int
	part  map[sharePartID]int
}

// sharePartID is a partition named by topic id.
type sharePartID struct {
	topic     [16]byte
	partition int32
}

func (a *shareAnswer) at(id [16]byte, partition int32) *kmsg.ShareFetchResponseTopicPartition {
	ti, ok := a.topic[id]
	if !ok {
		ti = len(a.resp.Topics)
		a.topic[id] = ti
		t := kmsg.NewShareFetchResponseTopic()
		t.TopicID = id
		a.resp.Topics = append(a.resp.Topics, t)
	}
	t := &a.resp.Topics[ti]
	key := sharePartID{id, partition}
	pi, ok := a.part[key]
	if !ok {
		pi = len(t.Partitions)
		a.part[key] = pi
		p := kmsg.NewShareFetchResponseTopicPartition()
		p.Partition = partition
		p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = -1, -1 // no other leader to move to
		t.Partitions = append(t.Partitions, p)
	}
	return &t.Partitions[pi]
}

// shareAcks is one partition's piggybacked acknowledgements.
type shareAcks struct {
	part    sharePart
	id      [16]byte
	batches []ackBatch
}

// shareFetch applies the request's share session epoch and piggybacked
// acknowledgements, then acquires records of the session's partitions for
// the member, waiting up to MaxWaitMillis (at most MaxShareFetchWait) for
// MinBytes.
func (s *Server) shareFetch(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareFetchRequest)
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	resp.AcquisitionLockTimeoutMillis = int32(ShareLockDuration / time.Millisecond)
	fail := func(e *shareError) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = e.code, &e.msg
		return resp, nil
	}
	if req.GroupID == nil || req.MemberID == nil {
		return fail(&shareError{kerr.InvalidRequest.Code, "ShareFetch without a group id or a member id"})
	}
	g := s.shares
	g.mu.Lock()
	m, serr := g.memberLocked(*req.GroupID, *req.MemberID)
	g.mu.Unlock()
	if serr != nil {
		return fail(serr)
	}

	ans := &shareAnswer{resp: resp, topic: map[[16]byte]int{}, part: map[sharePartID]int{}}
	var named []sharePart
	var acks []shareAcks
	for i := range req.Topics {
		rt := &req.Topics[i]
		name, n, known := g.topicByID(ctx, m, rt.TopicID)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			code := int16(0)
			switch {
			case !known:
				code = kerr.UnknownTopicID.Code
			case !c.may("consume", name):
				code = errTopicAuth
			case rp.Partition < 0 || rp.Partition >= n:
				code = errUnknownTopic
			}
			p := ans.at(rt.TopicID, rp.Partition)
			if code != 0 {
				p.ErrorCode = code
				if len(rp.AcknowledgementBatches) > 0 {
					p.AcknowledgeErrorCode = code
				}
				continue
			}
			sp := sharePart{name, rp.Partition}
			named = append(named, sp)
			if len(rp.AcknowledgementBatches) > 0 {
				a := shareAcks{part: sp, id: rt.TopicID}
				for _, b := range rp.AcknowledgementBatches {
					a.batches = append(a.batches, ackBatch{first: b.FirstOffset, last: b.LastOffset, types: b.AcknowledgeTypes})
				}
				acks = append(acks, a)
			}
		}
	}
	var forget []sharePart
	for _, ft := range req.ForgottenTopicsData {
		if name, _, known := g.topicByID(ctx, m, ft.TopicID); known {
			for _, p := range ft.Partitions {
				forget = append(forget, sharePart{name, p})
			}
		}
	}

	g.mu.Lock()
	stale, serr := g.sessionLocked(m, req.ShareSessionEpoch, true)
	if serr == nil && m.session != nil && req.ShareSessionEpoch != -1 {
		// As Kafka does, a partition named only to carry acknowledgements
		// joins the session too: clients count on it.
		for _, sp := range named {
			m.session.parts[sp] = struct{}{}
		}
		for _, sp := range forget {
			delete(m.session.parts, sp)
		}
	}
	g.mu.Unlock()
	if serr != nil {
		return fail(serr)
	}
	sctx, cancel := settleContext(ctx)
	defer cancel()
	g.release(sctx, stale, fmt.Sprintf("released: member %s of share group %q opened a new share session", m.id, m.group.id))

	for _, a := range acks {
		code, msg := g.acknowledge(ctx, m, a.part.topic, a.part.partition, a.batches, req.IsRenewAck)
		p := ans.at(a.id, a.part.partition)
		p.AcknowledgeErrorCode, p.AcknowledgeErrorMessage = code, msg
	}
	switch {
	case req.ShareSessionEpoch == -1: // the final request: acknowledgements only
		g.closeSession(ctx, m)
		return resp, nil
	case req.IsRenewAck: // KIP-1222: a renewing fetch acquires nothing
		return resp, nil
	}
	if err := g.acquire(ctx, c, m, req, ans); err != nil {
		return nil, err
	}
	return resp, nil
}

// topicFetch is one topic's part of an acquisition round.
type topicFetch struct {
	topic string
	c     sluice.Consumer
	max   int
	got   []sluice.Delivery
	err   error
}

// acquire fetches deliveries for m from the topics of its share session
// that the connection may consume into the answer, each held by m until
// it is acknowledged or its lock expires. It returns an error only when
// ctx ended (the connection closed).
func (g *shareGroups) acquire(ctx context.Context, c *conn, m *shareMember, req *kmsg.ShareFetchRequest, ans *shareAnswer) error {
	wait := min(time.Duration(max(req.MaxWaitMillis, 0))*time.Millisecond, MaxShareFetchWait)
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)() // a member that leaves stops waiting
	maxRecords := int(req.MaxRecords)
	if maxRecords <= 0 {
		maxRecords = defaultShareMaxRecords
	}
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = defaultFetchMaxBytes
	}
	acquired := map[sharePart][]sluice.Delivery{}
	records, bytes, minBytes := 0, 0, int(req.MinBytes)
	g.mu.Lock()
	sess := m.session
	g.mu.Unlock()
	for rounds := 0; ; rounds++ {
		g.mu.Lock()
		if m.gone || m.session == nil || m.session != sess {
			// The member left, or a request on another connection
			// replaced its session: the client would drop the answer.
			g.mu.Unlock()
			break
		}
		m.pruneLocked(time.Now())
		for k := range m.unsent {
			if sp := (sharePart{k.topic, k.partition}); inSession(sess, sp) && records < maxRecords {
				delete(m.unsent, k)
				d := m.held[k].d
				acquired[sp] = append(acquired[sp], d)
				records++
				bytes += recordBytes(d)
			}
		}
		if records >= maxRecords || bytes >= maxBytes || records > 0 && bytes >= minBytes || rounds > 0 && minBytes <= 0 {
			g.mu.Unlock()
			break
		}
		room := min(MaxShareHeldRecords-len(m.held)-m.reserved, maxRecords-records, sluice.MaxFetch)
		var topics []string
		for sp := range sess.parts {
			// The session may have been opened on another connection, by
			// another principal.
			if c.may("consume", sp.topic) {
				topics = append(topics, sp.topic)
			} else {
				p := ans.at(topicID(sp.topic), sp.partition)
				p.ErrorCode = errTopicAuth
			}
		}
		topics = sortedTopics(topics)
		wake := m.room
		if room > 0 {
			m.reserved += room
		}
		g.mu.Unlock()
		if len(topics) == 0 {
			break
		}
		if room <= 0 {
			// At MaxShareHeldRecords: wait for acknowledgements.
			select {
			case <-wake:
				continue
			case <-fctx.Done():
			}
			break
		}
		fs := g.fetchRound(fctx, m, topics, room)

		var stray []heldRecord
		failed := false
		g.mu.Lock()
		m.reserved -= room
		for _, f := range fs {
			for _, d := range f.got {
				h := heldRecord{topic: f.topic, c: f.c, d: d}
				sp := sharePart{f.topic, int32(d.Partition)}
				k := heldKey{f.topic, sp.partition, d.Offset}
				if m.gone || m.session != sess {
					// The member left or its session was replaced: the
					// client would not acknowledge it.
					stray = append(stray, h)
					continue
				}
				m.held[k] = h
				if _, in := sess.parts[sp]; !in {
					// The consumer fetches every partition, the session
					// names some (the client paused the others): kept
					// for a fetch that names it rather than released,
					// which would count as a delivery.
					m.unsent[k] = struct{}{}
					continue
				}
				acquired[sp] = append(acquired[sp], d)
				records++
				bytes += recordBytes(d)
			}
			if f.err != nil && !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
				failed = true
				for sp := range sess.parts {
					if sp.topic == f.topic {
						p := ans.at(topicID(sp.topic), sp.partition)
						p.ErrorCode, p.ErrorMessage = shareFetchCode(f.err), errorMessage(f.err)
					}
				}
			}
		}
		g.mu.Unlock()
		for _, f := range fs {
			if f.c != nil && (errors.Is(f.err, sluice.ErrSubscriptionNotFound) || errors.Is(f.err, sluice.ErrStreamNotFound) || errors.Is(f.err, sluice.ErrClosed)) {
				g.dropConsumer(m, f.topic, f.c)
			}
		}
		sctx, scancel := settleContext(ctx)
		g.release(sctx, stray, fmt.Sprintf("released: member %s of share group %q left or replaced its share session", m.id, m.group.id))
		scancel()
		if failed || fctx.Err() != nil {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		// The answer is lost: release what it would have carried.
		var lost []heldRecord
		g.mu.Lock()
		for sp, ds := range acquired {
			for _, d := range ds {
				k := heldKey{sp.topic, sp.partition, d.Offset}
				if h, ok := m.held[k]; ok && h.d.Lease == d.Lease {
					delete(m.held, k)
					lost = append(lost, h)
				}
			}
		}
		if len(lost) > 0 {
			m.roomLocked()
		}
		g.mu.Unlock()
		sctx, scancel := settleContext(ctx)
		defer scancel()
		g.release(sctx, lost, fmt.Sprintf("released: the answer to member %s of share group %q was lost", m.id, m.group.id))
		return err
	}
	// The lock is the subscription's Lease: ShareLockDuration, unless the
	// subscription was made with another.
	lock := ShareLockDuration
	for sp, ds := range acquired {
		for _, d := range ds {
			lock = min(lock, time.Until(d.Deadline))
		}
		appendAcquired(ans.at(topicID(sp.topic), sp.partition), ds)
	}
	ans.resp.AcquisitionLockTimeoutMillis = int32(max(lock, 0) / time.Millisecond)
	return nil
}

// shareFetchCode is the partition error code of a failed acquisition.
func shareFetchCode(err error) int16 {
	if errors.Is(err, errNotShareable) {
		return kerr.InconsistentGroupProtocol.Code
	}
	return errorCode(err)
}

// fetchRound fetches up to room deliveries from the topics' consumers,
// shared among them (in turn, for fairness); it waits until one has some,
// or ctx ends.
func (g *shareGroups) fetchRound(ctx context.Context, m *shareMember, topics []string, room int) []*topicFetch {
	g.mu.Lock()
	start := m.turn
	m.turn++
	g.mu.Unlock()
	n := len(topics)
	var fs, live []*topicFetch
	for i := range n {
		share := room / n
		if i < room%n {
			share++
		}
		if share == 0 {
			break
		}
		f := &topicFetch{topic: topics[(start+i)%n], max: share}
		f.c, f.err = g.consumerFor(ctx, m, f.topic)
		fs = append(fs, f)
		if f.err == nil {
			live = append(live, f)
		}
	}
	if len(live) == 1 {
		live[0].got, live[0].err = live[0].c.Fetch(ctx, live[0].max)
		return fs
	}
	// The first topic with deliveries ends the others' wait; whatever they
	// were handed meanwhile is kept.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range live {
		wg.Go(func() {
			f.got, f.err = f.c.Fetch(rctx, f.max)
			if len(f.got) > 0 {
				cancel()
			}
		})
	}
	wg.Wait()
	return fs
}

// inSession reports whether sp is one of the session's partitions.
func inSession(sess *shareSession, sp sharePart) bool {
	_, ok := sess.parts[sp]
	return ok
}

// recordBytes approximates a delivery's size in a batch.
func recordBytes(d sluice.Delivery) int {
	n := recordOverheadBytes + len(d.Key) + len(d.Body)
	for _, h := range d.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// appendAcquired encodes deliveries of one partition into the answer: one
// RecordBatch v2 and one acquired range per run of consecutive offsets
// with the same delivery count, in offset order.
func appendAcquired(p *kmsg.ShareFetchResponseTopicPartition, ds []sluice.Delivery) {
	slices.SortFunc(ds, func(a, b sluice.Delivery) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Lease, b.Lease))
	})
	// A record redelivered within one long poll (its lock expired) keeps
	// only its latest delivery: ranges must not overlap.
	kept := ds[:0]
	for _, d := range ds {
		if n := len(kept); n > 0 && kept[n-1].Offset == d.Offset {
			kept[n-1] = d
			continue
		}
		kept = append(kept, d)
	}
	ds = kept
	for i := 0; i < len(ds); {
		j := i + 1
		for j < len(ds) && ds[j].Offset == ds[j-1].Offset+1 && ds[j].Deliveries == ds[i].Deliveries {
			j++
		}
		recs := make([]batch.Record, j-i)
		for k, d := range ds[i:j] {
			recs[k] = batch.Record{Timestamp: d.Time.UnixMilli(), Key: d.Key, Value: d.Body, Headers: d.Headers}
		}
		start := len(p.Records)
		p.Records = batch.Append(p.Records, recs)
		batch.SetBaseOffset(p.Records[start:], ds[i].Offset)
		ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
		ar.FirstOffset, ar.LastOffset = ds[i].Offset, ds[j-1].Offset
		ar.DeliveryCount = int16(min(ds[i].Deliveries, math.MaxInt16))
		p.AcquiredRecords = append(p.AcquiredRecords, ar)
		i = j
	}
}
