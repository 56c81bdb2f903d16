package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(13, &handler{name: "LeaveGroup", min: 0, max: 5, serve: (*Server).leaveGroup})
}

// leaveGroup removes members from a classic group (v3+: several, by member
// id or by group.instance.id); the others rebalance at once rather than
// after the leavers' session timeouts.
func (s *Server) leaveGroup(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if !validGroupID(req.Group) {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	if req.Version < 3 {
		resp.ErrorCode = s.groups.leave(req.Group, req.MemberID, "")
		return resp, nil
	}
	for _, rm := range req.Members {
		out := kmsg.NewLeaveGroupResponseMember()
		out.MemberID, out.InstanceID = rm.MemberID, rm.InstanceID
		instance := ""
		if rm.InstanceID != nil {
			instance = *rm.InstanceID
		}
		out.ErrorCode = s.groups.leave(req.Group, rm.MemberID, instance)
		resp.Members = append(resp.Members, out)
	}
	return resp, nil
}

// leave removes one member, named by its id, its instance id or both (which
// must then agree).
func (g *groups) leave(group, memberID, instanceID string) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	grp := g.classic[group]
	if grp == nil || g.closed {
		return kerr.UnknownMemberID.Code
	}
	if instanceID != "" {
		id, ok := grp.static[instanceID]
		switch {
		case !ok:
			return kerr.UnknownMemberID.Code
		case memberID != "" && memberID != id:
			return kerr.FencedInstanceID.Code
		}
		memberID = id
	}
	if t, ok := grp.pending[memberID]; ok {
		t.Stop()
		delete(grp.pending, memberID)
		g.maybeCompleteJoinLocked(grp)
		g.forgetIfIdleLocked(grp)
		return 0
	}
	m := grp.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	g.leaveClassicLocked(grp, m, kerr.UnknownMemberID.Code)
	return 0
}
