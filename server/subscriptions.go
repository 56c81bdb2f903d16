package server

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// subscriptionService serves sluice.v1.SubscriptionService.
type subscriptionService struct{ s *Server }

func subscriptionConfigFrom(c *sluicev1.SubscriptionConfig, field string) (sluice.SubscriptionConfig, error) {
	if c == nil {
		return sluice.SubscriptionConfig{}, invalid(field, "required")
	}
	out := sluice.SubscriptionConfig{
		Name:             c.GetName(),
		StartLatest:      c.GetStartLatest(),
		MaxDeliveries:    int(c.GetMaxDeliveries()),
		DeadLetterStream: c.GetDeadLetterStream(),
	}
	var err error
	if out.Mode, err = enumFrom(apiconv.SubscriptionModes, c.GetMode(), field+".mode"); err != nil {
		return out, err
	}
	if out.Delivery, err = enumFrom(apiconv.DeliveryGuarantees, c.GetDelivery(), field+".delivery"); err != nil {
		return out, err
	}
	if out.Lease, err = durationFrom(c.GetLease(), field+".lease"); err != nil {
		return out, err
	}
	if out.BackoffInitial, err = durationFrom(c.GetBackoffInitial(), field+".backoff_initial"); err != nil {
		return out, err
	}
	if out.BackoffMax, err = durationFrom(c.GetBackoffMax(), field+".backoff_max"); err != nil {
		return out, err
	}
	if out.Session, err = durationFrom(c.GetSession(), field+".session"); err != nil {
		return out, err
	}
	return out, nil
}

func subscriptionConfigTo(c sluice.SubscriptionConfig) *sluicev1.SubscriptionConfig {
	return &sluicev1.SubscriptionConfig{
		Name:             c.Name,
		Mode:             enumTo(apiconv.SubscriptionModes, c.Mode),
		StartLatest:      c.StartLatest,
		Lease:            apiconv.DurationOrNil(c.Lease),
		MaxDeliveries:    int32(c.MaxDeliveries),
		BackoffInitial:   apiconv.DurationOrNil(c.BackoffInitial),
		BackoffMax:       apiconv.DurationOrNil(c.BackoffMax),
		Session:          apiconv.DurationOrNil(c.Session),
		Delivery:         enumTo(apiconv.DeliveryGuarantees, c.Delivery),
		DeadLetterStream: c.DeadLetterStream,
	}
}

func subscriptionInfoTo(info sluice.SubscriptionInfo) *sluicev1.SubscriptionInfo {
	out := &sluicev1.SubscriptionInfo{
		Stream:          info.Stream,
		Config:          subscriptionConfigTo(info.Config),
		Backlog:         info.Backlog,
		InFlight:        int32(info.InFlight),
		Waiting:         int32(info.Waiting),
		Delayed:         int32(info.Delayed),
		NextDue:         apiconv.TimeOrNil(info.NextDue),
		Held:            int32(info.Held),
		Parked:          int32(info.Parked),
		Redeliveries:    info.Redeliveries,
		OldestUnsettled: apiconv.TimeOrNil(info.OldestUnsettled),
		Generation:      info.Generation,
		DeadLettered:    info.DeadLettered,
	}
	for _, m := range info.Members {
		gm := &sluicev1.GroupMember{Name: m.Name, LastSeen: apiconv.TimeOrNil(m.LastSeen)}
		for _, p := range m.Partitions {
			gm.Partitions = append(gm.Partitions, int32(p))
		}
		out.Members = append(out.Members, gm)
	}
	for _, p := range info.Partitions {
		out.Partitions = append(out.Partitions, &sluicev1.SubscriptionPartition{
			Id: int32(p.ID), Floor: p.Floor, Next: p.Next, Backlog: p.Backlog,
		})
	}
	return out
}

func deadLetterQueryFrom(q *sluicev1.DeadLetterQuery) sluice.DeadLetterQuery {
	return sluice.DeadLetterQuery{From: q.GetFrom(), Limit: int(q.GetLimit()), Contains: q.GetContains(), IncludeRedriven: q.GetIncludeRedriven()}
}

func deadLetterTo(d sluice.DeadLetter) *sluicev1.DeadLetter {
	out := &sluicev1.DeadLetter{
		Offset:     d.Offset,
		Source:     positionTo(d.Source),
		Deliveries: int32(d.Deliveries),
		Reason:     d.Reason,
		Redriven:   d.Redriven,
		Message:    recordTo(d.Message),
	}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, &sluicev1.DeadLetterAttempt{At: apiconv.TimeOrNil(a.At), Consumer: a.Consumer, Error: a.Error})
	}
	return out
}

func (h subscriptionService) CreateSubscription(ctx context.Context, req *connect.Request[sluicev1.CreateSubscriptionRequest]) (*connect.Response[sluicev1.CreateSubscriptionResponse], error) {
	cfg, err := subscriptionConfigFrom(req.Msg.GetConfig(), "config")
	if err != nil {
		return nil, err
	}
	info, err := h.s.b.CreateSubscription(ctx, req.Msg.GetStream(), cfg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.CreateSubscriptionResponse{Subscription: subscriptionInfoTo(info)}), nil
}

func (h subscriptionService) DeleteSubscription(ctx context.Context, req *connect.Request[sluicev1.DeleteSubscriptionRequest]) (*connect.Response[sluicev1.DeleteSubscriptionResponse], error) {
	if err := h.s.b.DeleteSubscription(ctx, req.Msg.GetStream(), req.Msg.GetName()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.DeleteSubscriptionResponse{}), nil
}

func (h subscriptionService) ListSubscriptions(ctx context.Context, req *connect.Request[sluicev1.ListSubscriptionsRequest]) (*connect.Response[sluicev1.ListSubscriptionsResponse], error) {
	infos, err := h.s.b.ListSubscriptions(ctx, req.Msg.GetStream())
	if err != nil {
		return nil, err
	}
	out := &sluicev1.ListSubscriptionsResponse{Subscriptions: make([]*sluicev1.SubscriptionInfo, len(infos))}
	for i, info := range infos {
		out.Subscriptions[i] = subscriptionInfoTo(info)
	}
	return connect.NewResponse(out), nil
}

func (h subscriptionService) GetSubscription(ctx context.Context, req *connect.Request[sluicev1.GetSubscriptionRequest]) (*connect.Response[sluicev1.GetSubscriptionResponse], error) {
	info, err := h.s.b.Subscription(ctx, req.Msg.GetStream(), req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.GetSubscriptionResponse{Subscription: subscriptionInfoTo(info)}), nil
}

func (h subscriptionService) SeekSubscription(ctx context.Context, req *connect.Request[sluicev1.SeekSubscriptionRequest]) (*connect.Response[sluicev1.SeekSubscriptionResponse], error) {
	if req.Msg.GetTo() == nil {
		return nil, invalid("to", "required: earliest, latest, an offset or a time")
	}
	to, err := startFrom(req.Msg.GetTo(), sluice.Earliest(), "to")
	if err != nil {
		return nil, err
	}
	if err := h.s.b.SeekSubscription(ctx, req.Msg.GetStream(), req.Msg.GetName(), to); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.SeekSubscriptionResponse{}), nil
}

func (h subscriptionService) ListParkedKeys(ctx context.Context, req *connect.Request[sluicev1.ListParkedKeysRequest]) (*connect.Response[sluicev1.ListParkedKeysResponse], error) {
	keys, err := h.s.b.ParkedKeys(ctx, req.Msg.GetStream(), req.Msg.GetSubscription(), int(req.Msg.GetLimit()))
	if err != nil {
		return nil, err
	}
	out := &sluicev1.ListParkedKeysResponse{Keys: make([]*sluicev1.ParkedKey, len(keys))}
	for i, k := range keys {
		pk := &sluicev1.ParkedKey{Partition: int32(k.Partition), Key: k.Key, Offset: k.Offset,
			Deliveries: int32(k.Deliveries), Held: int32(k.Held), LastError: k.LastError}
		if k.NotBefore != 0 {
			pk.NotBefore = timestamppb.New(time.UnixMilli(k.NotBefore))
		}
		out.Keys[i] = pk
	}
	return connect.NewResponse(out), nil
}

func (h subscriptionService) ListDeadLetters(ctx context.Context, req *connect.Request[sluicev1.ListDeadLettersRequest]) (*connect.Response[sluicev1.ListDeadLettersResponse], error) {
	dls, next, err := h.s.b.DeadLetters(ctx, req.Msg.GetStream(), req.Msg.GetSubscription(), deadLetterQueryFrom(req.Msg.GetQuery()))
	if err != nil {
		return nil, err
	}
	out := &sluicev1.ListDeadLettersResponse{DeadLetters: make([]*sluicev1.DeadLetter, len(dls)), Next: next}
	for i, d := range dls {
		out.DeadLetters[i] = deadLetterTo(d)
	}
	return connect.NewResponse(out), nil
}

func (h subscriptionService) GetDeadLetter(ctx context.Context, req *connect.Request[sluicev1.GetDeadLetterRequest]) (*connect.Response[sluicev1.GetDeadLetterResponse], error) {
	d, err := h.s.b.DeadLetter(ctx, req.Msg.GetStream(), req.Msg.GetSubscription(), req.Msg.GetOffset())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.GetDeadLetterResponse{DeadLetter: deadLetterTo(d)}), nil
}

func (h subscriptionService) RedriveDeadLetters(ctx context.Context, req *connect.Request[sluicev1.RedriveDeadLettersRequest]) (*connect.Response[sluicev1.RedriveDeadLettersResponse], error) {
	n, next, err := h.s.b.RedriveDeadLetters(ctx, req.Msg.GetStream(), req.Msg.GetSubscription(), sluice.RedriveOptions{
		Query: deadLetterQueryFrom(req.Msg.GetQuery()), PerSecond: req.Msg.GetPerSecond(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.RedriveDeadLettersResponse{Redriven: int32(n), Next: next}), nil
}

func (h subscriptionService) PurgeDeadLetters(ctx context.Context, req *connect.Request[sluicev1.PurgeDeadLettersRequest]) (*connect.Response[sluicev1.PurgeDeadLettersResponse], error) {
	start, err := h.s.b.PurgeDeadLetters(ctx, req.Msg.GetStream(), req.Msg.GetSubscription())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.PurgeDeadLettersResponse{Start: start}), nil
}
