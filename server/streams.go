package server

import (
	"context"

	"connectrpc.com/connect"

	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// streamService serves sluice.v1.StreamService.
type streamService struct{ s *Server }

func (h streamService) CreateStream(ctx context.Context, req *connect.Request[sluicev1.CreateStreamRequest]) (*connect.Response[sluicev1.CreateStreamResponse], error) {
	cfg, err := streamConfigFrom(req.Msg.GetConfig(), "config")
	if err != nil {
		return nil, err
	}
	info, err := h.s.b.CreateStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.CreateStreamResponse{Stream: streamInfoTo(info)}), nil
}

func (h streamService) UpdateStream(ctx context.Context, req *connect.Request[sluicev1.UpdateStreamRequest]) (*connect.Response[sluicev1.UpdateStreamResponse], error) {
	cfg, err := streamConfigFrom(req.Msg.GetConfig(), "config")
	if err != nil {
		return nil, err
	}
	info, err := h.s.b.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.UpdateStreamResponse{Stream: streamInfoTo(info)}), nil
}

func (h streamService) DeleteStream(ctx context.Context, req *connect.Request[sluicev1.DeleteStreamRequest]) (*connect.Response[sluicev1.DeleteStreamResponse], error) {
	if err := h.s.b.DeleteStream(ctx, req.Msg.GetName()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.DeleteStreamResponse{}), nil
}

func (h streamService) ListStreams(ctx context.Context, req *connect.Request[sluicev1.ListStreamsRequest]) (*connect.Response[sluicev1.ListStreamsResponse], error) {
	infos, err := h.s.b.ListStreams(ctx)
	if err != nil {
		return nil, err
	}
	out := &sluicev1.ListStreamsResponse{Streams: make([]*sluicev1.StreamInfo, len(infos))}
	for i, info := range infos {
		out.Streams[i] = streamInfoTo(info)
	}
	return connect.NewResponse(out), nil
}

func (h streamService) GetStream(ctx context.Context, req *connect.Request[sluicev1.GetStreamRequest]) (*connect.Response[sluicev1.GetStreamResponse], error) {
	info, err := h.s.b.Stream(ctx, req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.GetStreamResponse{Stream: streamInfoTo(info)}), nil
}
