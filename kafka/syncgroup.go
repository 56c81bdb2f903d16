package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(14, &handler{name: "SyncGroup", min: 0, max: 5, serve: (*Server).syncGroup})
}

// syncGroup gives each member of a classic group its assignment, once the
// leader has sent them: followers that sync first wait for it, at most
// the rebalance timeout (after which the group rebalances without the
// members that did not sync).
func (s *Server) syncGroup(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SyncGroupRequest)
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	if !validGroupID(req.Group) {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	wait, res, protocolType, protocol := s.groups.sync(req)
	if wait != nil {
		select {
		case res = <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp.ErrorCode, resp.MemberAssignment = res.code, res.assignment
	if res.code == 0 {
		resp.ProtocolType, resp.Protocol = kmsg.StringPtr(protocolType), kmsg.StringPtr(protocol)
	}
	return resp, nil
}

func (g *groups) sync(req *kmsg.SyncGroupRequest) (wait chan syncResult, res syncResult, protocolType, protocol string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fail := func(code int16) (chan syncResult, syncResult, string, string) {
		return nil, syncResult{code: code}, "", ""
	}
	grp := g.classic[req.Group]
	if grp == nil || g.closed {
		return fail(kerr.UnknownMemberID.Code)
	}
	if req.InstanceID != nil {
		if id, ok := grp.static[*req.InstanceID]; ok && id != req.MemberID {
			return fail(kerr.FencedInstanceID.Code)
		}
	}
	m := grp.members[req.MemberID]
	switch {
	case m == nil:
		return fail(kerr.UnknownMemberID.Code)
	case req.Generation != grp.generation:
		return fail(kerr.IllegalGeneration.Code)
	case req.ProtocolType != nil && *req.ProtocolType != grp.protocolType,
		req.Protocol != nil && *req.Protocol != grp.protocol:
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	protocolType, protocol = grp.protocolType, grp.protocol
	g.touchLocked(grp, m)
	switch grp.state {
	case statePreparing:
		return fail(kerr.RebalanceInProgress.Code)
	case stateStable:
		return nil, syncResult{assignment: m.assignment}, protocolType, protocol
	case stateCompleting:
		m.synced = true
		if m.id != grp.leader {
			if m.syncWait != nil { // a retry on another connection
				m.syncWait <- syncResult{code: kerr.RebalanceInProgress.Code}
			}
			m.syncWait = make(chan syncResult, 1)
			return m.syncWait, syncResult{}, protocolType, protocol
		}
		for _, a := range req.GroupAssignment {
			if to := grp.members[a.MemberID]; to != nil {
				to.assignment = a.MemberAssignment
			}
		}
		grp.state = stateStable
		if grp.syncTimer != nil {
			grp.syncTimer.Stop()
		}
		for _, to := range grp.members {
			if to.syncWait != nil {
				to.syncWait <- syncResult{assignment: to.assignment}
				to.syncWait = nil
			}
		}
		return nil, syncResult{assignment: m.assignment}, protocolType, protocol
	}
	return fail(kerr.UnknownMemberID.Code)
}
