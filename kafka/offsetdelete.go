package kafka

import (
	"context"
	"errors"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	register(47, &handler{name: "OffsetDelete", min: 0, max: 0, serve: (*Server).offsetDelete})
}

// offsetDelete deletes a consumer group's committed offsets for some
// partitions. The offsets are the group's partitioned subscription on the
// topic (see groups), which has a position in every partition: deleting
// them for every partition of the topic deletes the subscription (and its
// dead-letter stream if it never received anything, as DeleteGroups does),
// so that OffsetFetch answers -1 and the consumer resets by its policy;
// deleting them for some partitions moves the subscription there back to
// the log start, which OffsetFetch answers as for a partition never
// committed in an existing subscription.
//
// A topic that members of the live group consume gets
// GROUP_SUBSCRIBED_TO_TOPIC; a group with no offsets on any topic named,
// and no members, GROUP_ID_NOT_FOUND. Deleting takes the "consume"
// permission on the topic, as committing does.
func (s *Server) offsetDelete(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if !validGroupID(req.Group) {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	s.groups.mu.Lock()
	consumed := s.groups.groupTopicsLocked(req.Group)
	s.groups.mu.Unlock()
	live := s.groupHasMembers(req.Group)

	type topicPlan struct {
		code int16
		info sluice.StreamInfo
		sub  sluice.SubscriptionInfo
	}
	plans := make([]topicPlan, len(req.Topics))
	found := false
	for i, rt := range req.Topics {
		pl := &plans[i]
		if !c.may("consume", rt.Topic) {
			pl.code = errTopicAuth
			continue
		}
		info, err := s.b.Stream(ctx, rt.Topic)
		if err != nil {
			pl.code = errorCode(err)
			continue
		}
		pl.info = info
		if slices.Contains(consumed, rt.Topic) {
			pl.code = kerr.GroupSubscribedToTopic.Code
			continue
		}
		sub, err := s.b.Subscription(ctx, rt.Topic, req.Group)
		switch {
		case errors.Is(err, sluice.ErrSubscriptionNotFound):
			continue // nothing committed here
		case err != nil:
			pl.code = errorCode(err)
			continue
		case sub.Config.Mode != sluice.PartitionedMode:
			continue // not a consumer group's offsets
		}
		pl.sub, found = sub, true
	}
	if !found && !live {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp, nil
	}
	for i, rt := range req.Topics {
		pl := plans[i]
		t := kmsg.NewOffsetDeleteResponseTopic()
		t.Topic = rt.Topic
		all := pl.sub.Stream != "" && len(pl.info.Partitions) > 0
		for n := range pl.info.Partitions {
			all = all && slices.ContainsFunc(rt.Partitions, func(p kmsg.OffsetDeleteRequestTopicPartition) bool { return p.Partition == int32(n) })
		}
		code := pl.code
		if code == 0 && all {
			code = s.deleteGroupSubscription(ctx, pl.sub)
		}
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetDeleteResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, code
			switch {
			case code != 0:
			case rp.Partition < 0 || int(rp.Partition) >= len(pl.info.Partitions):
				p.ErrorCode = errUnknownTopic
			case all || pl.sub.Stream == "":
				// Deleted with the subscription, or never committed.
			default:
				p.ErrorCode = commitErrorCode(s.b.CommitOffset(ctx, rt.Topic, req.Group, int(rp.Partition), 0))
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
