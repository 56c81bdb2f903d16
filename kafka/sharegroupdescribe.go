package kafka

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// v1 is KIP-932 as released (v0 was its early access).
	register(77, &handler{name: "ShareGroupDescribe", min: 1, max: 1, serve: (*Server).shareGroupDescribe})
}

// maxDescribeShareGroups bounds the groups one ShareGroupDescribe names.
const maxDescribeShareGroups = MaxShareGroups

// shareGroupDescribe describes share groups with members: their epochs,
// members and assignments. A group without members is not coordinated
// (its subscriptions remain): GROUP_ID_NOT_FOUND, with state Dead.
func (s *Server) shareGroupDescribe(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareGroupDescribeRequest)
	resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
	g := s.shares
	for i, id := range req.GroupIDs {
		d := kmsg.NewShareGroupDescribeResponseGroup()
		d.GroupID = id
		if i >= maxDescribeShareGroups {
			d.ErrorCode = kerr.InvalidRequest.Code
			d.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("more than maxDescribeShareGroups=%d groups in one request", maxDescribeShareGroups))
			resp.Groups = append(resp.Groups, d)
			continue
		}
		g.mu.Lock()
		grp := g.groups[id]
		if grp == nil {
			g.mu.Unlock()
			d.GroupState, d.ErrorCode = "Dead", kerr.GroupIDNotFound.Code
			d.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("share group %q has no members", id))
			resp.Groups = append(resp.Groups, d)
			continue
		}
		d.GroupState, d.GroupEpoch, d.AssignmentEpoch, d.Assignor = "Stable", grp.epoch, grp.epoch, "simple"
		var topics []string
		for _, m := range grp.members {
			dm := kmsg.NewShareGroupDescribeResponseGroupMember()
			dm.MemberID, dm.MemberEpoch, dm.ClientID, dm.ClientHost = m.id, m.epoch, m.clientID, m.host
			dm.SubscribedTopicNames = slices.Clone(m.topics)
			for _, t := range slices.Sorted(maps.Keys(m.assigned)) {
				tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
				tp.TopicID, tp.Topic, tp.Partitions = topicID(t), t, allPartitions(m.assigned[t])
				dm.Assignment.TopicPartitions = append(dm.Assignment.TopicPartitions, tp)
			}
			topics = append(topics, m.topics...)
			d.Members = append(d.Members, dm)
		}
		g.mu.Unlock()
		sort.Slice(d.Members, func(i, j int) bool { return d.Members[i].MemberID < d.Members[j].MemberID })
		for _, t := range sortedTopics(topics) {
			if !c.sees(t) {
				d = kmsg.NewShareGroupDescribeResponseGroup()
				d.GroupID, d.ErrorCode = id, errTopicAuth
				d.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("share group %q consumes topic %q, which %s may not see", id, t, sharePrincipal(c)))
				break
			}
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp, nil
}
