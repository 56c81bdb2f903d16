package server

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// Conversions between the API's messages and the broker's types. Requests are
// checked only where the conversion itself could lose or misread a value (an
// unknown enum number, a duration beyond time.Duration); the broker checks the
// rest and names the field.

// enumFrom looks an API enum up in m; an unknown number is refused.
func enumFrom[E ~int32, V any](m map[E]V, e E, field string) (V, error) {
	v, ok := m[e]
	if !ok {
		return v, invalid(field, "%d is not a known value", int32(e))
	}
	return v, nil
}

// enumTo is the API value of v, or the zero value (unspecified) when m has none.
func enumTo[E ~int32, V comparable](m map[E]V, v V) E {
	for e, x := range m {
		if x == v && e != 0 {
			return e
		}
	}
	return 0
}

// maxDurationSeconds is the largest whole second a time.Duration holds.
const maxDurationSeconds = math.MaxInt64 / int64(time.Second)

func durationFrom(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalid(field, "%v", err)
	}
	if s := d.GetSeconds(); s > maxDurationSeconds || s < -maxDurationSeconds {
		return 0, invalid(field, "%ds is beyond what a duration holds (about 292 years)", s)
	}
	return d.AsDuration(), nil
}

func timeFrom(t *timestamppb.Timestamp, field string) (time.Time, error) {
	if t == nil {
		return time.Time{}, nil
	}
	if err := t.CheckValid(); err != nil {
		return time.Time{}, invalid(field, "%v", err)
	}
	return t.AsTime(), nil
}

func streamConfigFrom(c *sluicev1.StreamConfig, field string) (sluice.StreamConfig, error) {
	out := sluice.StreamConfig{
		Name:            c.GetName(),
		Partitions:      int(c.GetPartitions()),
		MaxMessages:     c.GetMaxMessages(),
		MaxBytes:        c.GetMaxBytes(),
		DedupeMaxKeys:   int(c.GetDedupeMaxKeys()),
		MaxMessageBytes: int(c.GetMaxMessageBytes()),
		SegmentBytes:    c.GetSegmentBytes(),
	}
	var err error
	if out.Retention.Policy, err = enumFrom(apiconv.RetentionPolicies, c.GetRetention().GetPolicy(), field+".retention.policy"); err != nil {
		return out, err
	}
	if out.Retention.MaxAge, err = durationFrom(c.GetRetention().GetMaxAge(), field+".retention.max_age"); err != nil {
		return out, err
	}
	if out.Overflow, err = enumFrom(apiconv.OverflowPolicies, c.GetOverflow(), field+".overflow"); err != nil {
		return out, err
	}
	if out.BlockTimeout, err = durationFrom(c.GetBlockTimeout(), field+".block_timeout"); err != nil {
		return out, err
	}
	if out.DedupeWindow, err = durationFrom(c.GetDedupeWindow(), field+".dedupe_window"); err != nil {
		return out, err
	}
	if out.Sync, err = enumFrom(apiconv.SyncPolicies, c.GetSync(), field+".sync"); err != nil {
		return out, err
	}
	if out.SyncInterval, err = durationFrom(c.GetSyncInterval(), field+".sync_interval"); err != nil {
		return out, err
	}
	return out, nil
}

func streamConfigTo(c sluice.StreamConfig) *sluicev1.StreamConfig {
	out := &sluicev1.StreamConfig{
		Name:            c.Name,
		Partitions:      int32(c.Partitions),
		MaxMessages:     c.MaxMessages,
		MaxBytes:        c.MaxBytes,
		Overflow:        enumTo(apiconv.OverflowPolicies, c.Overflow),
		BlockTimeout:    apiconv.DurationOrNil(c.BlockTimeout),
		DedupeWindow:    apiconv.DurationOrNil(c.DedupeWindow),
		DedupeMaxKeys:   int32(c.DedupeMaxKeys),
		MaxMessageBytes: int32(c.MaxMessageBytes),
		Sync:            enumTo(apiconv.SyncPolicies, c.Sync),
		SyncInterval:    apiconv.DurationOrNil(c.SyncInterval),
		SegmentBytes:    c.SegmentBytes,
	}
	policy := c.Retention.Policy
	if policy == "" {
		policy = sluice.RetainLimits
	}
	out.Retention = &sluicev1.Retention{
		Policy: enumTo(apiconv.RetentionPolicies, policy),
		MaxAge: apiconv.DurationOrNil(c.Retention.MaxAge),
	}
	return out
}

func streamInfoTo(info sluice.StreamInfo) *sluicev1.StreamInfo {
	out := &sluicev1.StreamInfo{
		Config:     streamConfigTo(info.Config),
		Partitions: make([]*sluicev1.PartitionInfo, len(info.Partitions)),
		Messages:   info.Messages,
		Bytes:      info.Bytes,
		Counters: &sluicev1.StreamCounters{
			Rejected:       info.Counters.Rejected,
			Blocked:        info.Counters.Blocked,
			BlockedTime:    apiconv.DurationOrNil(info.Counters.BlockedTime),
			Dropped:        info.Counters.Dropped,
			Duplicates:     info.Counters.Duplicates,
			DedupeKeys:     int64(info.Counters.DedupeKeys),
			DedupeEvicted:  info.Counters.DedupeEvicted,
			Published:      info.Counters.Published,
			PublishedBytes: info.Counters.PublishedBytes,
		},
	}
	for i, p := range info.Partitions {
		out.Partitions[i] = &sluicev1.PartitionInfo{
			Id:            int32(p.ID),
			StartOffset:   p.StartOffset,
			HighWatermark: p.HighWatermark,
			Bytes:         p.Bytes,
			Segments:      int32(p.Segments),
		}
	}
	return out
}

// messageFrom converts a message; field is its path in the request.
func messageFrom(m *sluicev1.Message, field string) (sluice.Message, error) {
	if m == nil {
		return sluice.Message{}, invalid(field, "required")
	}
	out := sluice.Message{
		Key:            m.GetKey(),
		Headers:        apiconv.HeadersFrom(m.GetHeaders()),
		Body:           m.GetBody(),
		IdempotencyKey: m.GetIdempotencyKey(),
	}
	if m.Partition != nil {
		out.Partition = sluice.ToPartition(int(m.GetPartition()))
	}
	var err error
	if out.Time, err = timeFrom(m.GetTime(), field+".time"); err != nil {
		return out, err
	}
	if out.DeliverAt, err = timeFrom(m.GetDeliverAt(), field+".deliver_at"); err != nil {
		return out, err
	}
	return out, nil
}

// messagesFrom converts a batch. Its size is the broker's to check
// (sluice.MaxBatchMessages), after the request size bound kept it in reach.
func messagesFrom(ms []*sluicev1.Message) ([]sluice.Message, error) {
	out := make([]sluice.Message, len(ms))
	for i, m := range ms {
		var err error
		if out[i], err = messageFrom(m, fmt.Sprintf("messages[%d]", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func positionTo(p sluice.Position) *sluicev1.Position {
	return &sluicev1.Position{Partition: int32(p.Partition), Offset: p.Offset, Duplicate: p.Duplicate}
}

func positionsTo(ps []sluice.Position) []*sluicev1.Position {
	out := make([]*sluicev1.Position, len(ps))
	for i, p := range ps {
		out[i] = positionTo(p)
	}
	return out
}

// startFrom converts a start position; unset is def.
func startFrom(s *sluicev1.StartAt, def sluice.StartAt, field string) (sluice.StartAt, error) {
	switch p := s.GetPosition().(type) {
	case nil:
		return def, nil
	case *sluicev1.StartAt_Earliest:
		if !p.Earliest {
			return def, invalid(field+".earliest", "false: set it to true, or set another start")
		}
		return sluice.Earliest(), nil
	case *sluicev1.StartAt_Latest:
		if !p.Latest {
			return def, invalid(field+".latest", "false: set it to true, or set another start")
		}
		return sluice.Latest(), nil
	case *sluicev1.StartAt_Offset:
		return sluice.AtOffset(p.Offset), nil
	case *sluicev1.StartAt_Time:
		t, err := timeFrom(p.Time, field+".time")
		if err != nil {
			return def, err
		}
		return sluice.AtTime(t), nil
	default:
		panic(fmt.Sprintf("server: StartAt position %T not handled", p))
	}
}

// recordTo converts a record, sharing its byte slices rather than copying them:
// a reader never reuses its buffers.
func recordTo(r sluice.Record) *sluicev1.Record {
	return &sluicev1.Record{
		Stream:    r.Stream,
		Partition: int32(r.Partition),
		Offset:    r.Offset,
		Time:      timestamppb.New(r.Time),
		Key:       r.Key,
		Headers:   apiconv.HeadersTo(r.Headers),
		Body:      r.Body,
	}
}

// recordSize approximates a record's encoded size, to bound a response.
func recordSize(r sluice.Record) int {
	n := len(r.Stream) + len(r.Key) + len(r.Body) + 32
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 4
	}
	return n
}
