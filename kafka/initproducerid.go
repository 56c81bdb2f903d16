package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(22, &handler{name: "InitProducerId", min: 0, max: 5, serve: (*Server).initProducerID})
}

// initProducerID gives an idempotent producer its id, epoch 0. Transactional
// producers are refused: sluice has no transactions.
func (s *Server) initProducerID(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil
	}
	if req.ProducerID >= 0 && req.ProducerEpoch >= 0 {
		// A producer bumping its epoch (KIP-360) keeps its id.
		resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = s.producers.allocate(), 0
	return resp, nil
}
