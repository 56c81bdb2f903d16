package client

import (
	"context"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// The subscription, dead-letter and schedule calls.

func subscriptionConfigTo(c sluice.SubscriptionConfig) (*sluicev1.SubscriptionConfig, error) {
	out := &sluicev1.SubscriptionConfig{
		Name:             c.Name,
		StartLatest:      c.StartLatest,
		Lease:            apiconv.DurationOrNil(c.Lease),
		MaxDeliveries:    int32(c.MaxDeliveries),
		BackoffInitial:   apiconv.DurationOrNil(c.BackoffInitial),
		BackoffMax:       apiconv.DurationOrNil(c.BackoffMax),
		Session:          apiconv.DurationOrNil(c.Session),
		DeadLetterStream: c.DeadLetterStream,
	}
	var err error
	if out.Mode, err = enumTo(apiconv.SubscriptionModes, c.Mode, "SubscriptionConfig.Mode"); err != nil {
		return nil, err
	}
	if out.Delivery, err = enumTo(apiconv.DeliveryGuarantees, c.Delivery, "SubscriptionConfig.Delivery"); err != nil {
		return nil, err
	}
	return out, nil
}

func subscriptionInfoFrom(s *sluicev1.SubscriptionInfo) sluice.SubscriptionInfo {
	c := s.GetConfig()
	out := sluice.SubscriptionInfo{
		Stream: s.GetStream(),
		Config: sluice.SubscriptionConfig{
			Name:             c.GetName(),
			Mode:             apiconv.SubscriptionModes[c.GetMode()],
			StartLatest:      c.GetStartLatest(),
			Lease:            c.GetLease().AsDuration(),
			MaxDeliveries:    int(c.GetMaxDeliveries()),
			BackoffInitial:   c.GetBackoffInitial().AsDuration(),
			BackoffMax:       c.GetBackoffMax().AsDuration(),
			Session:          c.GetSession().AsDuration(),
			Delivery:         apiconv.DeliveryGuarantees[c.GetDelivery()],
			DeadLetterStream: c.GetDeadLetterStream(),
		},
		Backlog:         s.GetBacklog(),
		InFlight:        int(s.GetInFlight()),
		Waiting:         int(s.GetWaiting()),
		Delayed:         int(s.GetDelayed()),
		NextDue:         timeFrom(s.GetNextDue()),
		Held:            int(s.GetHeld()),
		Parked:          int(s.GetParked()),
		Redeliveries:    s.GetRedeliveries(),
		OldestUnsettled: timeFrom(s.GetOldestUnsettled()),
		Generation:      s.GetGeneration(),
		DeadLettered:    s.GetDeadLettered(),
	}
	for _, m := range s.GetMembers() {
		gm := sluice.GroupMember{Name: m.GetName(), LastSeen: timeFrom(m.GetLastSeen())}
		for _, p := range m.GetPartitions() {
			gm.Partitions = append(gm.Partitions, int(p))
		}
		out.Members = append(out.Members, gm)
	}
	for _, p := range s.GetPartitions() {
		out.Partitions = append(out.Partitions, sluice.SubscriptionPartition{
			ID: int(p.GetId()), Floor: p.GetFloor(), Next: p.GetNext(), Backlog: p.GetBacklog(),
		})
	}
	return out
}

func deadLetterQueryTo(q sluice.DeadLetterQuery) *sluicev1.DeadLetterQuery {
	return &sluicev1.DeadLetterQuery{From: q.From, Limit: int32(q.Limit), Contains: q.Contains, IncludeRedriven: q.IncludeRedriven}
}

func deadLetterFrom(d *sluicev1.DeadLetter) sluice.DeadLetter {
	out := sluice.DeadLetter{
		Offset:     d.GetOffset(),
		Source:     positionFrom(d.GetSource()),
		Deliveries: int(d.GetDeliveries()),
		Reason:     d.GetReason(),
		Redriven:   d.GetRedriven(),
		Message:    recordFrom(d.GetMessage()),
	}
	for _, a := range d.GetAttempts() {
		out.Attempts = append(out.Attempts, sluice.DeadLetterAttempt{At: timeFrom(a.GetAt()), Consumer: a.GetConsumer(), Error: a.GetError()})
	}
	return out
}

func scheduleConfigTo(c sluice.ScheduleConfig) (*sluicev1.ScheduleConfig, error) {
	out := &sluicev1.ScheduleConfig{
		Name: c.Name, Stream: c.Stream, Message: messageTo(c.Message), Cron: c.Cron,
		Every: apiconv.DurationOrNil(c.Every), TimeZone: c.TimeZone, Paused: c.Paused,
	}
	var err error
	if out.Missed, err = enumTo(apiconv.MissedPolicies, c.Missed, "ScheduleConfig.Missed"); err != nil {
		return nil, err
	}
	return out, nil
}

func scheduleInfoFrom(s *sluicev1.ScheduleInfo) sluice.ScheduleInfo {
	c := s.GetConfig()
	m := c.GetMessage()
	msg := sluice.Message{Key: m.GetKey(), Headers: apiconv.HeadersFrom(m.GetHeaders()), Body: m.GetBody(),
		Time: timeFrom(m.GetTime()), DeliverAt: timeFrom(m.GetDeliverAt()), IdempotencyKey: m.GetIdempotencyKey()}
	if m.Partition != nil {
		msg.Partition = sluice.ToPartition(int(m.GetPartition()))
	}
	return sluice.ScheduleInfo{
		Config: sluice.ScheduleConfig{
			Name: c.GetName(), Stream: c.GetStream(), Message: msg, Cron: c.GetCron(),
			Every: c.GetEvery().AsDuration(), TimeZone: c.GetTimeZone(),
			Missed: apiconv.MissedPolicies[c.GetMissed()], Paused: c.GetPaused(),
		},
		NextFire: timeFrom(s.GetNextFire()),
		LastTick: timeFrom(s.GetLastTick()),
		Fired:    s.GetFired(),
	}
}

// CreateSubscription creates a durable subscription on a stream.
func (c *Client) CreateSubscription(ctx context.Context, stream string, cfg sluice.SubscriptionConfig) (sluice.SubscriptionInfo, error) {
	if err := c.live("CreateSubscription"); err != nil {
		return sluice.SubscriptionInfo{}, err
	}
	pc, err := subscriptionConfigTo(cfg)
	if err != nil {
		return sluice.SubscriptionInfo{}, err
	}
	res, err := c.subs.CreateSubscription(ctx, connect.NewRequest(&sluicev1.CreateSubscriptionRequest{Stream: stream, Config: pc}))
	if err != nil {
		return sluice.SubscriptionInfo{}, mapError("CreateSubscription", err)
	}
	return subscriptionInfoFrom(res.Msg.GetSubscription()), nil
}

// DeleteSubscription deletes a subscription and its state.
func (c *Client) DeleteSubscription(ctx context.Context, stream, name string) error {
	if err := c.live("DeleteSubscription"); err != nil {
		return err
	}
	_, err := c.subs.DeleteSubscription(ctx, connect.NewRequest(&sluicev1.DeleteSubscriptionRequest{Stream: stream, Name: name}))
	return mapError("DeleteSubscription", err)
}

// ListSubscriptions lists a stream's subscriptions.
func (c *Client) ListSubscriptions(ctx context.Context, stream string) ([]sluice.SubscriptionInfo, error) {
	if err := c.live("ListSubscriptions"); err != nil {
		return nil, err
	}
	res, err := c.subs.ListSubscriptions(ctx, connect.NewRequest(&sluicev1.ListSubscriptionsRequest{Stream: stream}))
	if err != nil {
		return nil, mapError("ListSubscriptions", err)
	}
	out := make([]sluice.SubscriptionInfo, len(res.Msg.GetSubscriptions()))
	for i, s := range res.Msg.GetSubscriptions() {
		out[i] = subscriptionInfoFrom(s)
	}
	return out, nil
}

// Subscription describes one subscription and its progress.
func (c *Client) Subscription(ctx context.Context, stream, name string) (sluice.SubscriptionInfo, error) {
	if err := c.live("Subscription"); err != nil {
		return sluice.SubscriptionInfo{}, err
	}
	res, err := c.subs.GetSubscription(ctx, connect.NewRequest(&sluicev1.GetSubscriptionRequest{Stream: stream, Name: name}))
	if err != nil {
		return sluice.SubscriptionInfo{}, mapError("GetSubscription", err)
	}
	return subscriptionInfoFrom(res.Msg.GetSubscription()), nil
}

// SeekSubscription moves a subscription to a position in every partition.
func (c *Client) SeekSubscription(ctx context.Context, stream, name string, to sluice.StartAt) error {
	if err := c.live("SeekSubscription"); err != nil {
		return err
	}
	_, err := c.subs.SeekSubscription(ctx, connect.NewRequest(&sluicev1.SeekSubscriptionRequest{Stream: stream, Name: name, To: startTo(to)}))
	return mapError("SeekSubscription", err)
}

// ParkedKeys lists a key_ordered subscription's parked keys.
func (c *Client) ParkedKeys(ctx context.Context, stream, subscription string, limit int) ([]sluice.ParkedKey, error) {
	if err := c.live("ParkedKeys"); err != nil {
		return nil, err
	}
	res, err := c.subs.ListParkedKeys(ctx, connect.NewRequest(&sluicev1.ListParkedKeysRequest{Stream: stream, Subscription: subscription, Limit: int32(limit)}))
	if err != nil {
		return nil, mapError("ListParkedKeys", err)
	}
	out := make([]sluice.ParkedKey, len(res.Msg.GetKeys()))
	for i, k := range res.Msg.GetKeys() {
		out[i] = sluice.ParkedKey{Partition: int(k.GetPartition()), Key: k.GetKey(), Offset: k.GetOffset(),
			Deliveries: int(k.GetDeliveries()), NotBefore: k.GetNotBefore().AsTime().UnixMilli(), Held: int(k.GetHeld()), LastError: k.GetLastError()}
	}
	return out, nil
}

// DeadLetters lists a subscription's dead letters and the offset to list from next.
func (c *Client) DeadLetters(ctx context.Context, stream, subscription string, q sluice.DeadLetterQuery) ([]sluice.DeadLetter, int64, error) {
	if err := c.live("DeadLetters"); err != nil {
		return nil, 0, err
	}
	res, err := c.subs.ListDeadLetters(ctx, connect.NewRequest(&sluicev1.ListDeadLettersRequest{Stream: stream, Subscription: subscription, Query: deadLetterQueryTo(q)}))
	if err != nil {
		return nil, 0, mapError("ListDeadLetters", err)
	}
	out := make([]sluice.DeadLetter, len(res.Msg.GetDeadLetters()))
	for i, d := range res.Msg.GetDeadLetters() {
		out[i] = deadLetterFrom(d)
	}
	return out, res.Msg.GetNext(), nil
}

// DeadLetter shows one dead letter.
func (c *Client) DeadLetter(ctx context.Context, stream, subscription string, offset int64) (sluice.DeadLetter, error) {
	if err := c.live("DeadLetter"); err != nil {
		return sluice.DeadLetter{}, err
	}
	res, err := c.subs.GetDeadLetter(ctx, connect.NewRequest(&sluicev1.GetDeadLetterRequest{Stream: stream, Subscription: subscription, Offset: offset}))
	if err != nil {
		return sluice.DeadLetter{}, mapError("GetDeadLetter", err)
	}
	return deadLetterFrom(res.Msg.GetDeadLetter()), nil
}

// RedriveDeadLetters puts dead letters back into their subscription.
func (c *Client) RedriveDeadLetters(ctx context.Context, stream, subscription string, opts sluice.RedriveOptions) (int, int64, error) {
	if err := c.live("RedriveDeadLetters"); err != nil {
		return 0, 0, err
	}
	res, err := c.subs.RedriveDeadLetters(ctx, connect.NewRequest(&sluicev1.RedriveDeadLettersRequest{
		Stream: stream, Subscription: subscription, Query: deadLetterQueryTo(opts.Query), PerSecond: opts.PerSecond,
	}))
	if err != nil {
		return 0, 0, mapError("RedriveDeadLetters", err)
	}
	return int(res.Msg.GetRedriven()), res.Msg.GetNext(), nil
}

// PurgeDeadLetters discards a subscription's dead letters.
func (c *Client) PurgeDeadLetters(ctx context.Context, stream, subscription string) (int64, error) {
	if err := c.live("PurgeDeadLetters"); err != nil {
		return 0, err
	}
	res, err := c.subs.PurgeDeadLetters(ctx, connect.NewRequest(&sluicev1.PurgeDeadLettersRequest{Stream: stream, Subscription: subscription}))
	if err != nil {
		return 0, mapError("PurgeDeadLetters", err)
	}
	return res.Msg.GetStart(), nil
}

// CreateSchedule creates a schedule that publishes a message periodically.
func (c *Client) CreateSchedule(ctx context.Context, cfg sluice.ScheduleConfig) (sluice.ScheduleInfo, error) {
	if err := c.live("CreateSchedule"); err != nil {
		return sluice.ScheduleInfo{}, err
	}
	pc, err := scheduleConfigTo(cfg)
	if err != nil {
		return sluice.ScheduleInfo{}, err
	}
	res, err := c.sched.CreateSchedule(ctx, connect.NewRequest(&sluicev1.CreateScheduleRequest{Config: pc}))
	if err != nil {
		return sluice.ScheduleInfo{}, mapError("CreateSchedule", err)
	}
	return scheduleInfoFrom(res.Msg.GetSchedule()), nil
}

// PauseSchedule pauses or resumes a schedule.
func (c *Client) PauseSchedule(ctx context.Context, name string, paused bool) (sluice.ScheduleInfo, error) {
	if err := c.live("PauseSchedule"); err != nil {
		return sluice.ScheduleInfo{}, err
	}
	res, err := c.sched.PauseSchedule(ctx, connect.NewRequest(&sluicev1.PauseScheduleRequest{Name: name, Paused: paused}))
	if err != nil {
		return sluice.ScheduleInfo{}, mapError("PauseSchedule", err)
	}
	return scheduleInfoFrom(res.Msg.GetSchedule()), nil
}

// DeleteSchedule removes a schedule.
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	if err := c.live("DeleteSchedule"); err != nil {
		return err
	}
	_, err := c.sched.DeleteSchedule(ctx, connect.NewRequest(&sluicev1.DeleteScheduleRequest{Name: name}))
	return mapError("DeleteSchedule", err)
}

// ListSchedules lists every schedule with its next fire time.
func (c *Client) ListSchedules(ctx context.Context) ([]sluice.ScheduleInfo, error) {
	if err := c.live("ListSchedules"); err != nil {
		return nil, err
	}
	res, err := c.sched.ListSchedules(ctx, connect.NewRequest(&sluicev1.ListSchedulesRequest{}))
	if err != nil {
		return nil, mapError("ListSchedules", err)
	}
	out := make([]sluice.ScheduleInfo, len(res.Msg.GetSchedules()))
	for i, s := range res.Msg.GetSchedules() {
		out[i] = scheduleInfoFrom(s)
	}
	return out, nil
}
