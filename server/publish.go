package server

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"

	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// publishService serves sluice.v1.PublishService.
type publishService struct{ s *Server }

func (h publishService) Publish(ctx context.Context, req *connect.Request[sluicev1.PublishRequest]) (*connect.Response[sluicev1.PublishResponse], error) {
	msg, err := messageFrom(req.Msg.GetMessage(), "message")
	if err != nil {
		return nil, err
	}
	pos, err := h.s.b.Publish(ctx, req.Msg.GetStream(), msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.PublishResponse{Position: positionTo(pos)}), nil
}

func (h publishService) PublishBatch(ctx context.Context, req *connect.Request[sluicev1.PublishBatchRequest]) (*connect.Response[sluicev1.PublishBatchResponse], error) {
	msgs, err := messagesFrom(req.Msg.GetMessages())
	if err != nil {
		return nil, err
	}
	pos, err := h.s.b.PublishBatch(ctx, req.Msg.GetStream(), msgs)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.PublishBatchResponse{Positions: positionsTo(pos)}), nil
}

// PublishStream publishes one batch at a time, in the order received: a batch
// is stored, and answered, before the next is read, so the batches of a stream
// land in the order they were sent. Batches from different calls still share
// fsyncs (group commit); a producer that needs more throughput than one batch
// per fsync opens more calls.
func (h publishService) PublishStream(ctx context.Context, stream *connect.BidiStream[sluicev1.PublishStreamRequest, sluicev1.PublishStreamResponse]) error {
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.s.draining.Err() != nil {
			return errShuttingDown // this batch is not published
		}
		msgs, err := messagesFrom(req.GetMessages())
		if err != nil {
			return err
		}
		pos, err := h.s.b.PublishBatch(ctx, req.GetStream(), msgs)
		if err != nil {
			return err
		}
		if err := stream.Send(&sluicev1.PublishStreamResponse{Positions: positionsTo(pos)}); err != nil {
			return err
		}
	}
}
