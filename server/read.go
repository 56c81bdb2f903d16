package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// Bounds of one response of Read and SubscribeLive: records stored together
// go out together, up to about 1 MiB (a larger record goes alone, so a gRPC
// client whose limit is the usual 4 MiB reads every record of up to 4 MiB).
const (
	readResponseBytes   = 1 << 20
	readResponseRecords = 1000
)

// readService serves sluice.v1.ReadService.
type readService struct{ s *Server }

func (h readService) Read(ctx context.Context, req *connect.Request[sluicev1.ReadRequest], stream *connect.ServerStream[sluicev1.ReadResponse]) error {
	start, err := startFrom(req.Msg.GetStart(), sluice.Earliest(), "start")
	if err != nil {
		return err
	}
	r, err := h.s.b.NewReader(ctx, req.Msg.GetStream(), sluice.ReaderConfig{
		Partition:  int(req.Msg.GetPartition()),
		Start:      start,
		FetchBytes: int(req.Msg.GetFetchBytes()),
	})
	if err != nil {
		return err
	}
	defer r.Close()
	if err := stream.Send(nil); err != nil {
		return err
	}
	return h.s.follow(ctx, r, func(recs []*sluicev1.Record) error {
		return stream.Send(&sluicev1.ReadResponse{Records: recs})
	})
}

func (h readService) SubscribeLive(ctx context.Context, req *connect.Request[sluicev1.SubscribeLiveRequest], stream *connect.ServerStream[sluicev1.SubscribeLiveResponse]) error {
	start, err := startFrom(req.Msg.GetStart(), sluice.Latest(), "start")
	if err != nil {
		return err
	}
	r, err := h.s.b.SubscribeLive(ctx, req.Msg.GetStream(), sluice.LiveConfig{
		Start:      &start,
		FetchBytes: int(req.Msg.GetFetchBytes()),
	})
	if err != nil {
		return err
	}
	defer r.Close()
	if err := stream.Send(nil); err != nil {
		return err
	}
	return h.s.follow(ctx, r, func(recs []*sluicev1.Record) error {
		return stream.Send(&sluicev1.SubscribeLiveResponse{Records: recs})
	})
}

// noWait is a context that has ended: Next with it returns a record already
// stored, or at once an error, without waiting for one to be published.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// follow sends what r reads until the caller cancels, r fails, or the server
// drains. Each response holds the first record Next waited for and those stored
// right behind it, up to the response bounds. The handler has sent the headers
// already, so that the client's call returns once the read is open rather than
// with the first record.
func (s *Server) follow(ctx context.Context, r sluice.Reader, send func([]*sluicev1.Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.draining, cancel)()
	for {
		rec, err := r.Next(ctx)
		if err != nil {
			if ctx.Err() != nil && s.draining.Err() != nil {
				return errShuttingDown
			}
			return err
		}
		recs := []*sluicev1.Record{recordTo(rec)}
		size := recordSize(rec)
		var readErr error
		for len(recs) < readResponseRecords && size < readResponseBytes {
			rec, err := r.Next(noWait)
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					readErr = err // after what was read before it
				}
				break
			}
			recs = append(recs, recordTo(rec))
			size += recordSize(rec)
		}
		if err := send(recs); err != nil {
			return err
		}
		if readErr != nil {
			return readErr
		}
	}
}
