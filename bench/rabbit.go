package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The RabbitMQ peer: an external rabbitmq-server (bench/peers.sh starts one)
// reached with the official Go client, amqp091-go. Every queue is a quorum
// queue, whose publisher confirm comes once the message is in the Raft log
// and that log fsynced (on one node, its own fsync).
//
// How the workloads map:
//   - publish: a connection and a channel per producer, in confirm mode,
//     persistent messages, many in flight; the confirm is the acknowledgement.
//   - a subscription: a quorum queue bound to the run's fanout exchange, so
//     several subscriptions are a fan-out; a consumer is a connection and a
//     channel with a prefetch, settling with basic.ack one by one.
//   - with no subscription (W1), one queue keeps what is published: an
//     exchange that routes to no queue confirms at once and stores nothing.
//   - partitions: ignored (one queue per subscription) except under
//     modePartitioned and modeKeyOrdered, where a subscription is one quorum
//     queue per partition, bound to the run's direct exchange under the
//     partition's name; a keyed message goes to the partition of its key's
//     hash, and each member consumes its share of the queues (queue i goes to
//     member i mod members).
//   - key order: those partition queues with single-active-consumer, so that
//     a queue delivers to one consumer at a time, in order, and fails over to
//     another when it leaves. Order per key is order per partition: keys share
//     a partition's consumer, as they do in a consumer group.

const (
	// rabbitURLEnv names the server's AMQP URL; rabbitDefaultURL is the
	// server and user bench/peers.sh sets up.
	rabbitURLEnv     = "SLUICE_BENCH_RABBITMQ"
	rabbitDefaultURL = "amqp://sluice:sluice@127.0.0.1:5672/"
	// rabbitDialTimeout bounds the connection and its handshake, so that a
	// server that is not running is reported at once.
	rabbitDialTimeout = time.Second
	// rabbitPrefetch is the deliveries a consumer holds unacknowledged: two
	// of the harness's fetches.
	rabbitPrefetch = 2 * fetchBatch
	// rabbitMaxConfirms bounds the publishes a producer keeps waiting for
	// their confirms, above the harness's largest window (W3's).
	rabbitMaxConfirms = 2 * w3Window
	// rabbitKeyHeader carries a message's key.
	rabbitKeyHeader = "sluice-key"
)

func init() {
	u := os.Getenv(rabbitURLEnv)
	if u == "" {
		u = rabbitDefaultURL
	}
	register(peerFactory{
		Name:       "rabbitmq",
		Durability: fsyncBeforeAck,
		Note: "external rabbitmq-server at " + redactURL(u) + " ($" + rabbitURLEnv + "; bench/peers.sh starts one): quorum queues, " +
			"publisher confirms, manual acks with a prefetch of " + strconv.Itoa(rabbitPrefetch) + "; amqp091-go client",
		Probe: func(ctx context.Context) error {
			conn, err := dialRabbit(u)
			if err != nil {
				return err
			}
			return conn.Close()
		},
		Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
			return openRabbit(ctx, u)
		},
	})
}

// redactURL returns u without its password, for notes and errors.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(an AMQP URL that does not parse)"
	}
	return p.Redacted()
}

// dialRabbit connects to the server; a failure to reach it wraps
// errUnreachable.
func dialRabbit(u string) (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(rabbitDialTimeout)})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, amqp.ErrClosed) {
			return nil, fmt.Errorf("rabbitmq at %s: %w: %w", redactURL(u), errUnreachable, err)
		}
		return nil, fmt.Errorf("rabbitmq at %s: %w", redactURL(u), err)
	}
	return conn, nil
}

type rabbitPeer struct {
	url    string
	admin  *amqp.Connection
	ach    *amqp.Channel
	prefix string // the run's exchange and queues start with it

	mu       sync.Mutex
	topo     topology
	exchange string
	parts    int                 // partitions a message is routed among; 1: the fanout exchange
	queues   map[string][]string // subscription → its queues, by partition
	members  map[string]int      // consumers opened per subscription
	declared []string            // every queue, for Close
}

func openRabbit(ctx context.Context, u string) (*rabbitPeer, error) {
	admin, err := dialRabbit(u)
	if err != nil {
		return nil, err
	}
	ach, err := admin.Channel()
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("rabbitmq channel: %w", err)
	}
	run := make([]byte, 6)
	rand.Read(run)
	return &rabbitPeer{
		url: u, admin: admin, ach: ach,
		prefix:  "sluicebench." + hex.EncodeToString(run) + ".",
		parts:   1,
		queues:  map[string][]string{},
		members: map[string]int{},
	}, nil
}

func (p *rabbitPeer) Unsupported(m mode) string { return "" }

func (p *rabbitPeer) Setup(ctx context.Context, t topology) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topo = t
	p.exchange = p.prefix + "x"
	kind := amqp.ExchangeFanout
	partitioned := t.Mode == modePartitioned || t.Mode == modeKeyOrdered
	if partitioned {
		kind = amqp.ExchangeDirect
		p.parts = max(t.Partitions, 1)
	}
	if err := p.ach.ExchangeDeclare(p.exchange, kind, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq declare exchange: %w", err)
	}
	subs := t.Subscriptions
	if len(subs) == 0 {
		subs = []string{"published"}
	}
	for _, sub := range subs {
		for i := range p.parts {
			name, key, args := p.prefix+sub, "", amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
			if partitioned {
				key = "p" + strconv.Itoa(i)
				name += "." + key
				if t.Mode == modeKeyOrdered {
					args[amqp.SingleActiveConsumerArg] = true
				}
			}
			if _, err := p.ach.QueueDeclare(name, true, false, false, false, args); err != nil {
				return fmt.Errorf("rabbitmq declare queue %s: %w", name, err)
			}
			p.declared = append(p.declared, name)
			if err := p.ach.QueueBind(name, key, p.exchange, false, nil); err != nil {
				return fmt.Errorf("rabbitmq bind queue %s: %w", name, err)
			}
			p.queues[sub] = append(p.queues[sub], name)
		}
	}
	return nil
}

func (p *rabbitPeer) NewProducer(ctx context.Context) (producer, error) {
	conn, err := dialRabbit(p.url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq producer channel: %w", err)
	}
	p.mu.Lock()
	pr := &rabbitProducer{conn: conn, ch: ch, exchange: p.exchange, parts: p.parts, pending: make(chan rabbitPending, rabbitMaxConfirms)}
	p.mu.Unlock()
	pr.wg.Go(pr.complete)
	return pr, nil
}

func (p *rabbitPeer) NewConsumer(ctx context.Context, sub string, member int) (consumer, error) {
	p.mu.Lock()
	_, ok := p.queues[sub]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("rabbitmq: no subscription %q", sub)
	}
	conn, err := dialRabbit(p.url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(rabbitPrefetch, 0, false)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq consumer channel: %w", err)
	}
	p.mu.Lock()
	p.members[sub]++
	p.mu.Unlock()
	return &rabbitConsumer{p: p, conn: conn, ch: ch, sub: sub, member: member, stop: make(chan struct{})}, nil
}

// share returns the queues member consumes: the subscription's one queue,
// or its share of the partition queues among the members opened so far (the
// harness opens a subscription's members before any of them fetches).
func (p *rabbitPeer) share(sub string, member int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	qs := p.queues[sub]
	if len(qs) == 1 {
		return qs
	}
	n := max(p.members[sub], member+1)
	var out []string
	for i, q := range qs {
		if i%n == member {
			out = append(out, q)
		}
	}
	return out
}

// BrokerRSS finds the process listening on the server's port on this
// machine, and reads its resident set.
func (p *rabbitPeer) BrokerRSS(ctx context.Context) (int64, error) {
	u, err := url.Parse(p.url)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		port = 5672
	}
	pid, err := listenerPID(port)
	if err != nil {
		return 0, fmt.Errorf("rabbitmq rss: %w", err)
	}
	return procRSS(pid)
}

// Close deletes the run's queues and exchange.
func (p *rabbitPeer) Close() error {
	defer p.admin.Close()
	var first error
	for _, q := range p.declared {
		if _, err := p.ach.QueueDelete(q, false, false, false); err != nil && first == nil {
			first = fmt.Errorf("rabbitmq delete queue %s: %w", q, err)
		}
	}
	if p.exchange != "" {
		if err := p.ach.ExchangeDelete(p.exchange, false, false); err != nil && first == nil {
			first = fmt.Errorf("rabbitmq delete exchange: %w", err)
		}
	}
	return first
}

// rabbitProducer publishes on a channel in confirm mode; one goroutine waits
// for the confirms in publish order and calls each done.
type rabbitProducer struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	exchange string
	parts    int
	next     int // the partition of the next unkeyed message, round robin
	pending  chan rabbitPending
	wg       sync.WaitGroup
}

type rabbitPending struct {
	dc   *amqp.DeferredConfirmation
	done func(error)
}

func (pr *rabbitProducer) Publish(ctx context.Context, m message, done func(error)) {
	msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: m.Body}
	if m.Key != nil {
		msg.Headers = amqp.Table{rabbitKeyHeader: m.Key}
	}
	key := ""
	if pr.parts > 1 {
		i := pr.next
		if m.Key != nil {
			h := fnv.New32a()
			h.Write(m.Key)
			i = int(h.Sum32() % uint32(pr.parts))
		} else {
			pr.next = (pr.next + 1) % pr.parts
		}
		key = "p" + strconv.Itoa(i)
	}
	// The client has written the message to the connection when this
	// returns: the harness may reuse the body.
	dc, err := pr.ch.PublishWithDeferredConfirmWithContext(ctx, pr.exchange, key, false, false, msg)
	if err != nil {
		done(fmt.Errorf("rabbitmq publish: %w", err))
		return
	}
	pr.pending <- rabbitPending{dc, done}
}

func (pr *rabbitProducer) complete() {
	for p := range pr.pending {
		if p.dc.Wait() {
			p.done(nil)
		} else {
			p.done(errors.New("rabbitmq: publish not confirmed (nacked, or the channel closed)"))
		}
	}
}

// PublishBatch publishes the batch and waits for every confirm.
func (pr *rabbitProducer) PublishBatch(ctx context.Context, msgs []message) error {
	return publishEach(ctx, pr.Publish, msgs)
}

func (pr *rabbitProducer) Close() error {
	close(pr.pending)
	pr.wg.Wait()
	return pr.conn.Close()
}

// rabbitConsumer consumes its queues on one channel; the first Fetch starts
// the consumption, once the subscription's members are known.
type rabbitConsumer struct {
	p      *rabbitPeer
	conn   *amqp.Connection
	ch     *amqp.Channel
	sub    string
	member int
	msgs   <-chan amqp.Delivery // nil until the first Fetch
	wg     sync.WaitGroup       // the goroutines merging several queues into msgs
	stop   chan struct{}        // closed by Close: the merging goroutines return
}

func (c *rabbitConsumer) start() error {
	qs := c.p.share(c.sub, c.member)
	var ins []<-chan amqp.Delivery
	for i, q := range qs {
		tag := c.sub + "-" + strconv.Itoa(c.member) + "-" + strconv.Itoa(i)
		in, err := c.ch.Consume(q, tag, false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("rabbitmq consume %s: %w", q, err)
		}
		ins = append(ins, in)
	}
	switch len(ins) {
	case 0: // more members than partitions: this one idles
		c.msgs = make(chan amqp.Delivery)
	case 1:
		c.msgs = ins[0]
	default:
		out := make(chan amqp.Delivery, rabbitPrefetch)
		for _, in := range ins {
			c.wg.Go(func() {
				for d := range in {
					select {
					case out <- d:
					case <-c.stop:
						return
					}
				}
			})
		}
		go func() { c.wg.Wait(); close(out) }()
		c.msgs = out
	}
	return nil
}

func (c *rabbitConsumer) Fetch(ctx context.Context, max int) ([]delivery, error) {
	if c.msgs == nil {
		if err := c.start(); err != nil {
			return nil, err
		}
	}
	var out []delivery
	for len(out) < max {
		var (
			d  amqp.Delivery
			ok bool
		)
		if len(out) == 0 {
			select {
			case d, ok = <-c.msgs:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		} else {
			select {
			case d, ok = <-c.msgs:
			default:
				return out, nil
			}
		}
		if !ok {
			if len(out) > 0 {
				return out, nil
			}
			return nil, errors.New("rabbitmq: the consumer's channel closed")
		}
		var key []byte
		if k, isBytes := d.Headers[rabbitKeyHeader].([]byte); isBytes {
			key = k
		}
		out = append(out, delivery{Key: key, Body: d.Body, Handle: d.DeliveryTag})
	}
	return out, nil
}

func (c *rabbitConsumer) Ack(ctx context.Context, d delivery) error {
	tag, ok := d.Handle.(uint64)
	if !ok {
		return fmt.Errorf("rabbitmq: ack of a delivery of another peer (%T)", d.Handle)
	}
	if err := c.ch.Ack(tag, false); err != nil {
		return fmt.Errorf("rabbitmq ack: %w", err)
	}
	return nil
}

// WaitAcked waits until the channel has processed every ack sent on it:
// basic.ack has no reply, but a channel handles its methods in order, so the
// reply to a basic.qos sent after them says the acks went before it.
func (c *rabbitConsumer) WaitAcked(ctx context.Context) error {
	if err := c.ch.Qos(rabbitPrefetch, 0, false); err != nil {
		return fmt.Errorf("rabbitmq: waiting for acks: %w", err)
	}
	return nil
}

// Close closes the connection; the server requeues what was delivered and
// not acked.
func (c *rabbitConsumer) Close() error {
	err := c.conn.Close()
	close(c.stop)
	c.wg.Wait()
	if errors.Is(err, amqp.ErrClosed) {
		err = nil
	}
	return err
}
