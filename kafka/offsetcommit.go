package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	// v10 names topics by id.
	register(8, &handler{name: "OffsetCommit", min: 0, max: 10, serve: (*Server).offsetCommit})
}

// offsetCommit moves the group's subscription on each topic to the
// committed offsets (see groups for the mapping), creating the
// subscription on the group's first commit there. A member of a live group
// commits with its generation (classic) or member epoch (KIP-848); a
// commit with generation -1 and no member id stores offsets for a group
// without members, as tools and simple consumers do.
func (s *Server) offsetCommit(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	gen, member := req.Generation, req.MemberID
	if req.Version == 0 {
		gen, member = -1, ""
	}
	code := int16(0)
	if !validGroupID(req.Group) {
		code = kerr.InvalidGroupID.Code
	} else {
		code = s.groups.checkCommit(req.Group, gen, member, req.InstanceID)
	}
	var ids topicIDs
	for _, rt := range req.Topics {
		t := kmsg.NewOffsetCommitResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		name, tcode := rt.Topic, code
		if req.Version >= 10 && tcode == 0 {
			var ok bool
			if name, ok = ids.name(ctx, s, rt.TopicID); !ok {
				tcode = kerr.UnknownTopicID.Code
			}
		}
		if tcode == 0 && !c.may("consume", name) {
			tcode = errTopicAuth
		}
		if tcode == 0 {
			tcode = s.groupSubscription(ctx, name, req.Group)
		}
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetCommitResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, tcode
			if tcode == 0 {
				p.ErrorCode = commitErrorCode(s.b.CommitOffset(ctx, name, req.Group, int(rp.Partition), rp.Offset))
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// commitErrorCode maps CommitOffset's errors: a partition the stream does
// not have is an unknown partition.
func commitErrorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, sluice.ErrInvalid), errors.Is(err, sluice.ErrStreamNotFound), errors.Is(err, sluice.ErrSubscriptionNotFound):
		return errUnknownTopic
	}
	return errorCode(err)
}

// groupSubscription makes sure the group's partitioned subscription on the
// topic exists, and returns the error code for the topic's partitions.
func (s *Server) groupSubscription(ctx context.Context, topic, group string) int16 {
	info, err := s.b.Subscription(ctx, topic, group)
	switch {
	case err == nil:
		if info.Config.Mode != sluice.PartitionedMode {
			s.opts.Logger.Warn("kafka: offset commit refused: the group id names a subscription of another mode", "topic", topic, "group", group, "mode", info.Config.Mode)
			return kerr.InvalidGroupID.Code
		}
		return 0
	case errors.Is(err, sluice.ErrStreamNotFound):
		return errUnknownTopic
	case !errors.Is(err, sluice.ErrSubscriptionNotFound):
		return errorCode(err)
	}
	_, err = s.b.CreateSubscription(ctx, topic, sluice.SubscriptionConfig{Name: group, Mode: sluice.PartitionedMode,
		DeadLetterStream: groupDeadLetter(topic, group)})
	switch {
	case err == nil, errors.Is(err, sluice.ErrSubscriptionExists): // a concurrent commit created it
		return 0
	case errors.Is(err, sluice.ErrStreamNotFound):
		return errUnknownTopic
	case errors.Is(err, sluice.ErrInvalid):
		// A limit of the stream's (MaxSubscriptionsPerStream): the
		// answer has no room for the reason, so the log gets it.
		s.opts.Logger.Warn("kafka: offset commit refused: cannot create the group's subscription", "topic", topic, "group", group, "error", err)
		return kerr.UnknownServerError.Code
	}
	return errorCode(err)
}

// checkCommit validates a commit's generation (or member epoch) and member
// against the live group: Kafka's rules for both kinds.
func (g *groups) checkCommit(group string, gen int32, memberID string, instanceID *string) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cg := g.consumer[group]; cg != nil {
		if gen < 0 && memberID == "" && len(cg.members) == 0 {
			return 0
		}
		m := cg.members[memberID]
		switch {
		case m == nil:
			return kerr.UnknownMemberID.Code
		case gen != m.epoch:
			return kerr.StaleMemberEpoch.Code
		}
		return 0
	}
	grp := g.classic[group]
	if grp == nil || len(grp.members) == 0 {
		if gen < 0 && memberID == "" {
			return 0 // offsets only: no group to check against
		}
		return kerr.UnknownMemberID.Code // a member of a group forgotten: it rejoins
	}
	if instanceID != nil {
		if id, ok := grp.static[*instanceID]; ok && id != memberID {
			return kerr.FencedInstanceID.Code
		}
	}
	m := grp.members[memberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case gen != grp.generation:
		return kerr.IllegalGeneration.Code
	case grp.state == stateCompleting:
		// The member has joined this generation and not yet synced:
		// it commits again once it has its assignment.
		return kerr.RebalanceInProgress.Code
	}
	g.touchLocked(grp, m)
	return 0
}

// topicIDs resolves topic ids (requests of v10+) to stream names, listing
// the streams once per request and only when asked.
type topicIDs struct {
	byID map[[16]byte]string
}

func (ids *topicIDs) name(ctx context.Context, s *Server, id [16]byte) (string, bool) {
	if ids.byID == nil {
		ids.byID = map[[16]byte]string{}
		streams, err := s.b.ListStreams(ctx)
		if err != nil {
			return "", false
		}
		for _, st := range streams {
			ids.byID[topicID(st.Config.Name)] = st.Config.Name
		}
	}
	name, ok := ids.byID[id]
	return name, ok
}
