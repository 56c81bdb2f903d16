package kafka

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	register(16, &handler{name: "ListGroups", min: 0, max: 5, serve: (*Server).listGroups})
}

// MaxListedGroups bounds one ListGroups answer; groups past it (in name
// order) are left out.
const MaxListedGroups = 100_000

// The group types of ListGroups v5.
const (
	groupTypeClassic  = "classic"
	groupTypeConsumer = "consumer"
)

// listedGroup is one group of a ListGroups answer.
type listedGroup struct {
	id, protocolType, state, typ string
}

// listGroups lists the groups with members, classic and KIP-848, and the
// groups with committed offsets only (partitioned subscriptions), which
// are Empty classic groups of the consumer protocol, as in Kafka.
func (s *Server) listGroups(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	listed := s.groups.listLive(c)
	seen := map[string]bool{}
	for _, l := range listed {
		seen[l.id] = true
	}
	streams, err := s.b.ListStreams(ctx)
	if err != nil {
		resp.ErrorCode = errorCode(err)
		return resp, nil
	}
	for _, st := range streams {
		if !c.sees(st.Config.Name) {
			continue
		}
		subs, err := s.b.ListSubscriptions(ctx, st.Config.Name)
		if err != nil {
			continue // deleted meanwhile
		}
		for _, sub := range subs {
			if sub.Config.Mode == sluice.PartitionedMode && !seen[sub.Config.Name] {
				seen[sub.Config.Name] = true
				listed = append(listed, listedGroup{id: sub.Config.Name, protocolType: consumerProtocolType, state: stateEmpty.String(), typ: groupTypeClassic})
			}
		}
	}
	slices.SortFunc(listed, func(a, b listedGroup) int { return strings.Compare(a.id, b.id) })
	for _, l := range listed {
		if len(resp.Groups) == MaxListedGroups {
			break
		}
		if req.Version >= 4 && len(req.StatesFilter) > 0 && !containsFold(req.StatesFilter, l.state) {
			continue
		}
		if req.Version >= 5 && len(req.TypesFilter) > 0 && !containsFold(req.TypesFilter, l.typ) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = l.id, l.protocolType, l.state, l.typ
		resp.Groups = append(resp.Groups, lg)
	}
	return resp, nil
}

// listLive lists the groups with members that the connection may see.
func (g *groups) listLive(c *conn) []listedGroup {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []listedGroup
	for id, grp := range g.classic {
		if len(grp.members) > 0 && c.mayDescribe(g.groupTopicsLocked(id)) {
			out = append(out, listedGroup{id: id, protocolType: grp.protocolType, state: grp.state.String(), typ: groupTypeClassic})
		}
	}
	for id, grp := range g.consumer {
		if c.mayDescribe(g.groupTopicsLocked(id)) {
			out = append(out, listedGroup{id: id, protocolType: consumerProtocolType, state: grp.state(), typ: groupTypeConsumer})
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
