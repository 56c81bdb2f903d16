package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(15, &handler{name: "DescribeGroups", min: 0, max: 6, serve: (*Server).describeGroups})
}

// The group kinds describeClassic finds.
const (
	groupNone = iota
	groupClassic
	groupConsumer
)

// describeGroups describes classic groups: state, protocol, and members
// with their metadata and assignments once Stable. A group with committed
// offsets only is Empty; a KIP-848 group (ConsumerGroupDescribe describes
// it) or an unknown one is Dead, with GROUP_ID_NOT_FOUND from v6, as in
// Kafka.
func (s *Server) describeGroups(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		out := kmsg.NewDescribeGroupsResponseGroup()
		out.Group = id
		if !validGroupID(id) {
			out.ErrorCode = kerr.InvalidGroupID.Code
			resp.Groups = append(resp.Groups, out)
			continue
		}
		kind := s.groups.describeClassic(c, id, &out)
		notFound := ""
		switch kind {
		case groupConsumer:
			notFound = "group " + id + " is a KIP-848 consumer group: ConsumerGroupDescribe describes it"
		case groupNone:
			topics, err := s.storedGroupTopics(ctx, id)
			if err != nil {
				out.ErrorCode = errorCode(err)
				break
			}
			switch {
			case len(topics) == 0:
				notFound = "group " + id + " has neither members nor committed offsets"
			case !c.mayDescribe(topics):
				out.ErrorCode = errGroupAuth
			default:
				out.State, out.ProtocolType = stateEmpty.String(), consumerProtocolType
			}
		}
		if notFound != "" {
			out.State = "Dead"
			if req.Version >= 6 {
				out.ErrorCode, out.ErrorMessage = kerr.GroupIDNotFound.Code, kmsg.StringPtr(notFound)
			}
		}
		resp.Groups = append(resp.Groups, out)
	}
	return resp, nil
}

// describeClassic fills out for a live classic group and reports what kind
// of group id is.
func (g *groups) describeClassic(c *conn, id string, out *kmsg.DescribeGroupsResponseGroup) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.consumer[id] != nil {
		return groupConsumer
	}
	grp := g.classic[id]
	if grp == nil || len(grp.members) == 0 {
		return groupNone
	}
	if !c.mayDescribe(g.groupTopicsLocked(id)) {
		out.ErrorCode = errGroupAuth
		return groupClassic
	}
	out.State, out.ProtocolType = grp.state.String(), grp.protocolType
	stable := grp.state == stateStable
	if stable {
		out.Protocol = grp.protocol
	}
	for _, m := range grp.ordered() {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.ClientID, dm.ClientHost = m.id, m.clientID, m.host
		if m.instanceID != "" {
			dm.InstanceID = kmsg.StringPtr(m.instanceID)
		}
		if stable {
			dm.ProtocolMetadata, dm.MemberAssignment = m.metadata(grp.protocol), m.assignment
		}
		out.Members = append(out.Members, dm)
	}
	return groupClassic
}
