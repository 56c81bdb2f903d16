package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// Limits of ConsumerService.
const (
	// DefaultFetchWait and MaxFetchWait bound how long a unary Fetch waits.
	DefaultFetchWait = 5 * time.Second
	MaxFetchWait     = 5 * time.Minute
	// MaxConsumeCredit bounds a Consume stream's outstanding credit.
	MaxConsumeCredit = 10_000
	// MaxSettlementsPerRequest bounds the settlements of one ConsumeRequest.
	MaxSettlementsPerRequest = 1000
)

// consumerService serves sluice.v1.ConsumerService.
type consumerService struct{ s *Server }

// consumer opens the broker's consumer that c names. Leases belong to the
// subscription, so any consumer of it settles any of its deliveries; the name
// matters to Fetch (the in-flight bound, the group of a partitioned
// subscription, the attempt history).
func (h consumerService) consumer(ctx context.Context, c *sluicev1.Consumer, needName bool) (sluice.Consumer, error) {
	if c == nil {
		return nil, invalid("consumer", "required: the stream, subscription and consumer name")
	}
	if needName && c.GetName() == "" {
		return nil, invalid("consumer.name", "required, so that the consumer is the same from call to call")
	}
	return h.s.b.NewConsumer(ctx, c.GetStream(), c.GetSubscription(), sluice.ConsumerConfig{
		Name: c.GetName(), MaxInFlight: int(c.GetMaxInFlight()),
	})
}

func deliveryTo(d sluice.Delivery) *sluicev1.Delivery {
	return &sluicev1.Delivery{
		Record:       recordTo(d.Record),
		Subscription: d.Subscription,
		Deliveries:   int32(d.Deliveries),
		Lease:        d.Lease,
		Deadline:     apiconv.TimeOrNil(d.Deadline),
	}
}

func deliveryFrom(r *sluicev1.DeliveryRef, field string) (sluice.Delivery, error) {
	if r == nil {
		return sluice.Delivery{}, invalid(field, "required: partition, offset and lease")
	}
	return sluice.Delivery{Record: sluice.Record{Partition: int(r.GetPartition()), Offset: r.GetOffset()}, Lease: r.GetLease()}, nil
}

func (h consumerService) Fetch(ctx context.Context, req *connect.Request[sluicev1.FetchRequest]) (*connect.Response[sluicev1.FetchResponse], error) {
	wait := DefaultFetchWait
	if req.Msg.Wait != nil {
		var err error
		if wait, err = durationFrom(req.Msg.GetWait(), "wait"); err != nil {
			return nil, err
		}
		if wait < 0 || wait > MaxFetchWait {
			return nil, invalid("wait", "%v outside [0, MaxFetchWait=%v]", wait, MaxFetchWait)
		}
	}
	max := int(req.Msg.GetMax())
	if max == 0 {
		max = 1
	}
	c, err := h.consumer(ctx, req.Msg.GetConsumer(), true)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	defer context.AfterFunc(h.s.draining, cancel)()
	ds, err := c.Fetch(wctx, max)
	if err != nil && (ctx.Err() != nil || !errors.Is(err, wctx.Err())) {
		return nil, err
	}
	out := &sluicev1.FetchResponse{Deliveries: make([]*sluicev1.Delivery, len(ds))}
	for i, d := range ds {
		out.Deliveries[i] = deliveryTo(d)
	}
	return connect.NewResponse(out), nil
}

// settle applies one settlement and returns an extend's new deadline.
func settle(ctx context.Context, c sluice.Consumer, st *sluicev1.Settlement, field string) (time.Time, error) {
	d, err := deliveryFrom(st.GetDelivery(), field+".delivery")
	if err != nil {
		return time.Time{}, err
	}
	switch st.GetAction() {
	case sluicev1.SettleAction_SETTLE_ACTION_ACK:
		return time.Time{}, c.Ack(ctx, d)
	case sluicev1.SettleAction_SETTLE_ACTION_NACK:
		delay, err := durationFrom(st.GetDelay(), field+".delay")
		if err != nil {
			return time.Time{}, err
		}
		return time.Time{}, c.Nack(ctx, d, sluice.NackOptions{Delay: delay, Reason: st.GetReason()})
	case sluicev1.SettleAction_SETTLE_ACTION_TERM:
		return time.Time{}, c.Term(ctx, d, st.GetReason())
	case sluicev1.SettleAction_SETTLE_ACTION_EXTEND:
		by, err := durationFrom(st.GetBy(), field+".by")
		if err != nil {
			return time.Time{}, err
		}
		return c.Extend(ctx, d, by)
	default:
		return time.Time{}, invalid(field+".action", "%v: one of ack, nack, term, extend", st.GetAction())
	}
}

func (h consumerService) Ack(ctx context.Context, req *connect.Request[sluicev1.AckRequest]) (*connect.Response[sluicev1.AckResponse], error) {
	c, err := h.consumer(ctx, req.Msg.GetConsumer(), false)
	if err != nil {
		return nil, err
	}
	if _, err := settle(ctx, c, &sluicev1.Settlement{Delivery: req.Msg.GetDelivery(), Action: sluicev1.SettleAction_SETTLE_ACTION_ACK}, ""); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.AckResponse{}), nil
}

func (h consumerService) Nack(ctx context.Context, req *connect.Request[sluicev1.NackRequest]) (*connect.Response[sluicev1.NackResponse], error) {
	c, err := h.consumer(ctx, req.Msg.GetConsumer(), false)
	if err != nil {
		return nil, err
	}
	if _, err := settle(ctx, c, &sluicev1.Settlement{Delivery: req.Msg.GetDelivery(), Action: sluicev1.SettleAction_SETTLE_ACTION_NACK,
		Delay: req.Msg.GetDelay(), Reason: req.Msg.GetReason()}, ""); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.NackResponse{}), nil
}

func (h consumerService) Term(ctx context.Context, req *connect.Request[sluicev1.TermRequest]) (*connect.Response[sluicev1.TermResponse], error) {
	c, err := h.consumer(ctx, req.Msg.GetConsumer(), false)
	if err != nil {
		return nil, err
	}
	if _, err := settle(ctx, c, &sluicev1.Settlement{Delivery: req.Msg.GetDelivery(), Action: sluicev1.SettleAction_SETTLE_ACTION_TERM,
		Reason: req.Msg.GetReason()}, ""); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.TermResponse{}), nil
}

func (h consumerService) Extend(ctx context.Context, req *connect.Request[sluicev1.ExtendRequest]) (*connect.Response[sluicev1.ExtendResponse], error) {
	c, err := h.consumer(ctx, req.Msg.GetConsumer(), false)
	if err != nil {
		return nil, err
	}
	t, err := settle(ctx, c, &sluicev1.Settlement{Delivery: req.Msg.GetDelivery(), Action: sluicev1.SettleAction_SETTLE_ACTION_EXTEND,
		By: req.Msg.GetBy()}, "")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.ExtendResponse{Deadline: timestamppb.New(t)}), nil
}

// statusTo is the in-band form of what a unary call would have failed with.
func (s *Server) statusTo(procedure string, err error) *sluicev1.Status {
	ce := s.fail(procedure, err)
	st := &sluicev1.Status{Code: ce.Code().String(), Message: ce.Message()}
	for _, d := range ce.Details() {
		if m, derr := d.Value(); derr == nil {
			if fv, ok := m.(*sluicev1.FieldViolation); ok {
				st.FieldViolation = fv
			}
		}
	}
	return st
}

// consumeStream is one Consume call: the credit the client granted, and the
// one sender of its responses.
type consumeStream struct {
	h      consumerService
	stream *connect.BidiStream[sluicev1.ConsumeRequest, sluicev1.ConsumeResponse]
	cons   sluice.Consumer

	sendMu sync.Mutex

	mu      sync.Mutex
	credit  int
	granted chan struct{} // signalled (capacity 1) when credit grows
	err     error         // why the receiving side ended, nil for a clean end
}

func (c *consumeStream) send(res *sluicev1.ConsumeResponse) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(res)
}

func (h consumerService) Consume(ctx context.Context, stream *connect.BidiStream[sluicev1.ConsumeRequest, sluicev1.ConsumeResponse]) error {
	first, err := stream.Receive()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	cons, err := h.consumer(ctx, first.GetConsumer(), false)
	if err != nil {
		return err
	}
	defer cons.Close()
	if err := stream.Send(&sluicev1.ConsumeResponse{}); err != nil { // the call is open
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(h.s.draining, cancel)()
	c := &consumeStream{h: h, stream: stream, cons: cons, granted: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		c.receive(ctx, first)
	}()
	err = c.deliver(ctx)
	cancel()
	<-done
	switch {
	case c.err != nil:
		return c.err
	case h.s.draining.Err() != nil:
		return errShuttingDown
	case err != nil && ctx.Err() == nil:
		return err
	}
	return nil
}

// receive applies the client's requests until it stops sending or ctx ends.
func (c *consumeStream) receive(ctx context.Context, req *sluicev1.ConsumeRequest) {
	const procedure = sluicev1connect.ConsumerServiceConsumeProcedure
	for {
		if n := req.GetCredit(); n != 0 {
			c.mu.Lock()
			if n < 0 || c.credit+int(n) > MaxConsumeCredit {
				c.err = invalid("credit", "%d would make the outstanding credit %d, outside [0, MaxConsumeCredit=%d]", n, c.credit+int(n), MaxConsumeCredit)
				c.mu.Unlock()
				return
			}
			c.credit += int(n)
			c.mu.Unlock()
			select {
			case c.granted <- struct{}{}:
			default:
			}
		}
		if sts := req.GetSettlements(); len(sts) > 0 {
			if len(sts) > MaxSettlementsPerRequest {
				c.mu.Lock()
				c.err = invalid("settlements", "%d settlements in one request, over MaxSettlementsPerRequest=%d", len(sts), MaxSettlementsPerRequest)
				c.mu.Unlock()
				return
			}
			res := &sluicev1.ConsumeResponse{Results: make([]*sluicev1.SettlementResult, len(sts))}
			for i := 0; i < len(sts); {
				if n := c.ackRun(ctx, sts[i:], res.Results[i:]); n > 0 {
					i += n
					continue
				}
				st := sts[i]
				r := &sluicev1.SettlementResult{Id: st.GetId()}
				t, err := settle(ctx, c.cons, st, "settlements")
				if err != nil {
					r.Error = c.h.s.statusTo(procedure, err)
				} else if !t.IsZero() {
					r.Deadline = timestamppb.New(t)
				}
				res.Results[i] = r
				i++
			}
			if err := c.send(res); err != nil {
				return
			}
		}
		var err error
		if req, err = c.stream.Receive(); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
			}
			return
		}
	}
}

// ackRun settles the acks at the start of sts with one AckMany (one journal
// write) and answers them in out; it returns how many it settled, 0 when sts
// does not start with two acks or more.
func (c *consumeStream) ackRun(ctx context.Context, sts []*sluicev1.Settlement, out []*sluicev1.SettlementResult) int {
	n := 0
	for n < len(sts) && sts[n].GetAction() == sluicev1.SettleAction_SETTLE_ACTION_ACK && sts[n].GetDelivery() != nil {
		n++
	}
	if n < 2 {
		return 0
	}
	ds := make([]sluice.Delivery, n)
	for i, st := range sts[:n] {
		ds[i], _ = deliveryFrom(st.GetDelivery(), "") // not nil: checked above
	}
	for i, err := range c.cons.AckMany(ctx, ds) {
		out[i] = &sluicev1.SettlementResult{Id: sts[i].GetId()}
		if err != nil {
			out[i].Error = c.h.s.statusTo(sluicev1connect.ConsumerServiceConsumeProcedure, err)
		}
	}
	return n
}

// deliver sends deliveries while there is credit, until ctx ends.
func (c *consumeStream) deliver(ctx context.Context) error {
	for {
		c.mu.Lock()
		n := min(c.credit, sluice.MaxFetch)
		c.mu.Unlock()
		if n == 0 {
			select {
			case <-c.granted:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		ds, err := c.cons.Fetch(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.mu.Lock()
		c.credit -= len(ds)
		c.mu.Unlock()
		res := &sluicev1.ConsumeResponse{Deliveries: make([]*sluicev1.Delivery, len(ds))}
		for i, d := range ds {
			res.Deliveries[i] = deliveryTo(d)
		}
		if err := c.send(res); err != nil {
			return err
		}
	}
}
