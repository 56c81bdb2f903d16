package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	// v1 is KIP-932 as released (v0 was its early access); v2 adds
	// KIP-1222's renew acknowledgements.
	register(79, &handler{name: "ShareAcknowledge", min: 1, max: 2, serve: (*Server).shareAcknowledge})
}

// Acknowledgement types of KIP-932 (and KIP-1222's renew).
const (
	ackGap     = 0 // an offset without a record: nothing to settle
	ackAccept  = 1
	ackRelease = 2
	ackReject  = 3
	ackRenew   = 4
)

// ackBatch is one acknowledgement batch: offsets first..last, with one
// type for all of them or one per offset.
type ackBatch struct {
	first, last int64
	types       []int8
}

// shareAcknowledge settles acquired records outside a ShareFetch. Epoch -1
// closes the member's share session after the acknowledgements: what it
// still holds is released.
func (s *Server) shareAcknowledge(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareAcknowledgeRequest)
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	resp.AcquisitionLockTimeoutMillis = int32(ShareLockDuration / time.Millisecond)
	fail := func(e *shareError) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = e.code, &e.msg
		return resp, nil
	}
	if req.GroupID == nil || req.MemberID == nil {
		return fail(&shareError{kerr.InvalidRequest.Code, "ShareAcknowledge without a group id or a member id"})
	}
	g := s.shares
	g.mu.Lock()
	m, serr := g.memberLocked(*req.GroupID, *req.MemberID)
	if serr == nil {
		_, serr = g.sessionLocked(m, req.ShareSessionEpoch, false)
	}
	g.mu.Unlock()
	if serr != nil {
		return fail(serr)
	}
	for i := range req.Topics {
		rt := &req.Topics[i]
		name, n, known := g.topicByID(ctx, m, rt.TopicID)
		t := kmsg.NewShareAcknowledgeResponseTopic()
		t.TopicID = rt.TopicID
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			p := kmsg.NewShareAcknowledgeResponseTopicPartition()
			p.Partition = rp.Partition
			p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = -1, -1 // no other leader to move to
			switch {
			case !known:
				p.ErrorCode = kerr.UnknownTopicID.Code
			case !c.may("consume", name):
				p.ErrorCode = errTopicAuth
			case rp.Partition < 0 || rp.Partition >= n:
				p.ErrorCode = errUnknownTopic
			default:
				batches := make([]ackBatch, len(rp.AcknowledgementBatches))
				for k, b := range rp.AcknowledgementBatches {
					batches[k] = ackBatch{first: b.FirstOffset, last: b.LastOffset, types: b.AcknowledgeTypes}
				}
				p.ErrorCode, p.ErrorMessage = g.acknowledge(ctx, m, name, rp.Partition, batches, req.IsRenewAck)
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	if req.ShareSessionEpoch == -1 {
		g.closeSession(ctx, m)
	}
	return resp, nil
}

// sessionLocked checks a request's share session epoch against m's session
// and moves the session on. Epoch 0 opens a session (only a ShareFetch
// may): it replaces the previous one, whose records are returned for the
// caller to release, since the client will not acknowledge them. Epoch -1
// leaves closing to closeSession, after the request's acknowledgements.
func (g *shareGroups) sessionLocked(m *shareMember, epoch int32, fetch bool) ([]heldRecord, *shareError) {
	switch {
	case epoch == 0 && !fetch:
		return nil, &shareError{kerr.InvalidShareSessionEpoch.Code, "ShareAcknowledge cannot open a share session (epoch 0): a ShareFetch does"}
	case epoch == 0:
		stale := m.takeAllLocked()
		m.session = &shareSession{next: 1, parts: map[sharePart]struct{}{}}
		return stale, nil
	case m.session == nil:
		return nil, &shareError{kerr.ShareSessionNotFound.Code, fmt.Sprintf("member %q has no share session: a ShareFetch with epoch 0 opens one", m.id)}
	case epoch == -1:
		return nil, nil
	case epoch != m.session.next:
		return nil, &shareError{kerr.InvalidShareSessionEpoch.Code, fmt.Sprintf("share session epoch %d, expected %d", epoch, m.session.next)}
	}
	m.session.next = nextEpoch(epoch)
	return nil, nil
}

// closeSession ends m's share session and releases what it still holds.
func (g *shareGroups) closeSession(ctx context.Context, m *shareMember) {
	g.mu.Lock()
	rest := m.takeAllLocked()
	m.session = nil
	g.mu.Unlock()
	ctx, cancel := settleContext(ctx)
	defer cancel()
	g.release(ctx, rest, fmt.Sprintf("released: member %s of share group %q closed its share session", m.id, m.group.id))
}

// acknowledge applies one partition's acknowledgement batches for m, and
// returns the partition's error code and message: INVALID_RECORD_STATE
// when an offset is not held by m (never acquired by it, already
// acknowledged, or its lock expired and it went to another consumer).
func (g *shareGroups) acknowledge(ctx context.Context, m *shareMember, topic string, partition int32, batches []ackBatch, renew bool) (int16, *string) {
	for _, b := range batches {
		span := b.last - b.first + 1
		switch {
		case b.first < 0 || b.last < b.first:
			return kerr.InvalidRequest.Code, kmsg.StringPtr(fmt.Sprintf("acknowledgement batch %d..%d", b.first, b.last))
		case len(b.types) != 1 && int64(len(b.types)) != span:
			return kerr.InvalidRequest.Code, kmsg.StringPtr(fmt.Sprintf("acknowledgement batch %d..%d has %d types: want 1 or one per offset", b.first, b.last, len(b.types)))
		case len(b.types) == 1 && b.types[0] != ackGap && span > MaxShareHeldRecords:
			return kerr.InvalidRecordState.Code, kmsg.StringPtr(fmt.Sprintf("acknowledgement batch %d..%d spans %d offsets; a member holds at most MaxShareHeldRecords=%d", b.first, b.last, span, MaxShareHeldRecords))
		}
		for _, t := range b.types {
			if t < ackGap || t > ackReject && (t != ackRenew || !renew) {
				return kerr.InvalidRequest.Code, kmsg.StringPtr(fmt.Sprintf("acknowledge type %d (renew, 4, needs IsRenewAck)", t))
			}
		}
	}
	var accepts, releases, rejects, renews []heldRecord
	missing, firstMissing := 0, int64(-1)
	g.mu.Lock()
	before := len(m.held)
	for _, b := range batches {
		if len(b.types) == 1 && b.types[0] == ackGap {
			continue
		}
		for off := b.first; off <= b.last; off++ {
			t := b.types[0]
			if len(b.types) > 1 {
				t = b.types[off-b.first]
			}
			if t == ackGap {
				continue
			}
			k := heldKey{topic, partition, off}
			h, ok := m.held[k]
			if !ok {
				if missing++; firstMissing < 0 {
					firstMissing = off
				}
				continue
			}
			if t == ackRenew {
				renews = append(renews, h)
				continue
			}
			delete(m.held, k)
			delete(m.unsent, k)
			switch t {
			case ackAccept:
				accepts = append(accepts, h)
			case ackRelease:
				releases = append(releases, h)
			case ackReject:
				rejects = append(rejects, h)
			}
		}
	}
	if len(m.held) < before {
		m.roomLocked()
	}
	g.mu.Unlock()

	var errs []error
	for c, hs := range byConsumer(accepts) {
		ds := make([]sluice.Delivery, len(hs))
		for i, h := range hs {
			ds[i] = h.d
		}
		for _, err := range c.AckMany(ctx, ds) {
			errs = append(errs, err)
		}
	}
	for _, h := range releases {
		errs = append(errs, h.c.Nack(ctx, h.d, sluice.NackOptions{Delay: releaseDelay,
			Reason: fmt.Sprintf("released by member %s of share group %q", m.id, m.group.id)}))
	}
	for _, h := range rejects {
		errs = append(errs, h.c.Term(ctx, h.d, fmt.Sprintf("rejected by member %s of share group %q", m.id, m.group.id)))
	}
	lock := ShareLockDuration
	if len(renews) > 0 {
		// A renewal restarts the lock: the subscription's Lease, which the
		// group's share.record.lock.duration.ms may have set.
		if info, err := g.s.b.Subscription(ctx, topic, m.group.id); err == nil {
			lock = info.Config.Lease
		}
	}
	for _, h := range renews {
		deadline, err := h.c.Extend(ctx, h.d, lock)
		errs = append(errs, err)
		if err == nil {
			g.mu.Lock()
			k := heldKey{topic, partition, h.d.Offset}
			if cur, ok := m.held[k]; ok && cur.d.Lease == h.d.Lease {
				cur.d.Deadline = deadline
				m.held[k] = cur
			}
			g.mu.Unlock()
		}
	}
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, sluice.ErrStaleLease) {
			return kerr.InvalidRecordState.Code, errorMessage(err)
		}
		return errorCode(err), errorMessage(err)
	}
	if missing > 0 {
		return kerr.InvalidRecordState.Code, kmsg.StringPtr(fmt.Sprintf(
			"%d offsets from %d are not held by member %s: never acquired by it, already acknowledged, or their lock expired",
			missing, firstMissing, m.id))
	}
	return 0, nil
}

// byConsumer groups held records by the consumer that settles them.
func byConsumer(hs []heldRecord) map[sluice.Consumer][]heldRecord {
	if len(hs) == 0 {
		return nil
	}
	out := map[sluice.Consumer][]heldRecord{}
	for _, h := range hs {
		out[h.c] = append(out[h.c], h)
	}
	return out
}
