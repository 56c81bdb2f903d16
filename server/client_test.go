package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// Tests through the generated Go clients, over each protocol.

func createStream(t *testing.T, c clients, cfg *sluicev1.StreamConfig) *sluicev1.StreamInfo {
	t.Helper()
	res, err := c.streams.CreateStream(ctx(t), connect.NewRequest(&sluicev1.CreateStreamRequest{Config: cfg}))
	if err != nil {
		t.Fatalf("create stream %s: %v", cfg.GetName(), err)
	}
	return res.Msg.GetStream()
}

func publish(t *testing.T, c clients, stream string, m *sluicev1.Message) *sluicev1.Position {
	t.Helper()
	res, err := c.publish.Publish(ctx(t), connect.NewRequest(&sluicev1.PublishRequest{Stream: stream, Message: m}))
	if err != nil {
		t.Fatalf("publish to %s: %v", stream, err)
	}
	return res.Msg.GetPosition()
}

// stream is a server stream of record batches: a Read or a SubscribeLive.
type stream[T interface{ GetRecords() []*sluicev1.Record }] interface {
	Receive() bool
	Msg() T
	Err() error
}

// receive returns the next n records of s.
func receive[T interface{ GetRecords() []*sluicev1.Record }](t *testing.T, s stream[T], n int) []*sluicev1.Record {
	t.Helper()
	var out []*sluicev1.Record
	for len(out) < n {
		if !s.Receive() {
			t.Fatalf("stream ended after %d of %d records: %v", len(out), n, s.Err())
		}
		out = append(out, s.Msg().GetRecords()...)
	}
	if len(out) != n {
		t.Fatalf("got %d records, want %d", len(out), n)
	}
	return out
}

func TestStreamLifecycle(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			c := e.clients(p)
			info := createStream(t, c, &sluicev1.StreamConfig{
				Name:         "orders",
				Partitions:   2,
				Retention:    &sluicev1.Retention{MaxAge: durationpb.New(time.Hour)},
				Overflow:     sluicev1.OverflowPolicy_OVERFLOW_POLICY_BLOCK,
				BlockTimeout: durationpb.New(2 * time.Second),
				Sync:         sluicev1.SyncPolicy_SYNC_POLICY_NEVER,
			})
			cfg := info.GetConfig()
			switch {
			case cfg.GetName() != "orders" || cfg.GetPartitions() != 2 || len(info.GetPartitions()) != 2:
				t.Fatalf("created %v", info)
			case cfg.GetOverflow() != sluicev1.OverflowPolicy_OVERFLOW_POLICY_BLOCK || cfg.GetBlockTimeout().AsDuration() != 2*time.Second:
				t.Fatalf("overflow: %v", cfg)
			case cfg.GetRetention().GetPolicy() != sluicev1.RetentionPolicy_RETENTION_POLICY_LIMITS || cfg.GetRetention().GetMaxAge().AsDuration() != time.Hour:
				t.Fatalf("retention: %v", cfg.GetRetention())
			case cfg.GetSync() != sluicev1.SyncPolicy_SYNC_POLICY_NEVER:
				t.Fatalf("sync: %v", cfg.GetSync())
			// Defaults come back filled in.
			case cfg.GetMaxMessages() != sluice.DefaultMaxMessages || cfg.GetMaxMessageBytes() != sluice.DefaultMaxMessageBytes ||
				cfg.GetDedupeWindow().AsDuration() != sluice.DefaultDedupeWindow || cfg.GetSyncInterval().AsDuration() != sluice.DefaultSyncInterval:
				t.Fatalf("defaults: %v", cfg)
			}

			_, err := c.streams.CreateStream(ctx(t), connect.NewRequest(&sluicev1.CreateStreamRequest{Config: &sluicev1.StreamConfig{Name: "orders"}}))
			wantCode(t, err, connect.CodeAlreadyExists)
			createStream(t, c, &sluicev1.StreamConfig{Name: "audit"})

			list, err := c.streams.ListStreams(ctx(t), connect.NewRequest(&sluicev1.ListStreamsRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range list.Msg.GetStreams() {
				names = append(names, s.GetConfig().GetName())
			}
			if fmt.Sprint(names) != "[audit orders]" {
				t.Fatalf("list: %v", names)
			}

			up, err := c.streams.UpdateStream(ctx(t), connect.NewRequest(&sluicev1.UpdateStreamRequest{Config: &sluicev1.StreamConfig{
				Name: "orders", Partitions: 3, MaxMessages: 500,
			}}))
			if err != nil {
				t.Fatal(err)
			}
			if got := up.Msg.GetStream(); len(got.GetPartitions()) != 3 || got.GetConfig().GetMaxMessages() != 500 ||
				got.GetConfig().GetBlockTimeout().AsDuration() != 2*time.Second {
				t.Fatalf("updated: %v", got)
			}
			_, err = c.streams.UpdateStream(ctx(t), connect.NewRequest(&sluicev1.UpdateStreamRequest{Config: &sluicev1.StreamConfig{
				Name: "orders", Sync: sluicev1.SyncPolicy_SYNC_POLICY_ALWAYS,
			}}))
			ce := wantCode(t, err, connect.CodeInvalidArgument)
			if fv := fieldViolation(t, ce); fv.GetField() != "config.sync" || !strings.Contains(ce.Message(), "config.sync") {
				t.Fatalf("update of a fixed field: %v, detail %v", ce, fv)
			}
			_, err = c.streams.UpdateStream(ctx(t), connect.NewRequest(&sluicev1.UpdateStreamRequest{Config: &sluicev1.StreamConfig{
				Name: "orders", Partitions: 1,
			}}))
			wantCode(t, err, connect.CodeInvalidArgument)

			got, err := c.streams.GetStream(ctx(t), connect.NewRequest(&sluicev1.GetStreamRequest{Name: "orders"}))
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Msg.GetStream(); len(s.GetPartitions()) != 3 || s.GetConfig().GetSync() != sluicev1.SyncPolicy_SYNC_POLICY_NEVER {
				t.Fatalf("get: %v", s)
			}

			if _, err := c.streams.DeleteStream(ctx(t), connect.NewRequest(&sluicev1.DeleteStreamRequest{Name: "orders"})); err != nil {
				t.Fatal(err)
			}
			_, err = c.streams.GetStream(ctx(t), connect.NewRequest(&sluicev1.GetStreamRequest{Name: "orders"}))
			wantCode(t, err, connect.CodeNotFound)
			_, err = c.streams.DeleteStream(ctx(t), connect.NewRequest(&sluicev1.DeleteStreamRequest{Name: "orders"}))
			wantCode(t, err, connect.CodeNotFound)
		})
	}
}

func TestPublishAndReadBack(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			c := e.clients(p)
			createStream(t, c, &sluicev1.StreamConfig{Name: "events", Partitions: 2})
			at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			pos := publish(t, c, "events", &sluicev1.Message{
				Key:       []byte("user-42"),
				Headers:   []*sluicev1.Header{{Key: "trace", Value: []byte("abc")}},
				Body:      []byte("hello"),
				Time:      timestamppb.New(at),
				Partition: new(int32(1)),
			})
			if pos.GetPartition() != 1 || pos.GetOffset() != 0 || pos.GetDuplicate() {
				t.Fatalf("position %v", pos)
			}
			publish(t, c, "events", &sluicev1.Message{Body: []byte("world"), Partition: new(int32(1))})

			rctx, cancel := context.WithCancel(ctx(t))
			defer cancel()
			rs, err := c.read.Read(rctx, connect.NewRequest(&sluicev1.ReadRequest{
				Stream: "events", Partition: 1, Start: &sluicev1.StartAt{Position: &sluicev1.StartAt_Earliest{Earliest: true}},
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			recs := receive(t, rs, 2)
			r := recs[0]
			if r.GetStream() != "events" || r.GetPartition() != 1 || r.GetOffset() != 0 || string(r.GetKey()) != "user-42" ||
				string(r.GetBody()) != "hello" || !r.GetTime().AsTime().Equal(at) ||
				len(r.GetHeaders()) != 1 || r.GetHeaders()[0].GetKey() != "trace" || string(r.GetHeaders()[0].GetValue()) != "abc" {
				t.Fatalf("record %v", r)
			}
			if recs[1].GetOffset() != 1 || string(recs[1].GetBody()) != "world" {
				t.Fatalf("second record %v", recs[1])
			}

			// A read from an offset.
			rs2, err := c.read.Read(rctx, connect.NewRequest(&sluicev1.ReadRequest{
				Stream: "events", Partition: 1, Start: &sluicev1.StartAt{Position: &sluicev1.StartAt_Offset{Offset: 1}},
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer rs2.Close()
			if r := receive(t, rs2, 1)[0]; r.GetOffset() != 1 {
				t.Fatalf("read at offset 1: %v", r)
			}

			// A read of a partition the stream does not have.
			rs3, err := c.read.Read(rctx, connect.NewRequest(&sluicev1.ReadRequest{Stream: "events", Partition: 7}))
			if err == nil {
				defer rs3.Close()
				for rs3.Receive() {
				}
				err = rs3.Err()
			}
			if ce := wantCode(t, err, connect.CodeInvalidArgument); fieldViolation(t, ce).GetField() != "partition" {
				t.Fatalf("bad partition: %v", ce)
			}
		})
	}
}

func TestPublishIdempotencyKey(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			c := e.clients(p)
			createStream(t, c, &sluicev1.StreamConfig{Name: "payments", Partitions: 4})
			publish(t, c, "payments", &sluicev1.Message{Body: []byte("other")})
			first := publish(t, c, "payments", &sluicev1.Message{Body: []byte("charge"), IdempotencyKey: "order-7f3a"})
			again := publish(t, c, "payments", &sluicev1.Message{Body: []byte("charge"), IdempotencyKey: "order-7f3a"})
			if first.GetDuplicate() || !again.GetDuplicate() ||
				again.GetPartition() != first.GetPartition() || again.GetOffset() != first.GetOffset() {
				t.Fatalf("first %v, again %v", first, again)
			}
			info, err := c.streams.GetStream(ctx(t), connect.NewRequest(&sluicev1.GetStreamRequest{Name: "payments"}))
			if err != nil {
				t.Fatal(err)
			}
			if s := info.Msg.GetStream(); s.GetMessages() != 2 || s.GetCounters().GetDuplicates() != 1 {
				t.Fatalf("stored %d messages, %d duplicates; want 2 and 1", s.GetMessages(), s.GetCounters().GetDuplicates())
			}
		})
	}
}

func TestPublishBatch(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			c := e.clients(p)
			createStream(t, c, &sluicev1.StreamConfig{Name: "jobs", Partitions: 2})
			res, err := c.publish.PublishBatch(ctx(t), connect.NewRequest(&sluicev1.PublishBatchRequest{Stream: "jobs", Messages: []*sluicev1.Message{
				{Body: []byte("a"), Partition: new(int32(0))},
				{Body: []byte("b"), Partition: new(int32(1))},
				{Body: []byte("c"), Partition: new(int32(0))},
				{Body: []byte("d"), IdempotencyKey: "job-d", Partition: new(int32(1))},
				{Body: []byte("d"), IdempotencyKey: "job-d", Partition: new(int32(1))},
			}}))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, pos := range res.Msg.GetPositions() {
				got = append(got, fmt.Sprintf("%d/%d/%v", pos.GetPartition(), pos.GetOffset(), pos.GetDuplicate()))
			}
			if want := "[0/0/false 1/0/false 0/1/false 1/1/false 1/1/true]"; fmt.Sprint(got) != want {
				t.Fatalf("positions %v, want %v", got, want)
			}

			// The broker's batch limit, named in the error.
			big := make([]*sluicev1.Message, sluice.MaxBatchMessages+1)
			for i := range big {
				big[i] = &sluicev1.Message{}
			}
			_, err = c.publish.PublishBatch(ctx(t), connect.NewRequest(&sluicev1.PublishBatchRequest{Stream: "jobs", Messages: big}))
			ce := wantCode(t, err, connect.CodeInvalidArgument)
			if fieldViolation(t, ce).GetField() != "messages" || !strings.Contains(ce.Message(), "MaxBatchMessages=10000") {
				t.Fatalf("oversized batch: %v", ce)
			}
			// A bad message is named by its index.
			_, err = c.publish.PublishBatch(ctx(t), connect.NewRequest(&sluicev1.PublishBatchRequest{Stream: "jobs", Messages: []*sluicev1.Message{
				{Body: []byte("ok")},
				{Key: make([]byte, sluice.MaxKeyBytes+1)},
			}}))
			ce = wantCode(t, err, connect.CodeInvalidArgument)
			if fieldViolation(t, ce).GetField() != "messages[1].key" || !strings.Contains(ce.Message(), "MaxKeyBytes") {
				t.Fatalf("bad message: %v", ce)
			}
		})
	}
}

func TestPublishStream(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			c := e.clients(p)
			createStream(t, c, &sluicev1.StreamConfig{Name: "metrics"})
			bidi := c.publish.PublishStream(ctx(t))
			// Every batch is sent before any answer is read: the answers still come
			// one per batch, in order, with the batches stored in that order.
			for i := range 4 {
				req := &sluicev1.PublishStreamRequest{Stream: "metrics"}
				for j := range i + 1 {
					req.Messages = append(req.Messages, &sluicev1.Message{Body: fmt.Appendf(nil, "%d.%d", i, j)})
				}
				if err := bidi.Send(req); err != nil {
					t.Fatalf("send batch %d: %v", i, err)
				}
			}
			if err := bidi.CloseRequest(); err != nil {
				t.Fatal(err)
			}
			next := int64(0)
			for i := range 4 {
				res, err := bidi.Receive()
				if err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
				if len(res.GetPositions()) != i+1 {
					t.Fatalf("answer %d has %d positions", i, len(res.GetPositions()))
				}
				for _, pos := range res.GetPositions() {
					if pos.GetOffset() != next {
						t.Fatalf("answer %d: offset %d, want %d", i, pos.GetOffset(), next)
					}
					next++
				}
			}
			if _, err := bidi.Receive(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last answer: %v, want EOF", err)
			}
			bidi.CloseResponse()

			// The first batch that fails ends the call; the batches before it are
			// stored and answered, the one after it is not published.
			bidi = c.publish.PublishStream(ctx(t))
			for _, name := range []string{"metrics", "missing", "metrics"} {
				bidi.Send(&sluicev1.PublishStreamRequest{Stream: name, Messages: []*sluicev1.Message{{Body: []byte(name)}}})
			}
			bidi.CloseRequest()
			if res, err := bidi.Receive(); err != nil || res.GetPositions()[0].GetOffset() != next {
				t.Fatalf("first batch: %v %v", res, err)
			}
			_, err := bidi.Receive()
			wantCode(t, err, connect.CodeNotFound)
			bidi.CloseResponse()
			info, err := c.streams.GetStream(ctx(t), connect.NewRequest(&sluicev1.GetStreamRequest{Name: "metrics"}))
			if err != nil {
				t.Fatal(err)
			}
			if n := info.Msg.GetStream().GetMessages(); n != next+1 {
				t.Fatalf("%d messages stored, want %d", n, next+1)
			}
		})
	}
}

func TestReadFollowsTail(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			c := e.clients(p)
			createStream(t, c, &sluicev1.StreamConfig{Name: "ticks"})
			publish(t, c, "ticks", &sluicev1.Message{Body: []byte("0")})
			rctx, cancel := context.WithCancel(ctx(t))
			defer cancel()
			rs, err := c.read.Read(rctx, connect.NewRequest(&sluicev1.ReadRequest{Stream: "ticks"}))
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			// Once the stored record arrived, the read waits at the tail; what is
			// published now reaches it.
			receive(t, rs, 1)
			for i := 1; i <= 3; i++ {
				publish(t, c, "ticks", &sluicev1.Message{Body: fmt.Appendf(nil, "%d", i)})
				if r := receive(t, rs, 1)[0]; r.GetOffset() != int64(i) || string(r.GetBody()) != fmt.Sprint(i) {
					t.Fatalf("tail record %d: %v", i, r)
				}
			}
			// The caller ends the read by cancelling.
			cancel()
			if rs.Receive() {
				t.Fatal("a record after cancel")
			}
			if code := connect.CodeOf(rs.Err()); code != connect.CodeCanceled {
				t.Fatalf("after cancel: %v", rs.Err())
			}
		})
	}
}

func TestSubscribeLive(t *testing.T) {
	e := setup(t, nil)
	c := e.clients(protocols[1])
	createStream(t, c, &sluicev1.StreamConfig{Name: "prices", Partitions: 2})
	rctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	// Earliest, on an empty stream, so that the publishes below cannot come
	// before the subscription's start, whenever the server opens it.
	ls, err := c.read.SubscribeLive(rctx, connect.NewRequest(&sluicev1.SubscribeLiveRequest{
		Stream: "prices", Start: &sluicev1.StartAt{Position: &sluicev1.StartAt_Earliest{Earliest: true}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	publish(t, c, "prices", &sluicev1.Message{Body: []byte("p0"), Partition: new(int32(0))})
	publish(t, c, "prices", &sluicev1.Message{Body: []byte("p1"), Partition: new(int32(1))})
	got := map[string]bool{}
	for _, r := range receive(t, ls, 2) {
		got[fmt.Sprintf("%d:%s", r.GetPartition(), r.GetBody())] = true
	}
	if !got["0:p0"] || !got["1:p1"] {
		t.Fatalf("live records %v", got)
	}
}

// TestDrainEndsStreams: Drain ends a read in progress with unavailable, so that
// the HTTP server's shutdown does not wait for it.
func TestDrainEndsStreams(t *testing.T) {
	e := setup(t, nil)
	c := e.clients(protocols[1])
	createStream(t, c, &sluicev1.StreamConfig{Name: "logs"})
	publish(t, c, "logs", &sluicev1.Message{Body: []byte("x")})
	rs, err := c.read.Read(ctx(t), connect.NewRequest(&sluicev1.ReadRequest{Stream: "logs"}))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	receive(t, rs, 1)
	bidi := c.publish.PublishStream(ctx(t))
	defer bidi.CloseResponse()
	if err := bidi.Send(&sluicev1.PublishStreamRequest{Stream: "logs", Messages: []*sluicev1.Message{{Body: []byte("1")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Receive(); err != nil {
		t.Fatal(err)
	}
	receive(t, rs, 1)

	e.srv.Drain()
	if rs.Receive() {
		t.Fatal("a record after drain")
	}
	wantCode(t, rs.Err(), connect.CodeUnavailable)
	// The batch that arrives after the drain is refused, not published.
	bidi.Send(&sluicev1.PublishStreamRequest{Stream: "logs", Messages: []*sluicev1.Message{{Body: []byte("2")}}})
	_, err = bidi.Receive()
	wantCode(t, err, connect.CodeUnavailable)
	if info, err := e.b.Stream(ctx(t), "logs"); err != nil || info.Messages != 2 {
		t.Fatalf("stored %d messages (%v), want 2", info.Messages, err)
	}
}

func TestRequestLimitOverGRPC(t *testing.T) {
	e := setup(t, &Options{MaxRequestBytes: MinMaxRequestBytes})
	c := e.clients(protocols[1])
	createStream(t, c, &sluicev1.StreamConfig{Name: "blobs", MaxMessageBytes: 1 << 20})
	_, err := c.publish.Publish(ctx(t), connect.NewRequest(&sluicev1.PublishRequest{
		Stream: "blobs", Message: &sluicev1.Message{Body: make([]byte, MinMaxRequestBytes+1)},
	}))
	if ce := wantCode(t, err, connect.CodeResourceExhausted); !strings.Contains(ce.Message(), fmt.Sprint(MinMaxRequestBytes)) {
		t.Fatalf("oversized request: %v", ce)
	}
	publish(t, c, "blobs", &sluicev1.Message{Body: make([]byte, MinMaxRequestBytes/2)})
}

// fieldViolation returns the FieldViolation detail of ce.
func fieldViolation(t *testing.T, ce *connect.Error) *sluicev1.FieldViolation {
	t.Helper()
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatal(err)
		}
		if fv, ok := v.(*sluicev1.FieldViolation); ok {
			return fv
		}
	}
	t.Fatalf("%v has no FieldViolation detail", ce)
	return nil
}
