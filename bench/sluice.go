package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/server"
)

// The sluice peers: the broker embedded in the harness (the in-process
// ceiling), and the broker behind server.New on 127.0.0.1 spoken to through
// the Go client (the comparison that counts), with fsync before every
// acknowledgement (the default) and with the interval policy.

const (
	// benchStream is the stream (or queue, or subject) every peer publishes to.
	benchStream = "bench"
	// sluiceMaxInFlight is what each sluice consumer may hold unsettled: room
	// for several fetches of a batch.
	sluiceMaxInFlight = 1000
)

func sluiceFactories() []peerFactory {
	return []peerFactory{
		{
			Name:       "sluice-embedded",
			Durability: fsyncBeforeAck,
			Note:       "the broker in the harness's process, called directly (sluice.Open): the ceiling of the network rows",
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				return openSluice(ctx, dir, sluice.SyncAlways, false, opts.Process)
			},
		},
		{
			Name:       "sluice",
			Durability: fsyncBeforeAck,
			Note:       "server.New served on 127.0.0.1, the Go client (client.Dial) over loopback; stream sync `always`",
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				return openSluice(ctx, dir, sluice.SyncAlways, true, opts.Process)
			},
		},
		{
			Name:       "sluice-interval",
			Durability: noFsyncBeforeAck,
			Note:       "as sluice, with stream sync `interval` (fdatasync every 100 ms, acknowledged after the write)",
			Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
				return openSluice(ctx, dir, sluice.SyncInterval, true, opts.Process)
			},
		},
	}
}

// sluicePeer is a sluice broker, embedded or served, and the sluice.Client
// that reaches it.
type sluicePeer struct {
	c    sluice.Client
	sync sluice.SyncPolicy
	stop func() error // stops whatever serves c; nil when c is the broker
	pid  int          // the broker's process when it runs in a child
}

func openSluice(ctx context.Context, dir string, sync sluice.SyncPolicy, network, process bool) (*sluicePeer, error) {
	p := &sluicePeer{sync: sync}
	switch {
	case process:
		ch, err := startChild(ctx, dir, childSluice)
		if err != nil {
			return nil, err
		}
		p.pid, p.stop = ch.pid, ch.stop
		c, err := client.Dial(ch.addr)
		if err != nil {
			ch.stop()
			return nil, err
		}
		p.c = c
	case network:
		addr, stop, err := serveSluice(dir)
		if err != nil {
			return nil, err
		}
		p.stop = stop
		c, err := client.Dial(addr)
		if err != nil {
			stop()
			return nil, err
		}
		p.c = c
	default:
		b, err := sluice.Open(dir, &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, err
		}
		p.c = b
	}
	return p, nil
}

// serveSluice opens a broker in dir and serves it on 127.0.0.1; stop shuts
// the server down and closes the broker.
func serveSluice(dir string) (addr string, stop func() error, err error) {
	logger := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(dir, &sluice.Options{Logger: logger})
	if err != nil {
		return "", nil, err
	}
	srv, err := server.New(b, &server.Options{Logger: logger})
	if err != nil {
		b.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		return "", nil, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return errors.Join(err, b.Close())
	}
	return ln.Addr().String(), stop, nil
}

func (p *sluicePeer) Unsupported(mode) string { return "" }

func (p *sluicePeer) Setup(ctx context.Context, t topology) error {
	cfg := sluice.StreamConfig{Name: benchStream, Partitions: t.Partitions, Sync: p.sync}
	if perPart := t.Messages/int64(max(t.Partitions, 1)) + 1; perPart > sluice.DefaultMaxMessages {
		cfg.MaxMessages = perPart
	}
	if _, err := p.c.CreateStream(ctx, cfg); err != nil {
		return err
	}
	m := map[mode]sluice.SubscriptionMode{modeQueue: sluice.QueueMode, modeKeyOrdered: sluice.KeyOrderedMode, modePartitioned: sluice.PartitionedMode}[t.Mode]
	for _, name := range t.Subscriptions {
		if _, err := p.c.CreateSubscription(ctx, benchStream, sluice.SubscriptionConfig{Name: name, Mode: m}); err != nil {
			return err
		}
	}
	return nil
}

func (p *sluicePeer) NewProducer(ctx context.Context) (producer, error) {
	return sluiceProducer{p.c}, nil
}

func (p *sluicePeer) NewConsumer(ctx context.Context, sub string, member int) (consumer, error) {
	c, err := p.c.NewConsumer(ctx, benchStream, sub, sluice.ConsumerConfig{
		Name:        fmt.Sprintf("%s-member-%d", sub, member),
		MaxInFlight: sluiceMaxInFlight,
	})
	if err != nil {
		return nil, err
	}
	return sluiceConsumer{c}, nil
}

func (p *sluicePeer) BrokerRSS(ctx context.Context) (int64, error) {
	if p.pid == 0 {
		return 0, errors.New("the broker runs in the harness's process")
	}
	return procRSS(p.pid)
}

func (p *sluicePeer) Close() error {
	err := p.c.Close()
	if p.stop != nil {
		err = errors.Join(err, p.stop())
	}
	return err
}

// sluiceProducer publishes with concurrent Publish calls, one per message in
// the window, as a sluice user waiting for each acknowledgement would.
type sluiceProducer struct{ c sluice.Client }

func (s sluiceProducer) Publish(ctx context.Context, m message, done func(error)) {
	go func() {
		_, err := s.c.Publish(ctx, benchStream, sluice.Message{Key: m.Key, Body: m.Body})
		done(err)
	}()
}

func (s sluiceProducer) PublishBatch(ctx context.Context, msgs []message) error {
	batch := make([]sluice.Message, len(msgs))
	for i, m := range msgs {
		batch[i] = sluice.Message{Key: m.Key, Body: m.Body}
	}
	_, err := s.c.PublishBatch(ctx, benchStream, batch)
	return err
}

// Close has nothing to wait for: the harness waits for every done before it
// closes a producer.
func (s sluiceProducer) Close() error { return nil }

type sluiceConsumer struct{ c sluice.Consumer }

func (s sluiceConsumer) Fetch(ctx context.Context, max int) ([]delivery, error) {
	ds, err := s.c.Fetch(ctx, max)
	if err != nil {
		return nil, err
	}
	out := make([]delivery, len(ds))
	for i, d := range ds {
		out[i] = delivery{Key: d.Key, Body: d.Body, Handle: d}
	}
	return out, nil
}

func (s sluiceConsumer) Ack(ctx context.Context, d delivery) error {
	err := s.c.Ack(ctx, d.Handle.(sluice.Delivery))
	if errors.Is(err, sluice.ErrStaleLease) {
		// A partitioned subscription's rebalance fenced the delivery off.
		return fmt.Errorf("%w: %w", errNotHeld, err)
	}
	return err
}

// AckBatch settles a fetched batch with one AckMany: one request, one
// journal write.
func (s sluiceConsumer) AckBatch(ctx context.Context, ds []delivery) []error {
	batch := make([]sluice.Delivery, len(ds))
	for i, d := range ds {
		batch[i] = d.Handle.(sluice.Delivery)
	}
	errs := s.c.AckMany(ctx, batch)
	for i, err := range errs {
		if errors.Is(err, sluice.ErrStaleLease) {
			errs[i] = fmt.Errorf("%w: %w", errNotHeld, err)
		}
	}
	return errs
}

func (s sluiceConsumer) Close() error { return s.c.Close() }
