package main

import (
	"context"
	"errors"
)

// The interface every broker under test implements, and the registry of them.
//
// A peerFactory opens a peer for one run of one workload, with an empty state
// (a fresh data directory, or freshly named streams and queues on an external
// broker); the harness calls Setup once, opens producers and consumers, and
// closes the peer at the end of the run. Every call that blocks takes ctx
// first and returns when ctx ends.

// Durability classes: what an acknowledged publish has survived.
const (
	// fsyncBeforeAck: the broker fsynced (or fdatasynced) the message before
	// it acknowledged it; it survives a power failure.
	fsyncBeforeAck = "fsync before ack"
	// noFsyncBeforeAck: the broker acknowledged the message once written to
	// the page cache (or memory); it survives a crash of the broker process,
	// not a power failure.
	noFsyncBeforeAck = "no fsync before ack"
)

// errUnreachable is wrapped by the error of a factory's probe or open when
// the broker is not there (an external process not running). The harness
// then skips that peer for the whole run and prints one line saying why.
var errUnreachable = errors.New("not reachable")

// errNotHeld is wrapped by the error of a consumer's Ack when the delivery
// is no longer the consumer's to settle because a consumer group moved its
// partition to another member, which gets the message again. The harness
// does not count such a delivery, and goes on.
var errNotHeld = errors.New("delivery no longer held by this consumer")

// mode is how one subscription shares its messages among its consumers.
type mode int

const (
	// modeQueue: each message goes to one consumer of the subscription, in any
	// order, and is acknowledged one by one.
	modeQueue mode = iota
	// modeKeyOrdered: like modeQueue, but the messages of one key are handed
	// out in publish order, the next once the previous is acknowledged, while
	// different keys go to consumers in parallel.
	modeKeyOrdered
	// modePartitioned: a consumer group; the topology's partitions are divided
	// among the members, each reading its partitions in order.
	modePartitioned
)

func (m mode) String() string {
	switch m {
	case modeQueue:
		return "queue"
	case modeKeyOrdered:
		return "key_ordered"
	case modePartitioned:
		return "partitioned"
	}
	return "unknown"
}

// topology is what a workload needs created before it runs: one stream (or
// queue) of Partitions partitions, with Subscriptions, each of which sees every
// message and shares it among its own consumers as Mode says.
type topology struct {
	// Partitions is at least 1. A peer without partitions may ignore it
	// except under modePartitioned.
	Partitions    int
	Mode          mode
	Subscriptions []string
	// Messages is the most messages the workload keeps stored at once, so
	// that a peer can size its limits (the memory workload keeps 10 million).
	Messages int64
}

// message is one message to publish. Key is empty except in the keyed
// workloads (W5, W6), where the peer routes by it: same key, same partition.
type message struct {
	Key  []byte
	Body []byte
}

// delivery is one message handed to a consumer. Handle is the peer's own
// token, given back to Ack.
type delivery struct {
	Key    []byte
	Body   []byte
	Handle any
}

// peerFactory names a broker configuration and opens it.
type peerFactory struct {
	// Name is the system's name in flags and tables: "sluice", "nats-always",
	// "redis"...
	Name string
	// Durability is fsyncBeforeAck or noFsyncBeforeAck.
	Durability string
	// Note is printed under the table when the peer ran, e.g. "external
	// process on 127.0.0.1:6379 (redis-server 7.2, appendfsync always)".
	Note string
	// Probe, when set, is called once before any workload: an error (wrapping
	// errUnreachable or not) skips the peer for the whole run, with one line
	// saying why.
	Probe func(ctx context.Context) error
	// Skip, when set, returns why the system does not run a workload
	// variant, given its id ("W2-c4", "memory"...), or "". It is asked
	// before the peer is opened, and its reason comes before the cell's own.
	Skip func(cellID string) string
	// Open returns the peer with an empty state for one run. dir is a fresh
	// temporary directory the peer may use for its data; it is removed after
	// Close. The peer's broker runs in the harness's process when opts.Process
	// is false (the in-process servers), and in a process of its own when it
	// is true (the memory workload); external brokers ignore it.
	Open func(ctx context.Context, dir string, opts openOptions) (peer, error)
}

// openOptions are the settings of one Open.
type openOptions struct {
	// Process asks for the broker in a process of its own, whose memory the
	// peer then reports (memoryReporter).
	Process bool
}

// peer is one opened broker under test.
type peer interface {
	// Unsupported returns why the peer has no equivalent of m, or "" when it
	// has one. The workload is then skipped for this peer, saying so.
	Unsupported(m mode) string
	// Setup creates the topology. It is called once, before any producer or
	// consumer is opened.
	Setup(ctx context.Context, t topology) error
	// NewProducer opens a producer. Each producer is used by one goroutine at
	// a time.
	NewProducer(ctx context.Context) (producer, error)
	// NewConsumer opens a consumer on one of the topology's subscriptions.
	// member (0, 1, ...) tells the consumers of one subscription apart, for a
	// consumer group's member names.
	NewConsumer(ctx context.Context, subscription string, member int) (consumer, error)
	// Close releases everything the peer opened, stops an in-process broker
	// and deletes what Setup created on an external one.
	Close() error
}

// producer publishes to the topology's stream.
type producer interface {
	// Publish sends m and calls done exactly once, from any goroutine, when
	// the broker acknowledged it (as durably as the peer's Durability says)
	// or the publish failed. It may block until the message is handed to the
	// connection; it must not wait for the acknowledgement. The harness keeps
	// at most its window of publishes outstanding per producer and does not
	// touch m.Body until done is called.
	Publish(ctx context.Context, m message, done func(error))
	// Close releases the producer. The harness calls it once every done
	// was called.
	Close() error
}

// batchPublisher is implemented by a producer that has a faster way to store
// many messages at once. The harness uses it to fill a backlog before a
// workload's timed part, never in the timed part of W1 or W3.
type batchPublisher interface {
	// PublishBatch stores msgs (at most 1,000) and returns once every one is
	// acknowledged.
	PublishBatch(ctx context.Context, msgs []message) error
}

// consumer takes messages from one subscription.
type consumer interface {
	// Fetch returns between 1 and max deliveries, waiting until there is at
	// least one or ctx ends.
	Fetch(ctx context.Context, max int) ([]delivery, error)
	// Ack settles one delivery as done. An error wrapping errNotHeld says that
	// a consumer group took the delivery away.
	Ack(ctx context.Context, d delivery) error
	// Close releases the consumer; unacknowledged deliveries go back to the
	// subscription.
	Close() error
}

// batchAcker is implemented by a consumer that settles a fetched batch at
// once, the way its users would. The harness then acks each fetched batch
// with it instead of Ack.
type batchAcker interface {
	// AckBatch settles ds; errs[i] answers ds[i] as Ack would have.
	AckBatch(ctx context.Context, ds []delivery) (errs []error)
}

// ackWaiter is implemented by a consumer whose Ack returns before the broker
// applied it (it only sends it). A drain ends, and is timed, when every
// consumer that implements it returns from WaitAcked.
type ackWaiter interface {
	// WaitAcked waits until the broker has applied every ack sent on the
	// consumer's subscription.
	WaitAcked(ctx context.Context) error
}

// memoryReporter is implemented by a peer whose broker runs in a process of
// its own (an external broker, or one opened with openOptions.Process).
type memoryReporter interface {
	// BrokerRSS returns the resident set size of the broker's process, in
	// bytes.
	BrokerRSS(ctx context.Context) (int64, error)
}

// peers is every system the harness knows, in table order. The in-process
// ones are listed here; the files of the external peers append theirs from
// init(), which runs after this is set.
var peers = append(append(sluiceFactories(), natsFactories()...), kafkaFactories()...)

// register adds a factory to peers; files of external peers call it from
// init().
func register(f peerFactory) { peers = append(peers, f) }
