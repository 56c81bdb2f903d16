package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS JetStream peers: nats-server started in the harness's process
// with file storage in the run's directory, reached by the nats.go client
// over loopback. One stream of one subject; each subscription is a durable
// pull consumer with explicit acks.

// natsVersion is the nats-server module the harness links, named in the
// notes (keep it in step with go.mod).
const natsVersion = "nats-server v" + server.VERSION

// natsConsumeBuffer is how many messages a NATS consumer keeps pulled ahead,
// and the room of the channel that hands them to Fetch.
const natsConsumeBuffer = 1000

func natsFactories() []peerFactory {
	return []peerFactory{
		{
			Name:       "nats",
			Durability: noFsyncBeforeAck,
			Note:       natsVersion + " in the harness's process, JetStream file storage, default sync (fsync every 2 minutes); nats.go jetstream client over loopback",
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				return openNATS(ctx, dir, false, opts.Process)
			},
		},
		{
			Name:       "nats-always",
			Durability: fsyncBeforeAck,
			Note:       "as nats, with `sync_interval: always` (server option SyncAlways: fsync after every write)",
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				return openNATS(ctx, dir, true, opts.Process)
			},
		},
	}
}

// serveNATS starts a JetStream server storing in dir, listening on a free
// port of 127.0.0.1; stop shuts it down.
func serveNATS(dir string, syncAlways bool) (url string, stop func() error, err error) {
	s, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: syncAlways,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return "", nil, fmt.Errorf("nats-server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return "", nil, errors.New("nats-server: not ready for connections within 10s")
	}
	return s.ClientURL(), func() error {
		s.Shutdown()
		s.WaitForShutdown()
		return nil
	}, nil
}

type natsPeer struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	stop func() error
	pid  int
}

func openNATS(ctx context.Context, dir string, syncAlways, process bool) (*natsPeer, error) {
	p := &natsPeer{}
	var url string
	if process {
		kind := childNATS
		if syncAlways {
			kind = childNATSAlways
		}
		ch, err := startChild(ctx, dir, kind)
		if err != nil {
			return nil, err
		}
		url, p.stop, p.pid = ch.addr, ch.stop, ch.pid
	} else {
		var err error
		if url, p.stop, err = serveNATS(dir, syncAlways); err != nil {
			return nil, err
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	p.nc = nc
	if p.js, err = jetstream.New(nc); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *natsPeer) Unsupported(m mode) string {
	switch m {
	case modeKeyOrdered:
		return "JetStream has no per-key ordering within a consumer shared by several clients"
	case modePartitioned:
		return "JetStream has no consumer groups: partitions can be subjects, but assigning them to members is left to the application"
	}
	return ""
}

func (p *natsPeer) Setup(ctx context.Context, t topology) error {
	if _, err := p.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     benchStream,
		Subjects: []string{benchStream},
		Storage:  jetstream.FileStorage,
		Replicas: 1,
	}); err != nil {
		return fmt.Errorf("nats create stream: %w", err)
	}
	for _, name := range t.Subscriptions {
		if _, err := p.js.CreateOrUpdateConsumer(ctx, benchStream, jetstream.ConsumerConfig{
			Durable:   name,
			AckPolicy: jetstream.AckExplicitPolicy,
		}); err != nil {
			return fmt.Errorf("nats create consumer %s: %w", name, err)
		}
	}
	return nil
}

func (p *natsPeer) NewProducer(ctx context.Context) (producer, error) {
	// The harness bounds the publishes in flight itself (W3 keeps up to
	// w3Window); the client's own bound, 4,000 by default, would fail a
	// publish that waits for room longer than 200 ms.
	js, err := jetstream.New(p.nc, jetstream.WithPublishAsyncMaxPending(2*w3Window))
	if err != nil {
		return nil, err
	}
	pr := &natsProducer{js: js, pending: make(chan natsPending, 4096)}
	pr.wg.Go(pr.complete)
	return pr, nil
}

func (p *natsPeer) NewConsumer(ctx context.Context, sub string, member int) (consumer, error) {
	cons, err := p.js.Consumer(ctx, benchStream, sub)
	if err != nil {
		return nil, err
	}
	c := &natsConsumer{cons: cons, msgs: make(chan jetstream.Msg, natsConsumeBuffer), stopped: make(chan struct{})}
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		select {
		case c.msgs <- m:
		case <-c.stopped: // left unacked: the server redelivers it after AckWait
		}
	}, jetstream.PullMaxMessages(natsConsumeBuffer))
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (p *natsPeer) BrokerRSS(ctx context.Context) (int64, error) {
	if p.pid == 0 {
		return 0, errors.New("the broker runs in the harness's process")
	}
	return procRSS(p.pid)
}

func (p *natsPeer) Close() error {
	if p.nc != nil {
		p.nc.Close()
	}
	return p.stop()
}

// natsProducer publishes with PublishAsync; one goroutine waits for the
// acknowledgements in publish order (one stream acknowledges in order) and
// calls each done.
type natsProducer struct {
	js      jetstream.JetStream
	pending chan natsPending
	wg      sync.WaitGroup
}

type natsPending struct {
	f    jetstream.PubAckFuture
	done func(error)
}

func (p *natsProducer) Publish(ctx context.Context, m message, done func(error)) {
	f, err := p.js.PublishAsync(benchStream, m.Body)
	if err != nil {
		done(err)
		return
	}
	p.pending <- natsPending{f, done}
}

func (p *natsProducer) complete() {
	for pp := range p.pending {
		select {
		case <-pp.f.Ok():
			pp.done(nil)
		case err := <-pp.f.Err():
			pp.done(err)
		}
	}
}

func (p *natsProducer) PublishBatch(ctx context.Context, msgs []message) error {
	return publishEach(ctx, p.Publish, msgs)
}

func (p *natsProducer) Close() error {
	close(p.pending)
	p.wg.Wait()
	return nil
}

// natsConsumer takes the messages a Consume keeps pulling ahead, and acks
// each with Ack (which does not wait for the server's answer, as a NATS user
// would); WaitAcked then waits until the server has applied every ack.
type natsConsumer struct {
	cons jetstream.Consumer
	cc   jetstream.ConsumeContext
	msgs chan jetstream.Msg
	// stopped is closed by Close, so that a handler waiting for room in msgs
	// returns.
	stopped chan struct{}
}

func (c *natsConsumer) Fetch(ctx context.Context, max int) ([]delivery, error) {
	var out []delivery
	select {
	case m := <-c.msgs:
		out = append(out, delivery{Body: m.Data(), Handle: m})
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < max {
		select {
		case m := <-c.msgs:
			out = append(out, delivery{Body: m.Data(), Handle: m})
		default:
			return out, nil
		}
	}
	return out, nil
}

func (c *natsConsumer) Ack(ctx context.Context, d delivery) error {
	return d.Handle.(jetstream.Msg).Ack()
}

func (c *natsConsumer) WaitAcked(ctx context.Context) error {
	for {
		info, err := c.cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending == 0 {
			return nil
		}
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *natsConsumer) Close() error {
	close(c.stopped)
	c.cc.Stop()
	return nil
}
