package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/kafka"
)

// The Kafka-protocol peers: the same kgo client against sluice served by
// kafka.Server (stream sync `always`: every produce batch is fsynced before
// its answer) and against kfake, franz-go's fake cluster, which keeps every
// record in memory. Both listen on 127.0.0.1 in the harness's process.
//
// Producing is kgo's asynchronous Produce on one client shared by the
// workload's producers: acks=all and the idempotent producer (kgo's
// defaults, which allow 5 produce requests in flight per broker), linger 0
// (kgo's default of 10 ms would make W1's closed loop of 256 publishes wait
// on the timer rather than on the broker) and no compression (the bodies are
// random bytes). The harness's window bounds the records in flight (W1: 4 ×
// 64); kgo's own bound, 10,000 buffered records, is not reached.
//
// Consuming is a direct consumer (no group): each consumer is a kgo client
// reading every partition from the start, with kgo's fetch defaults (50 MiB
// a fetch, 1 MiB a partition). Kafka consumers acknowledge nothing record by
// record, so Ack does nothing and a drain is the reading of a backlog from
// offset 0. The workloads that need several consumers sharing one
// subscription (W2 with 4 consumers, W5, W6) need Kafka's consumer or share
// groups, which these peers do not measure.

// kafkaFactories are the Kafka-protocol systems, in table order.
func kafkaFactories() []peerFactory {
	return []peerFactory{
		{
			Name:       "sluice-kafka",
			Durability: fsyncBeforeAck,
			Note: "sluice served by kafka.Server on 127.0.0.1 (in the harness's process), stream sync `always`; " + kgoNote +
				"; the drains read without a group and acknowledge nothing",
			Skip: kafkaSkip("the same broker as sluice: measured once, in its own process"),
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				if opts.Process {
					return nil, errors.New("the Kafka peers run in the harness's process only")
				}
				return openSluiceKafka(dir)
			},
		},
		{
			Name:       "kfake",
			Durability: noFsyncBeforeAck,
			Note: "kfake " + modVersion("github.com/twmb/franz-go/pkg/kfake") + " (franz-go's fake Kafka cluster), one broker on 127.0.0.1 in the harness's process; " +
				"it keeps every record in memory and writes nothing to disk; the same kgo client as sluice-kafka",
			Skip: kafkaSkip("kfake keeps every record in the harness's own heap: not measured"),
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				if opts.Process {
					return nil, errors.New("the Kafka peers run in the harness's process only")
				}
				return &kafkaPeer{}, nil
			},
		},
	}
}

// kgoNote describes the client of both Kafka peers, for the notes under the
// tables.
var kgoNote = "kgo " + modVersion("github.com/twmb/franz-go") + " over loopback: asynchronous Produce on one client, acks=all, idempotent, linger 0, no compression"

// kafkaSkip returns the Skip of a Kafka peer: the cells it does not run, and
// why; memory says why the memory workload is left out.
func kafkaSkip(memory string) func(cellID string) string {
	return func(cellID string) string {
		switch cellID {
		case "W2-c4":
			return "four consumers sharing one partition need a Kafka share group (a consumer group gives the partition to one member): not measured through the Kafka protocol"
		case "memory":
			return memory
		}
		return ""
	}
}

// modVersion returns the version of module path linked into this
// executable, or "(version unknown)".
func modVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "(version unknown)"
}

// kafkaPeer is one Kafka-protocol broker and the kgo clients opened on it.
type kafkaPeer struct {
	// b is the sluice broker behind srv; nil for kfake.
	b    *sluice.Broker
	addr string       // where the clients connect; kfake's is set by Setup
	stop func() error // stops the server (and closes b, or the cluster)

	mu         sync.Mutex
	partitions int
	producer   *kgo.Client   // shared by every producer, opened by Setup
	clients    []*kgo.Client // every client, closed by Close
}

// openSluiceKafka opens a broker in dir and serves it over the Kafka protocol
// on 127.0.0.1.
func openSluiceKafka(dir string) (*kafkaPeer, error) {
	logger := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(dir, &sluice.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	srv, err := kafka.New(b, &kafka.Options{Logger: logger})
	if err != nil {
		b.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-served; !errors.Is(serr, net.ErrClosed) {
			err = errors.Join(err, serr)
		}
		return errors.Join(err, b.Close())
	}
	return &kafkaPeer{b: b, addr: ln.Addr().String(), stop: stop}, nil
}

func (p *kafkaPeer) Unsupported(m mode) string {
	switch m {
	case modeKeyOrdered:
		return "Kafka orders by partition, not by key among consumers sharing one: its equivalent is a consumer group on keyed partitions (W6)"
	case modePartitioned:
		return "Kafka consumer groups are not measured through the Kafka protocol here"
	}
	return ""
}

// Setup creates the topic (sluice-kafka: a stream with sync `always`
// through the broker's API; kfake: a cluster seeded with the topic), then
// opens the producers' client and checks that it reaches the broker.
func (p *kafkaPeer) Setup(ctx context.Context, t topology) error {
	parts := max(t.Partitions, 1)
	if p.b != nil {
		cfg := sluice.StreamConfig{Name: benchStream, Partitions: parts, Sync: sluice.SyncAlways}
		if perPart := t.Messages/int64(parts) + 1; perPart > sluice.DefaultMaxMessages {
			cfg.MaxMessages = perPart
		}
		if _, err := p.b.CreateStream(ctx, cfg); err != nil {
			return err
		}
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(parts), benchStream))
		if err != nil {
			return fmt.Errorf("kfake: %w", err)
		}
		p.addr = c.ListenAddrs()[0]
		p.stop = func() error { c.Close(); return nil }
	}
	p.partitions = parts
	cl, err := p.client(
		kgo.DefaultProduceTopic(benchStream),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return err
	}
	p.producer = cl
	return cl.Ping(ctx)
}

// client opens a kgo client on the peer, closed by Close.
func (p *kafkaPeer) client(opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(p.addr)}, opts...)...)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.clients = append(p.clients, cl)
	p.mu.Unlock()
	return cl, nil
}

func (p *kafkaPeer) NewProducer(ctx context.Context) (producer, error) {
	if p.producer == nil {
		return nil, errors.New("kafka: NewProducer before Setup")
	}
	return kafkaProducer{p.producer}, nil
}

// NewConsumer opens a direct consumer of every partition from offset 0. It
// starts fetching at its first Fetch, so that nothing is read ahead before a
// drain's timed part; it connects now.
func (p *kafkaPeer) NewConsumer(ctx context.Context, sub string, member int) (consumer, error) {
	if member > 0 {
		return nil, fmt.Errorf("subscription %s: a second consumer needs a Kafka group, which these peers do not use", sub)
	}
	cl, err := p.client(kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	if err := cl.Ping(ctx); err != nil {
		return nil, err
	}
	offsets := map[int32]kgo.Offset{}
	for i := range p.partitions {
		offsets[int32(i)] = kgo.NewOffset().AtStart()
	}
	return &kafkaConsumer{cl: cl, partitions: map[string]map[int32]kgo.Offset{benchStream: offsets}}, nil
}

func (p *kafkaPeer) Close() error {
	p.mu.Lock()
	clients := p.clients
	p.clients = nil
	p.mu.Unlock()
	for _, cl := range clients {
		cl.Close()
	}
	if p.stop == nil {
		return nil
	}
	return p.stop()
}

// kafkaProducer produces through the peer's shared client.
type kafkaProducer struct{ cl *kgo.Client }

func (k kafkaProducer) Publish(ctx context.Context, m message, done func(error)) {
	k.cl.Produce(ctx, &kgo.Record{Key: m.Key, Value: m.Body}, func(_ *kgo.Record, err error) { done(err) })
}

// PublishBatch produces msgs and waits for every answer (the fill of a
// drain's backlog).
func (k kafkaProducer) PublishBatch(ctx context.Context, msgs []message) error {
	rs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		rs[i] = &kgo.Record{Key: m.Key, Value: m.Body}
	}
	return k.cl.ProduceSync(ctx, rs...).FirstErr()
}

// Close leaves the shared client to the peer: the harness closes a producer
// once every publish was answered.
func (k kafkaProducer) Close() error { return nil }

// kafkaConsumer reads its partitions with PollRecords.
type kafkaConsumer struct {
	cl         *kgo.Client
	start      sync.Once
	partitions map[string]map[int32]kgo.Offset
}

func (c *kafkaConsumer) Fetch(ctx context.Context, max int) ([]delivery, error) {
	c.start.Do(func() { c.cl.AddConsumePartitions(c.partitions) })
	for {
		fs := c.cl.PollRecords(ctx, max)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if errs := fs.Errors(); len(errs) > 0 {
			e := errs[0]
			return nil, fmt.Errorf("kafka fetch %s/%d: %w", e.Topic, e.Partition, e.Err)
		}
		var out []delivery
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, delivery{Key: r.Key, Body: r.Value})
		})
		if len(out) > 0 {
			return out, nil
		}
	}
}

// Ack does nothing: a Kafka consumer does not settle records one by one
// (a group commits offsets; a direct consumer, as here, nothing).
func (c *kafkaConsumer) Ack(ctx context.Context, d delivery) error { return nil }

func (c *kafkaConsumer) Close() error {
	c.cl.Close()
	return nil
}

// kafkaSummary prints, when both sluice-kafka and kfake ran, one table of
// the throughput cells through the Kafka protocol: each system's median
// rate in messages and in megabytes of bodies a second, the ratio of
// sluice-kafka to kfake, and of sluice-kafka to sluice over its own API.
func kafkaSummary(w io.Writer, r *report) {
	ran := map[string]bool{}
	for _, f := range r.systems {
		ran[f.Name] = true
	}
	if !ran["sluice-kafka"] || !ran["kfake"] {
		return
	}
	type row struct {
		c    cell
		outs map[string]*outcome
	}
	var rows []row
	for k, c := range r.cells {
		if c.workload == "W3" || c.workload == "memory" {
			continue
		}
		sk, kf := r.outcomes[k]["sluice-kafka"], r.outcomes[k]["kfake"]
		if sk == nil || kf == nil || len(sk.samples) == 0 || len(kf.samples) == 0 {
			continue
		}
		rows = append(rows, row{c, r.outcomes[k]})
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n#### Kafka protocol: sluice-kafka ÷ kfake\n\n")
	fmt.Fprintf(w, "The throughput cells above through the Kafka protocol, the same kgo client against both: `sluice-kafka` (%s) and `kfake` (%s, memory only). Medians; MB/s counts the bodies only (10⁶ bytes). The last column is what the Kafka layer costs: sluice-kafka over sluice's own network API in the same cell (whose drains also ack every message).\n\n", fsyncBeforeAck, noFsyncBeforeAck)
	fmt.Fprintln(w, "| cell | body | sluice-kafka msg/s (range) | MB/s | kfake msg/s (range) | MB/s | sluice-kafka ÷ kfake | sluice-kafka ÷ sluice |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, rw := range rows {
		sk, kf := rw.outs["sluice-kafka"].figures(), rw.outs["kfake"].figures()
		own := "–"
		if o := rw.outs["sluice"]; o != nil && len(o.samples) > 0 {
			own = times(sk.rate.Median / o.figures().rate.Median)
		}
		mb := func(rate float64) string { return fmt.Sprintf("%.1f", rate*float64(rw.c.size)/1e6) }
		fmt.Fprintf(w, "| %s | %s | %s (%s–%s) | %s | %s (%s–%s) | %s | %s | %s |\n", rw.c.id, size(rw.c.size),
			rate(sk.rate.Median), rate(sk.rate.Min), rate(sk.rate.Max), mb(sk.rate.Median),
			rate(kf.rate.Median), rate(kf.rate.Min), rate(kf.rate.Max), mb(kf.rate.Median),
			times(sk.rate.Median/kf.rate.Median), own)
	}
}
