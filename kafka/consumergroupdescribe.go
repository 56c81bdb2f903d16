package kafka

import (
	"context"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(69, &handler{name: "ConsumerGroupDescribe", min: 0, max: 1, serve: (*Server).consumerGroupDescribe})
}

// consumerMemberType is ConsumerGroupDescribe's member type of a KIP-848
// member (0 would be a classic member in a consumer group, which sluice
// does not mix).
const consumerMemberType = 1

// consumerGroupDescribe describes KIP-848 groups: epochs, assignor, and
// each member's subscription, current and target assignment. A classic or
// unknown group gets GROUP_ID_NOT_FOUND, as in Kafka.
func (s *Server) consumerGroupDescribe(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ConsumerGroupDescribeRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, id := range req.Groups {
		resp.Groups = append(resp.Groups, s.groups.describeConsumer(c, id))
	}
	return resp, nil
}

func (g *groups) describeConsumer(c *conn, id string) kmsg.ConsumerGroupDescribeResponseGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := kmsg.NewConsumerGroupDescribeResponseGroup()
	out.Group = id
	grp := g.consumer[id]
	switch {
	case !validGroupID(id):
		out.ErrorCode = kerr.InvalidGroupID.Code
		return out
	case grp == nil:
		out.ErrorCode = kerr.GroupIDNotFound.Code
		out.ErrorMessage = kmsg.StringPtr("group " + id + " is not a KIP-848 consumer group with members")
		return out
	case !c.mayDescribe(g.groupTopicsLocked(id)):
		out.ErrorCode = errGroupAuth
		return out
	}
	out.State, out.Epoch, out.AssignmentEpoch, out.AssignorName = grp.state(), grp.epoch, grp.assignmentEpoch, grp.assignor()
	for _, mid := range slices.Sorted(maps.Keys(grp.members)) {
		m := grp.members[mid]
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID, dm.MemberEpoch, dm.ClientID, dm.ClientHost = m.id, m.epoch, m.clientID, m.host
		if m.instanceID != "" {
			dm.InstanceID = kmsg.StringPtr(m.instanceID)
		}
		if m.rackID != "" {
			dm.RackID = kmsg.StringPtr(m.rackID)
		}
		dm.SubscribedTopics = slices.Clone(m.names)
		if m.regex != "" {
			dm.SubscribedTopicRegex = kmsg.StringPtr(m.regex)
		}
		dm.Assignment = describedAssignment(m.assigned)
		dm.TargetAssignment = describedAssignment(m.target)
		dm.MemberType = consumerMemberType
		out.Members = append(out.Members, dm)
	}
	return out
}

func describedAssignment(ps partSet) kmsg.Assignment {
	a := kmsg.NewAssignment()
	for _, tp := range byTopic(ps) {
		t := kmsg.NewAssignmentTopicPartition()
		t.TopicID, t.Topic, t.Partitions = topicID(tp.topic), tp.topic, tp.partitions
		a.TopicPartitions = append(a.TopicPartitions, t)
	}
	return a
}
