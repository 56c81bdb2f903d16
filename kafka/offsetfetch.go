package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	// v8 batches groups; v10 names topics by id.
	register(9, &handler{name: "OffsetFetch", min: 0, max: 10, serve: (*Server).offsetFetch})
}

// committedOffset is one partition's answer.
type committedOffset struct {
	partition int32
	offset    int64
	code      int16
}

// offsetFetch answers each partition's committed offset: the floor of the
// group's subscription on the topic, or -1 when it has none (see groups).
// Without topics (v2+), it answers every topic the group has a
// subscription on. Commit metadata is not kept: it reads "". RequireStable
// needs nothing: without transactions every offset is stable.
func (s *Server) offsetFetch(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			resp.Groups = append(resp.Groups, s.fetchGroupOffsets(ctx, c, req.Version, &rg))
		}
		return resp, nil
	}
	code := int16(0)
	if !validGroupID(req.Group) {
		code = kerr.InvalidGroupID.Code
	}
	if code != 0 && req.Version >= 2 {
		resp.ErrorCode = code
		return resp, nil
	}
	type topicReq struct {
		name  string
		parts []int32
	}
	var topics []topicReq
	if req.Topics == nil && req.Version >= 2 {
		names, err := s.storedGroupTopics(ctx, req.Group)
		if err != nil {
			resp.ErrorCode = errorCode(err)
			return resp, nil
		}
		for _, name := range names {
			if c.may("consume", name) {
				topics = append(topics, topicReq{name: name})
			}
		}
	}
	for _, rt := range req.Topics {
		topics = append(topics, topicReq{name: rt.Topic, parts: rt.Partitions})
	}
	for _, tr := range topics {
		t := kmsg.NewOffsetFetchResponseTopic()
		t.Topic = tr.name
		for _, co := range s.committed(ctx, c, tr.name, req.Group, tr.parts, code) {
			p := kmsg.NewOffsetFetchResponseTopicPartition()
			p.Partition, p.Offset, p.ErrorCode = co.partition, co.offset, co.code
			p.Metadata = kmsg.StringPtr("")
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// fetchGroupOffsets answers one group of a batched (v8+) OffsetFetch.
func (s *Server) fetchGroupOffsets(ctx context.Context, c *conn, version int16, rg *kmsg.OffsetFetchRequestGroup) kmsg.OffsetFetchResponseGroup {
	out := kmsg.NewOffsetFetchResponseGroup()
	out.Group = rg.Group
	if !validGroupID(rg.Group) {
		out.ErrorCode = kerr.InvalidGroupID.Code
		return out
	}
	if version >= 9 && rg.MemberID != nil && *rg.MemberID != "" {
		if out.ErrorCode = s.groups.checkFetch(rg.Group, *rg.MemberID, rg.MemberEpoch); out.ErrorCode != 0 {
			return out
		}
	}
	type topicReq struct {
		name  string
		id    [16]byte
		parts []int32
		code  int16
	}
	var topics []topicReq
	if rg.Topics == nil {
		names, err := s.storedGroupTopics(ctx, rg.Group)
		if err != nil {
			out.ErrorCode = errorCode(err)
			return out
		}
		for _, name := range names {
			if c.may("consume", name) {
				topics = append(topics, topicReq{name: name, id: topicID(name)})
			}
		}
	}
	var ids topicIDs
	for _, rt := range rg.Topics {
		tr := topicReq{name: rt.Topic, id: rt.TopicID, parts: rt.Partitions}
		if version >= 10 {
			var ok bool
			if tr.name, ok = ids.name(ctx, s, rt.TopicID); !ok {
				tr.code = kerr.UnknownTopicID.Code
			}
		}
		topics = append(topics, tr)
	}
	for _, tr := range topics {
		t := kmsg.NewOffsetFetchResponseGroupTopic()
		t.Topic, t.TopicID = tr.name, tr.id
		for _, co := range s.committed(ctx, c, tr.name, rg.Group, tr.parts, tr.code) {
			p := kmsg.NewOffsetFetchResponseGroupTopicPartition()
			p.Partition, p.Offset, p.ErrorCode = co.partition, co.offset, co.code
			p.Metadata = kmsg.StringPtr("")
			t.Partitions = append(t.Partitions, p)
		}
		out.Topics = append(out.Topics, t)
	}
	return out
}

// committed answers the partitions of one topic (every partition of the
// group's subscription when parts is nil); a non-zero code answers each
// with that error.
func (s *Server) committed(ctx context.Context, c *conn, topic, group string, parts []int32, code int16) []committedOffset {
	if code == 0 && !c.may("consume", topic) {
		code = errTopicAuth
	}
	floors := map[int32]int64{}
	if code == 0 {
		info, err := s.b.Subscription(ctx, topic, group)
		switch {
		case err == nil && info.Config.Mode != sluice.PartitionedMode:
			code = kerr.InvalidGroupID.Code // see groupSubscription
		case err == nil:
			for _, p := range info.Partitions {
				floors[int32(p.ID)] = p.Floor
			}
			if parts == nil {
				for _, p := range info.Partitions {
					parts = append(parts, int32(p.ID))
				}
			}
		case errors.Is(err, sluice.ErrSubscriptionNotFound), errors.Is(err, sluice.ErrStreamNotFound):
			// Nothing committed: -1, and the consumer applies its reset
			// policy.
		default:
			code = errorCode(err)
		}
	}
	out := make([]committedOffset, 0, len(parts))
	for _, p := range parts {
		co := committedOffset{partition: p, offset: -1, code: code}
		if off, ok := floors[p]; ok && code == 0 {
			co.offset = off
		}
		out = append(out, co)
	}
	return out
}

// checkFetch validates a KIP-848 member's epoch for OffsetFetch (v9+): a
// member fetching with a stale epoch would start from offsets of
// partitions it no longer owns. Classic groups are not checked, as in
// Kafka.
func (g *groups) checkFetch(group, memberID string, epoch int32) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	cg := g.consumer[group]
	if cg == nil {
		return 0
	}
	m := cg.members[memberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case epoch != m.epoch:
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}
