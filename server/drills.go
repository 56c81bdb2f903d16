package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/drill"
)

// Limits of RunDrill.
const (
	// MaxDrillsRunning bounds the live runs in progress at once: each creates
	// streams and runs workers on the server's broker.
	MaxDrillsRunning = 2
	// MaxDrillRun bounds one live run; the scenarios take seconds.
	MaxDrillRun = 2 * time.Minute
)

// drillStreamPrefix begins every scratch stream of a live run; RunDrill's
// permission rule checks the token against it.
const drillStreamPrefix = "drill-"

// drillService serves sluice.v1.DrillService.
type drillService struct{ s *Server }

func (h drillService) ListDrills(ctx context.Context, req *connect.Request[sluicev1.ListDrillsRequest]) (*connect.Response[sluicev1.ListDrillsResponse], error) {
	res := &sluicev1.ListDrillsResponse{
		MinTimer: durationpb.New(drill.MinTimer),
		MaxTimer: durationpb.New(drill.MaxTimer),
	}
	for _, d := range drill.All() {
		res.Drills = append(res.Drills, &sluicev1.Drill{
			Number: int32(d.Number), Slug: d.Slug, Title: d.Title, Question: d.Question,
			Checklist: d.Checklist, Live: d.Live,
		})
	}
	return connect.NewResponse(res), nil
}

func (h drillService) RunDrill(ctx context.Context, req *connect.Request[sluicev1.RunDrillRequest], stream *connect.ServerStream[sluicev1.RunDrillResponse]) error {
	n := int(req.Msg.GetNumber())
	if _, err := drill.Get(n); err != nil {
		return invalid("number", "%s", err.Error())
	}
	select {
	case h.s.drills <- struct{}{}:
		defer func() { <-h.s.drills }()
	default:
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%d drills are running, the limit (MaxDrillsRunning); try again when one ends", MaxDrillsRunning))
	}
	dir, err := os.MkdirTemp("", "sluice-drill-")
	if err != nil {
		return fmt.Errorf("server: drill: %w", err)
	}
	defer os.RemoveAll(dir)
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	ctx, cancel := context.WithTimeout(ctx, MaxDrillRun)
	defer cancel()
	if err := stream.Send(nil); err != nil { // the headers, at once
		return err
	}
	start := time.Now()
	var sendErr error
	emit := func(e drill.Event) {
		if sendErr != nil {
			return
		}
		res := &sluicev1.RunDrillResponse{Kind: e.Kind, Text: e.Text, At: durationpb.New(time.Since(start))}
		for _, f := range e.Figures {
			res.Figures = append(res.Figures, &sluicev1.DrillFigure{Name: f.Name, Value: f.Value, Unit: f.Unit})
		}
		if sendErr = stream.Send(res); sendErr != nil {
			cancel() // the caller is gone: stop the run
		}
	}
	opts := drill.Options{Prefix: fmt.Sprintf("%s%d-%s", drillStreamPrefix, n, hex.EncodeToString(suffix[:])), Dir: dir}
	err = drill.Run(ctx, h.s.b, n, opts, emit)
	if sendErr != nil {
		return sendErr
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("drill %d ran over MaxDrillRun (%v)", n, MaxDrillRun))
	}
	return err
}
