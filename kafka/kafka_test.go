package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/batch"
)

func TestMain(m *testing.M) {
	// A request that kmsg takes seconds to decode is refused after
	// decodeTimeout while its decoding finishes in the background (see
	// decode); fuzzing can produce one.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/sluicemq/sluice/kafka.decode.func1"))
}

// env is a broker served over Kafka's protocol on a loopback port.
type env struct {
	b    *sluice.Broker
	s    *Server
	addr string
}

func setup(t *testing.T, opts *Options) *env {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if opts == nil {
		opts = &Options{}
	}
	opts.Logger = quiet
	s, err := New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		<-served
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return &env{b: b, s: s, addr: ln.Addr().String()}
}

func (e *env) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func (e *env) stream(t *testing.T, name string, partitions int) {
	t.Helper()
	if _, err := e.b.CreateStream(context.Background(), sluice.StreamConfig{Name: name, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
}

// consumeAll reads n records of the topics from the start, without a group.
func consumeAll(t *testing.T, cl *kgo.Client, n int) []*kgo.Record {
	t.Helper()
	c := ctx(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(c)
		if err := c.Err(); err != nil {
			t.Fatalf("after %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	return out
}

// TestProduceConsume: kgo's idempotent producer writes keyed records with
// headers to a 4-partition topic; a consumer reads every one back, in order
// within each partition, with key, headers, value and timestamp intact, at
// the offsets the producer was given.
func TestProduceConsume(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 4)
	p := e.client(t, kgo.DefaultProduceTopic("orders"))
	const n = 400
	at := time.UnixMilli(time.Now().UnixMilli())
	sent := map[string]*kgo.Record{}
	for i := range n {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("user-%d", i%13)), Value: []byte(fmt.Sprintf("order %d", i)), Timestamp: at,
			Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(fmt.Sprint(i))}}}
		res := p.ProduceSync(ctx(t), r)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		sent[string(r.Value)] = res[0].Record
	}
	c := e.client(t, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := consumeAll(t, c, n)
	if len(got) != n {
		t.Fatalf("%d records, want %d", len(got), n)
	}
	last := map[int32]int64{}
	for _, r := range got {
		s := sent[string(r.Value)]
		if s == nil {
			t.Fatalf("unexpected record %q", r.Value)
		}
		if r.Partition != s.Partition || r.Offset != s.Offset || string(r.Key) != string(s.Key) || !r.Timestamp.Equal(at) {
			t.Fatalf("record %q at %d/%d key %q time %v; produced at %d/%d key %q time %v", r.Value, r.Partition, r.Offset, r.Key, r.Timestamp, s.Partition, s.Offset, s.Key, at)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "n" {
			t.Fatalf("headers %v", r.Headers)
		}
		if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
			t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, prev)
		}
		last[r.Partition] = r.Offset
	}
	info, err := e.b.Stream(context.Background(), "orders")
	if err != nil || info.Messages != n {
		t.Fatalf("stream holds %d messages (%v), want %d", info.Messages, err, n)
	}
}

// TestCompression: every codec a producer may use is decoded.
func TestCompression(t *testing.T) {
	e := setup(t, nil)
	for _, codec := range []struct {
		name string
		c    kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()}, {"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}} {
		t.Run(codec.name, func(t *testing.T) {
			topic := "c-" + codec.name
			e.stream(t, topic, 1)
			p := e.client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec.c), kgo.ProducerLinger(20*time.Millisecond))
			const n = 200
			rs := make([]*kgo.Record, n)
			for i := range rs {
				rs[i] = &kgo.Record{Value: []byte(fmt.Sprintf("compressible %s record %04d %s", codec.name, i, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))}
			}
			if err := p.ProduceSync(ctx(t), rs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			c := e.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			got := consumeAll(t, c, n)
			for i, r := range got {
				if string(r.Value) != string(rs[i].Value) || r.Offset != int64(i) {
					t.Fatalf("record %d: %q at %d", i, r.Value, r.Offset)
				}
			}
		})
	}
}

// TestIdempotentRetry: the same batch sent twice by an idempotent producer
// (a retry after a lost answer) is stored once and answered with the same
// offset; a batch that skips sequence numbers is refused.
func TestIdempotentRetry(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "payments", 1)
	cl := e.client(t)
	ip := kmsg.NewPtrInitProducerIDRequest()
	ipr, err := ip.RequestWith(ctx(t), cl)
	if err != nil || ipr.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", ipr, err)
	}
	produce := func(seq int32, values ...string) *kmsg.ProduceResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "payments"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = encodeBatch(ipr.ProducerID, ipr.ProducerEpoch, seq, values...)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return &resp.Topics[0].Partitions[0]
	}
	first := produce(0, "a", "b", "c")
	again := produce(0, "a", "b", "c")
	if first.ErrorCode != 0 || again.ErrorCode != 0 || first.BaseOffset != 0 || again.BaseOffset != 0 {
		t.Fatalf("first %+v, retry %+v: want both at offset 0 without error", first, again)
	}
	next := produce(3, "d")
	if next.ErrorCode != 0 || next.BaseOffset != 3 {
		t.Fatalf("next batch %+v, want offset 3", next)
	}
	gap := produce(9, "z")
	if gap.ErrorCode != 45 { // OUT_OF_ORDER_SEQUENCE_NUMBER
		t.Fatalf("a batch past a gap: %+v, want OUT_OF_ORDER_SEQUENCE_NUMBER", gap)
	}
	info, _ := e.b.Stream(context.Background(), "payments")
	if info.Messages != 4 {
		t.Fatalf("stream holds %d messages, want 4", info.Messages)
	}
}

// TestListOffsets: earliest, latest and by time.
func TestListOffsets(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "ticks", 1)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 10 {
		if _, err := e.b.Publish(context.Background(), "ticks", sluice.Message{Body: []byte("x"), Time: base.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	cl := e.client(t)
	ask := func(ts int64) int64 {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "ticks"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("ListOffsets %d: %v %+v", ts, err, resp)
		}
		return resp.Topics[0].Partitions[0].Offset
	}
	for _, tc := range []struct {
		ts   int64
		want int64
	}{{-2, 0}, {-1, 10}, {base.Add(4 * time.Minute).UnixMilli(), 4}, {base.Add(4*time.Minute + time.Second).UnixMilli(), 5}, {time.Now().Add(time.Hour).UnixMilli(), -1}} {
		if got := ask(tc.ts); got != tc.want {
			t.Errorf("ListOffsets(%d) = %d, want %d", tc.ts, got, tc.want)
		}
	}
}

// TestTopicsAdmin: CreateTopics, Metadata, DescribeConfigs, DeleteTopics,
// and auto-creation only when switched on.
func TestTopicsAdmin(t *testing.T) {
	e := setup(t, nil)
	cl := e.client(t)
	create := kmsg.NewPtrCreateTopicsRequest()
	for _, tc := range []struct {
		name       string
		partitions int32
		rf         int16
	}{{"events", 3, 1}, {"bad name!", 1, 1}, {"replicated", 1, 3}, {"zero", 0, 1}} {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = tc.name, tc.partitions, tc.rf
		create.Topics = append(create.Topics, rt)
	}
	cr, err := create.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, rt := range cr.Topics {
		codes[rt.Topic] = rt.ErrorCode
	}
	if codes["events"] != 0 || codes["bad name!"] != 17 || codes["replicated"] != 38 || codes["zero"] != 37 {
		t.Fatalf("CreateTopics codes %v", codes)
	}
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("events")
	md.Topics = append(md.Topics, mt)
	missing := kmsg.NewMetadataRequestTopic()
	missing.Topic = kmsg.StringPtr("missing")
	md.Topics = append(md.Topics, missing)
	md.AllowAutoTopicCreation = true
	mr, err := md.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(mr.Topics) != 2 || len(mr.Topics[0].Partitions) != 3 || mr.Topics[1].ErrorCode != 3 {
		t.Fatalf("Metadata %+v", mr.Topics)
	}
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = 2, "events"
	dc.Resources = append(dc.Resources, dr)
	dcr, err := dc.RequestWith(ctx(t), cl)
	if err != nil || dcr.Resources[0].ErrorCode != 0 || len(dcr.Resources[0].Configs) == 0 {
		t.Fatalf("DescribeConfigs %v %+v", err, dcr)
	}
	del := kmsg.NewPtrDeleteTopicsRequest()
	for _, name := range []string{"events", "missing"} {
		dt := kmsg.NewDeleteTopicsRequestTopic()
		dt.Topic = kmsg.StringPtr(name)
		del.Topics = append(del.Topics, dt)
	}
	delr, err := del.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	var dcodes []int16
	for _, rt := range delr.Topics {
		dcodes = append(dcodes, rt.ErrorCode)
	}
	sort.Slice(dcodes, func(i, j int) bool { return dcodes[i] < dcodes[j] })
	if fmt.Sprint(dcodes) != "[0 3]" {
		t.Fatalf("DeleteTopics codes %v, want [0 3]", dcodes)
	}

	auto := setup(t, &Options{AutoCreateTopics: true})
	acl := auto.client(t, kgo.DefaultProduceTopic("created-on-demand"), kgo.AllowAutoTopicCreation())
	if err := acl.ProduceSync(ctx(t), &kgo.Record{Value: []byte("hi")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if info, err := auto.b.Stream(context.Background(), "created-on-demand"); err != nil || info.Messages != 1 {
		t.Fatalf("auto-created stream: %+v %v", info, err)
	}
}

// encodeBatch encodes values as one uncompressed RecordBatch v2 of an
// idempotent producer.
func encodeBatch(producerID int64, epoch int16, seq int32, values ...string) []byte {
	recs := make([]batch.Record, len(values))
	now := time.Now().UnixMilli()
	for i, v := range values {
		recs[i] = batch.Record{Timestamp: now, Value: []byte(v)}
	}
	b := batch.Append(nil, recs)
	binary.BigEndian.PutUint64(b[43:], uint64(producerID))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32c))
	return b
}

// TestFetchBudget: a fetch's byte budget spent on the first partition still
// answers the second with its bounds and no records (read next time), and
// the first gets a whole batch though it is larger than the budget.
func TestFetchBudget(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "wide", 2)
	for p := range 2 {
		part := p
		if _, err := e.b.Publish(context.Background(), "wide", sluice.Message{Partition: &part, Body: []byte("a body longer than the budget")}); err != nil {
			t.Fatal(err)
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes, req.MinBytes, req.MaxWaitMillis = 1, 1<<20, 200
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "wide"
	for p := range int32(2) {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes = p, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	ps := resp.Topics[0].Partitions
	if len(ps) != 2 || len(ps[0].RecordBatches) == 0 || len(ps[1].RecordBatches) != 0 || ps[1].RecordBatches == nil {
		t.Fatalf("partitions %+v: want a batch in the first, empty (not null) records in the second", ps)
	}
	for _, p := range ps {
		if p.ErrorCode != 0 || p.HighWatermark != 1 || p.LogStartOffset != 0 {
			t.Fatalf("partition %d: error %d, bounds [%d, %d); want 0 and [0, 1)", p.Partition, p.ErrorCode, p.LogStartOffset, p.HighWatermark)
		}
	}
}
