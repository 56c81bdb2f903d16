package server

import (
	"context"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// scheduleService serves sluice.v1.ScheduleService.
type scheduleService struct{ s *Server }

func scheduleConfigFrom(c *sluicev1.ScheduleConfig, field string) (sluice.ScheduleConfig, error) {
	if c == nil {
		return sluice.ScheduleConfig{}, invalid(field, "required")
	}
	out := sluice.ScheduleConfig{Name: c.GetName(), Stream: c.GetStream(), Cron: c.GetCron(), TimeZone: c.GetTimeZone(), Paused: c.GetPaused()}
	var err error
	if c.GetMessage() != nil {
		if out.Message, err = messageFrom(c.GetMessage(), field+".message"); err != nil {
			return out, err
		}
	}
	if out.Every, err = durationFrom(c.GetEvery(), field+".every"); err != nil {
		return out, err
	}
	if out.Missed, err = enumFrom(apiconv.MissedPolicies, c.GetMissed(), field+".missed"); err != nil {
		return out, err
	}
	return out, nil
}

func scheduleInfoTo(info sluice.ScheduleInfo) *sluicev1.ScheduleInfo {
	c := info.Config
	m := &sluicev1.Message{
		Key: c.Message.Key, Headers: apiconv.HeadersTo(c.Message.Headers), Body: c.Message.Body,
		Time: apiconv.TimeOrNil(c.Message.Time), DeliverAt: apiconv.TimeOrNil(c.Message.DeliverAt),
		IdempotencyKey: c.Message.IdempotencyKey,
	}
	if c.Message.Partition != nil {
		p := int32(*c.Message.Partition)
		m.Partition = &p
	}
	return &sluicev1.ScheduleInfo{
		Config: &sluicev1.ScheduleConfig{
			Name: c.Name, Stream: c.Stream, Message: m, Cron: c.Cron, Every: apiconv.DurationOrNil(c.Every),
			TimeZone: c.TimeZone, Missed: enumTo(apiconv.MissedPolicies, c.Missed), Paused: c.Paused,
		},
		NextFire: apiconv.TimeOrNil(info.NextFire),
		LastTick: apiconv.TimeOrNil(info.LastTick),
		Fired:    info.Fired,
	}
}

func (h scheduleService) CreateSchedule(ctx context.Context, req *connect.Request[sluicev1.CreateScheduleRequest]) (*connect.Response[sluicev1.CreateScheduleResponse], error) {
	cfg, err := scheduleConfigFrom(req.Msg.GetConfig(), "config")
	if err != nil {
		return nil, err
	}
	info, err := h.s.b.CreateSchedule(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.CreateScheduleResponse{Schedule: scheduleInfoTo(info)}), nil
}

func (h scheduleService) PauseSchedule(ctx context.Context, req *connect.Request[sluicev1.PauseScheduleRequest]) (*connect.Response[sluicev1.PauseScheduleResponse], error) {
	info, err := h.s.b.PauseSchedule(ctx, req.Msg.GetName(), req.Msg.GetPaused())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.PauseScheduleResponse{Schedule: scheduleInfoTo(info)}), nil
}

func (h scheduleService) DeleteSchedule(ctx context.Context, req *connect.Request[sluicev1.DeleteScheduleRequest]) (*connect.Response[sluicev1.DeleteScheduleResponse], error) {
	if err := h.s.b.DeleteSchedule(ctx, req.Msg.GetName()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sluicev1.DeleteScheduleResponse{}), nil
}

func (h scheduleService) ListSchedules(ctx context.Context, req *connect.Request[sluicev1.ListSchedulesRequest]) (*connect.Response[sluicev1.ListSchedulesResponse], error) {
	infos, err := h.s.b.ListSchedules(ctx)
	if err != nil {
		return nil, err
	}
	out := &sluicev1.ListSchedulesResponse{Schedules: make([]*sluicev1.ScheduleInfo, len(infos))}
	for i, info := range infos {
		out.Schedules[i] = scheduleInfoTo(info)
	}
	return connect.NewResponse(out), nil
}
