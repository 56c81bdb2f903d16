package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(10, &handler{name: "FindCoordinator", min: 0, max: 6, serve: (*Server).findCoordinator})
}

// coordinatorTxn is the key type of transaction coordinators; this node
// answers for the others, groups (0) and share groups (2).
const coordinatorTxn = 1

// findCoordinator answers with this node for groups and share groups;
// transactions are not supported.
func (s *Server) findCoordinator(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := s.addr()
	answer := func(key string) (int32, string, int32, int16, *string) {
		if req.CoordinatorType == coordinatorTxn {
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, kmsg.StringPtr("sluice has no transactions")
		}
		return NodeID, host, port, 0, nil
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			co := kmsg.NewFindCoordinatorResponseCoordinator()
			co.Key = key
			co.NodeID, co.Host, co.Port, co.ErrorCode, co.ErrorMessage = answer(key)
			resp.Coordinators = append(resp.Coordinators, co)
		}
		return resp, nil
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
	return resp, nil
}
