package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	// v1 adds the lag.
	register(90, &handler{name: "DescribeShareGroupOffsets", min: 0, max: 1, serve: (*Server).describeShareGroupOffsets})
	register(91, &handler{name: "AlterShareGroupOffsets", min: 0, max: 0, serve: (*Server).alterShareGroupOffsets})
	register(92, &handler{name: "DeleteShareGroupOffsets", min: 0, max: 0, serve: (*Server).deleteShareGroupOffsets})
}

// A share group's offsets on a topic are its queue subscription there (see
// shareGroups): the share-partition start offset (SPSO) of partition p is
// the subscription's floor in p, the first offset not yet settled, and the
// lag is the subscription's backlog in p.
//
//   - DescribeShareGroupOffsets answers them; a topic the group has no
//     subscription on answers -1 (no error), as Kafka does for a partition
//     whose share state is not initialized.
//   - AlterShareGroupOffsets moves the subscription in each partition
//     named (Broker.CommitOffset: what is before the offset counts as
//     settled, what is from it on is delivered anew), creating the
//     subscription, with the group's configs, when it does not exist. The
//     group must have no members (NON_EMPTY_GROUP).
//   - DeleteShareGroupOffsets deletes the subscription on each topic named
//     (and its dead-letter stream if that never received anything, as
//     DeleteGroups does); the group's next member starts there afresh, by
//     share.auto.offset.reset. The group must have no members.
//
// A subscription named after the group that a share group cannot consume
// through (a consumer group's partitioned one) is not the share group's:
// describing, altering or deleting there gets INCONSISTENT_GROUP_PROTOCOL.
// Describing takes a permission on the topic, altering and deleting
// "consume", as consuming through the group does.

func (s *Server) describeShareGroupOffsets(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeShareGroupOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
	for _, rg := range req.Groups {
		g := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
		g.GroupID = rg.GroupID
		code, msg := s.describeShareGroup(ctx, c, rg, &g)
		g.ErrorCode = code
		if msg != "" {
			g.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func (s *Server) describeShareGroup(ctx context.Context, c *conn, rg kmsg.DescribeShareGroupOffsetsRequestGroup, out *kmsg.DescribeShareGroupOffsetsResponseGroup) (int16, string) {
	if !validGroupID(rg.GroupID) {
		return kerr.InvalidGroupID.Code, ""
	}
	topics := rg.Topics
	if topics == nil { // every topic the group has offsets on
		subs, err := s.groupSubscriptions(ctx, rg.GroupID)
		if err != nil {
			return errorCode(err), err.Error()
		}
		for _, sub := range subs {
			if !shareable(sub.Config) || !c.sees(sub.Stream) {
				continue
			}
			t := kmsg.NewDescribeShareGroupOffsetsRequestGroupTopic()
			t.Topic = sub.Stream
			for _, p := range sub.Partitions {
				t.Partitions = append(t.Partitions, int32(p.ID))
			}
			topics = append(topics, t)
		}
		if len(topics) == 0 && !s.shareGroupHasMembers(rg.GroupID) {
			return kerr.GroupIDNotFound.Code, fmt.Sprintf("share group %q has no offsets and no members", rg.GroupID)
		}
	}
	for _, rt := range topics {
		t := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
		t.Topic, t.TopicID = rt.Topic, topicID(rt.Topic)
		code, msg := int16(0), ""
		var sub sluice.SubscriptionInfo
		var info sluice.StreamInfo
		var err error
		if !c.sees(rt.Topic) {
			code = errTopicAuth
		} else if info, err = s.b.Stream(ctx, rt.Topic); err != nil {
			code, msg = errorCode(err), err.Error()
		} else if sub, err = s.b.Subscription(ctx, rt.Topic, rg.GroupID); errors.Is(err, sluice.ErrSubscriptionNotFound) {
			sub = sluice.SubscriptionInfo{} // not initialized: -1
		} else if err != nil {
			code, msg = errorCode(err), err.Error()
		} else if !shareable(sub.Config) {
			code, msg = kerr.InconsistentGroupProtocol.Code, notShareableMessage(rt.Topic, sub.Config)
		}
		for _, part := range rt.Partitions {
			p := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
			p.Partition, p.StartOffset, p.LeaderEpoch, p.Lag = part, -1, -1, -1
			switch {
			case code != 0:
				p.ErrorCode = code
				if msg != "" {
					p.ErrorMessage = kmsg.StringPtr(msg)
				}
			case part < 0 || int(part) >= len(info.Partitions):
				p.ErrorCode = errUnknownTopic
			case sub.Stream == "":
			case int(part) < len(sub.Partitions):
				sp := sub.Partitions[part]
				p.StartOffset, p.LeaderEpoch, p.Lag = sp.Floor, 0, sp.Backlog
			}
			t.Partitions = append(t.Partitions, p)
		}
		out.Topics = append(out.Topics, t)
	}
	return 0, ""
}

func (s *Server) alterShareGroupOffsets(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterShareGroupOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
	if resp.ErrorCode, resp.ErrorMessage = s.emptyShareGroup(req.GroupID); resp.ErrorCode != 0 {
		return resp, nil
	}
	for _, rt := range req.Topics {
		t := kmsg.NewAlterShareGroupOffsetsResponseTopic()
		t.Topic, t.TopicID = rt.Topic, topicID(rt.Topic)
		code, msg := int16(0), ""
		var n int32
		if !c.may("consume", rt.Topic) {
			code = errTopicAuth
		} else {
			var err error
			n, err = s.shares.ensureSubscription(ctx, rt.Topic, req.GroupID)
			code, msg = shareSubscriptionCode(err)
		}
		for _, rp := range rt.Partitions {
			p := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
			p.Partition = rp.Partition
			pcode, pmsg := code, msg
			switch {
			case pcode != 0:
			case rp.Partition < 0 || rp.Partition >= n:
				pcode = errUnknownTopic
			case rp.StartOffset < 0:
				pcode, pmsg = kerr.InvalidRequest.Code, fmt.Sprintf("start offset %d: an offset is 0 or more", rp.StartOffset)
			default:
				if err := s.b.CommitOffset(ctx, rt.Topic, req.GroupID, int(rp.Partition), rp.StartOffset); err != nil {
					pcode, pmsg = commitErrorCode(err), err.Error()
				}
			}
			p.ErrorCode = pcode
			if pmsg != "" {
				p.ErrorMessage = kmsg.StringPtr(pmsg)
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (s *Server) deleteShareGroupOffsets(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteShareGroupOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
	if resp.ErrorCode, resp.ErrorMessage = s.emptyShareGroup(req.GroupID); resp.ErrorCode != 0 {
		return resp, nil
	}
	for _, rt := range req.Topics {
		t := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
		t.Topic, t.TopicID = rt.Topic, topicID(rt.Topic)
		code, msg := int16(0), ""
		sub, err := s.b.Subscription(ctx, rt.Topic, req.GroupID)
		switch {
		case !c.may("consume", rt.Topic):
			code = errTopicAuth
		case errors.Is(err, sluice.ErrSubscriptionNotFound):
			code, msg = errUnknownTopic, fmt.Sprintf("share group %q has no offsets on topic %q", req.GroupID, rt.Topic)
		case err != nil:
			code, msg = errorCode(err), err.Error()
		case !shareable(sub.Config):
			code, msg = kerr.InconsistentGroupProtocol.Code, notShareableMessage(rt.Topic, sub.Config)
		default:
			code = s.deleteGroupSubscription(ctx, sub)
		}
		t.ErrorCode = code
		if msg != "" {
			t.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// shareGroupHasMembers reports whether a share group has members.
func (s *Server) shareGroupHasMembers(id string) bool {
	g := s.shares
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.groups[id] != nil && len(g.groups[id].members) > 0
}

// shareSubscriptionCode maps ensureSubscription's errors.
func shareSubscriptionCode(err error) (int16, string) {
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, errNotShareable):
		return kerr.InconsistentGroupProtocol.Code, err.Error()
	case errors.Is(err, sluice.ErrStreamNotFound):
		return errUnknownTopic, ""
	case errors.Is(err, sluice.ErrInvalid):
		return kerr.InvalidGroupID.Code, err.Error()
	}
	return errorCode(err), err.Error()
}

// notShareableMessage says why a subscription is not a share group's.
func notShareableMessage(topic string, cfg sluice.SubscriptionConfig) string {
	return fmt.Sprintf("subscription %q of stream %q is in %s mode (%s delivery): not a share group's", cfg.Name, topic, cfg.Mode, cfg.Delivery)
}

// emptyShareGroup checks that a share group's offsets may be changed: a
// valid id, and no member consuming.
func (s *Server) emptyShareGroup(group string) (int16, *string) {
	switch {
	case !validGroupID(group):
		return kerr.InvalidGroupID.Code, nil
	case s.groupHasMembers(group):
		return kerr.NonEmptyGroup.Code, kmsg.StringPtr(errGroupNotEmpty(group))
	}
	return 0, nil
}
