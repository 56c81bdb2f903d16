package kafka

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

// requestFrame encodes req as a request frame body (header and body, no size).
func requestFrame(req kmsg.Request, version int16) []byte {
	req.SetVersion(version)
	b := make([]byte, 8, 64)
	binary.BigEndian.PutUint16(b[0:], uint16(req.Key()))
	binary.BigEndian.PutUint16(b[2:], uint16(version))
	binary.BigEndian.PutUint32(b[4:], 7)
	b = append(b, 0, 4, 'f', 'u', 'z', 'z')
	if req.IsFlexible() {
		b = append(b, 0)
	}
	return req.AppendTo(b)
}

// FuzzRequest feeds any request frame to the server: it must answer or
// refuse it (closing the connection), never panic, and keep serving.
func FuzzRequest(f *testing.F) {
	produce := kmsg.NewPtrProduceRequest()
	produce.Acks = -1
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = encodeBatch(-1, -1, -1, "hello", "world")
	rt.Partitions = append(rt.Partitions, rp)
	produce.Topics = append(produce.Topics, rt)
	fetch := kmsg.NewPtrFetchRequest()
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	md := kmsg.NewPtrMetadataRequest()
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "t"
	lt.Partitions = append(lt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
	lo.Topics = append(lo.Topics, lt)
	for _, seed := range []struct {
		req kmsg.Request
		v   int16
	}{{kmsg.NewPtrApiVersionsRequest(), 3}, {kmsg.NewPtrApiVersionsRequest(), 9}, {md, 12}, {md, 1}, {produce, 9}, {produce, 3},
		{fetch, 12}, {fetch, 4}, {lo, 7}, {kmsg.NewPtrInitProducerIDRequest(), 4}, {kmsg.NewPtrFindCoordinatorRequest(), 4}} {
		f.Add(requestFrame(seed.req, seed.v))
	}
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(f.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	if _, err := b.CreateStream(context.Background(), sluice.StreamConfig{Name: "t", MaxMessages: 1000}); err != nil {
		f.Fatal(err)
	}
	s, err := New(b, &Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Shutdown(context.Background()) })
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) >= 2 && (frame[1] == 19 || frame[1] == 20) && frame[0] == 0 {
			return // CreateTopics and DeleteTopics: valid ones would fill the disk with streams
		}
		// Short: a fetch long-polls until its context ends, and a fuzzing
		// worker that takes seconds over its corpus is taken for hung.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		c := &conn{s: s}
		out, err := c.handle(ctx, frame)
		if err == nil && out != nil && len(out) < 8 {
			t.Fatalf("answer of %d bytes", len(out))
		}
	})
}

// FuzzDecodeBatches feeds any bytes as a produce's record batches.
func FuzzDecodeBatches(f *testing.F) {
	f.Add(encodeBatch(-1, -1, -1, "a", "b"))
	f.Add(encodeBatch(5, 0, 3, "x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := decodeBatches(data, 0, time.Now())
		if err != nil {
			return
		}
		for _, b := range bs {
			for _, m := range b.msgs {
				if m.Partition == nil || *m.Partition != 0 {
					t.Fatalf("message without its partition")
				}
			}
		}
	})
}
