package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(12, &handler{name: "Heartbeat", min: 0, max: 4, serve: (*Server).heartbeat})
}

// heartbeat keeps a classic member's session and tells it of a rebalance
// (REBALANCE_IN_PROGRESS: rejoin).
func (s *Server) heartbeat(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if !validGroupID(req.Group) {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	resp.ErrorCode = s.groups.heartbeat(req)
	return resp, nil
}

func (g *groups) heartbeat(req *kmsg.HeartbeatRequest) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	grp := g.classic[req.Group]
	if grp == nil || g.closed {
		return kerr.UnknownMemberID.Code
	}
	if req.InstanceID != nil {
		if id, ok := grp.static[*req.InstanceID]; ok && id != req.MemberID {
			return kerr.FencedInstanceID.Code
		}
	}
	m := grp.members[req.MemberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case req.Generation != grp.generation:
		return kerr.IllegalGeneration.Code
	}
	g.touchLocked(grp, m)
	if grp.state == statePreparing {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}
