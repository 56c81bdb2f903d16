package client

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// Conversions between the broker's types and the API's messages, the mirror of
// server/convert.go. Responses come from a server that checked them, so values
// are taken as they are.

// enumTo is the API value of v. A value the API has no number for is refused
// here, naming field, rather than sent as unspecified (the default).
func enumTo[E ~int32, V comparable](m map[E]V, v V, field string) (E, error) {
	var zero V
	if v == zero {
		return 0, nil
	}
	for e, x := range m {
		if x == v && e != 0 {
			return e, nil
		}
	}
	return 0, &sluice.InvalidError{Field: field, Reason: fmt.Sprintf("%v is not a known value", v)}
}

// timeFrom is the zero time for an unset timestamp.
func timeFrom(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func streamConfigTo(c sluice.StreamConfig) (*sluicev1.StreamConfig, error) {
	out := &sluicev1.StreamConfig{
		Name:            c.Name,
		Partitions:      int32(c.Partitions),
		MaxMessages:     c.MaxMessages,
		MaxBytes:        c.MaxBytes,
		BlockTimeout:    apiconv.DurationOrNil(c.BlockTimeout),
		DedupeWindow:    apiconv.DurationOrNil(c.DedupeWindow),
		DedupeMaxKeys:   int32(c.DedupeMaxKeys),
		MaxMessageBytes: int32(c.MaxMessageBytes),
		SyncInterval:    apiconv.DurationOrNil(c.SyncInterval),
		SegmentBytes:    c.SegmentBytes,
		Retention:       &sluicev1.Retention{MaxAge: apiconv.DurationOrNil(c.Retention.MaxAge)},
	}
	var err error
	if out.Retention.Policy, err = enumTo(apiconv.RetentionPolicies, c.Retention.Policy, "StreamConfig.Retention.Policy"); err != nil {
		return nil, err
	}
	if out.Overflow, err = enumTo(apiconv.OverflowPolicies, c.Overflow, "StreamConfig.Overflow"); err != nil {
		return nil, err
	}
	if out.Sync, err = enumTo(apiconv.SyncPolicies, c.Sync, "StreamConfig.Sync"); err != nil {
		return nil, err
	}
	return out, nil
}

func streamConfigFrom(c *sluicev1.StreamConfig) sluice.StreamConfig {
	return sluice.StreamConfig{
		Name:            c.GetName(),
		Partitions:      int(c.GetPartitions()),
		MaxMessages:     c.GetMaxMessages(),
		MaxBytes:        c.GetMaxBytes(),
		Overflow:        apiconv.OverflowPolicies[c.GetOverflow()],
		BlockTimeout:    c.GetBlockTimeout().AsDuration(),
		DedupeWindow:    c.GetDedupeWindow().AsDuration(),
		DedupeMaxKeys:   int(c.GetDedupeMaxKeys()),
		MaxMessageBytes: int(c.GetMaxMessageBytes()),
		Sync:            apiconv.SyncPolicies[c.GetSync()],
		SyncInterval:    c.GetSyncInterval().AsDuration(),
		SegmentBytes:    c.GetSegmentBytes(),
		Retention: sluice.Retention{
			Policy: apiconv.RetentionPolicies[c.GetRetention().GetPolicy()],
			MaxAge: c.GetRetention().GetMaxAge().AsDuration(),
		},
	}
}

func streamInfoFrom(info *sluicev1.StreamInfo) sluice.StreamInfo {
	cs := info.GetCounters()
	out := sluice.StreamInfo{
		Config:     streamConfigFrom(info.GetConfig()),
		Partitions: make([]sluice.PartitionInfo, len(info.GetPartitions())),
		Messages:   info.GetMessages(),
		Bytes:      info.GetBytes(),
		Counters: sluice.StreamCounters{
			Rejected:       cs.GetRejected(),
			Blocked:        cs.GetBlocked(),
			BlockedTime:    cs.GetBlockedTime().AsDuration(),
			Dropped:        cs.GetDropped(),
			Duplicates:     cs.GetDuplicates(),
			DedupeKeys:     int(cs.GetDedupeKeys()),
			DedupeEvicted:  cs.GetDedupeEvicted(),
			Published:      cs.GetPublished(),
			PublishedBytes: cs.GetPublishedBytes(),
		},
	}
	for i, p := range info.GetPartitions() {
		out.Partitions[i] = sluice.PartitionInfo{
			ID:            int(p.GetId()),
			StartOffset:   p.GetStartOffset(),
			HighWatermark: p.GetHighWatermark(),
			Bytes:         p.GetBytes(),
			Segments:      int(p.GetSegments()),
		}
	}
	return out
}

func messageTo(m sluice.Message) *sluicev1.Message {
	out := &sluicev1.Message{
		Key:            m.Key,
		Headers:        apiconv.HeadersTo(m.Headers),
		Body:           m.Body,
		Time:           apiconv.TimeOrNil(m.Time),
		DeliverAt:      apiconv.TimeOrNil(m.DeliverAt),
		IdempotencyKey: m.IdempotencyKey,
	}
	if m.Partition != nil {
		p := int32(*m.Partition)
		out.Partition = &p
	}
	return out
}

func positionFrom(p *sluicev1.Position) sluice.Position {
	return sluice.Position{Partition: int(p.GetPartition()), Offset: p.GetOffset(), Duplicate: p.GetDuplicate()}
}

func recordFrom(r *sluicev1.Record) sluice.Record {
	return sluice.Record{
		Stream:    r.GetStream(),
		Partition: int(r.GetPartition()),
		Offset:    r.GetOffset(),
		Time:      timeFrom(r.GetTime()),
		Key:       r.GetKey(),
		Headers:   apiconv.HeadersFrom(r.GetHeaders()),
		Body:      r.GetBody(),
	}
}

// startTo converts a start position. sluice.StartAt keeps its fields to itself
// and shows them only through String, so that is what is read here; a form
// String does not produce is a bug.
func startTo(s sluice.StartAt) *sluicev1.StartAt {
	str := s.String()
	switch {
	case str == "earliest":
		return &sluicev1.StartAt{Position: &sluicev1.StartAt_Earliest{Earliest: true}}
	case str == "latest":
		return &sluicev1.StartAt{Position: &sluicev1.StartAt_Latest{Latest: true}}
	case strings.HasPrefix(str, "offset "):
		n, err := strconv.ParseInt(strings.TrimPrefix(str, "offset "), 10, 64)
		if err != nil {
			panic(fmt.Sprintf("client: StartAt %q: %v", str, err))
		}
		return &sluicev1.StartAt{Position: &sluicev1.StartAt_Offset{Offset: n}}
	case strings.HasPrefix(str, "time "):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(str, "time "))
		if err != nil {
			panic(fmt.Sprintf("client: StartAt %q: %v", str, err))
		}
		return &sluicev1.StartAt{Position: &sluicev1.StartAt_Time{Time: timestamppb.New(t)}}
	}
	panic(fmt.Sprintf("client: StartAt %q not handled", str))
}
