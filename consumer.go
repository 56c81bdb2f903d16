package sluice

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/internal/subscription"
)

// Delivery is a message handed to a consumer under a lease. Settle it with the
// consumer's Ack, Nack or Term before Deadline, or Extend the lease. From an
// AtMostOnce subscription it was settled when it was fetched: it has no lease
// (Lease 0, Deadline zero) and only Ack, a no-op, applies.
type Delivery struct {
	Record
	Subscription string
	// Deliveries counts this delivery: 1 the first time.
	Deliveries int
	// Lease is the fencing token: settling with a lease that expired (and whose
	// message went to another consumer) or was revoked (a partitioned
	// subscription's rebalance, or a failure before it in its partition) fails
	// with ErrStaleLease. Tokens increase with every hand-out of a subscription
	// (across restarts too, unless the clock goes back), so a delivery with a
	// lower one was handed out earlier.
	Lease    uint64
	Deadline time.Time
}

// NackOptions says how a failed delivery is retried.
type NackOptions struct {
	// Delay before the message is delivered again. Zero means the subscription's
	// backoff; limits [0, 1 year].
	Delay time.Duration
	// Reason is kept in the attempt history (and the dead letter). At most 1 KiB.
	Reason string
}

// Limits and defaults of ConsumerConfig.
const (
	DefaultMaxInFlight = subscription.DefaultMaxInFlight
	MaxMaxInFlight     = subscription.MaxMaxInFlight
	// MaxFetch is the most deliveries one Fetch returns.
	MaxFetch = subscription.MaxFetch
)

// ConsumerConfig configures a consumer.
type ConsumerConfig struct {
	// Name identifies the consumer in attempt histories and bounds its in-flight
	// deliveries. Default "consumer-<n>", unique within the broker.
	Name string
	// MaxInFlight caps the deliveries the consumer holds unsettled. Default 100;
	// limits [1, 10000].
	MaxInFlight int
}

// Consumer takes deliveries from one subscription.
//
// On an AtMostOnce subscription (SubscriptionConfig.Delivery) Fetch settles what
// it returns: the messages are consumed before the handler runs, and one that
// the handler does not finish (a crash, kill -9, an error) is lost, never
// redelivered. Ack then returns nil without doing anything, so that a handler
// written for either guarantee keeps working; Nack, Term and Extend return an
// *InvalidError (errors.Is ErrInvalid) naming SubscriptionConfig.Delivery, since
// there is nothing left to retry, dead-letter or hold.
type Consumer interface {
	// Fetch returns up to max deliveries, waiting until there is at least one or
	// ctx ends.
	Fetch(ctx context.Context, max int) ([]Delivery, error)
	// Ack settles a delivery as done. AtMostOnce: a no-op that returns nil.
	Ack(ctx context.Context, d Delivery) error
	// AckMany settles several deliveries as done at once: one journal write
	// on the broker, one request from the network client. errs[i] answers
	// ds[i] as Ack would have.
	AckMany(ctx context.Context, ds []Delivery) (errs []error)
	// Nack reports a failed delivery; it is retried, or dead-lettered once it has
	// had the subscription's MaxDeliveries. AtMostOnce: an *InvalidError.
	Nack(ctx context.Context, d Delivery, opts NackOptions) error
	// Term gives up on a delivery: it goes to the dead-letter stream at once.
	// AtMostOnce: an *InvalidError.
	Term(ctx context.Context, d Delivery, reason string) error
	// Extend moves the lease deadline to now + by, and returns it. AtMostOnce:
	// an *InvalidError.
	Extend(ctx context.Context, d Delivery, by time.Duration) (time.Time, error)
	// Close releases the consumer. Unsettled deliveries are redelivered when
	// their leases expire.
	Close() error
}

var consumerSeq atomic.Int64

// NewConsumer opens a consumer on a subscription.
func (b *Broker) NewConsumer(ctx context.Context, streamName, sub string, cfg ConsumerConfig) (Consumer, error) {
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("consumer-%d", consumerSeq.Add(1))
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if !subscription.ValidName(cfg.Name, subscription.MaxConsumerNameLen) {
		return nil, invalid("ConsumerConfig.Name", "%q must be 1..%d characters of [A-Za-z0-9._-] starting with a letter or digit", cfg.Name, subscription.MaxConsumerNameLen)
	}
	if cfg.MaxInFlight < 1 || cfg.MaxInFlight > MaxMaxInFlight {
		return nil, invalid("ConsumerConfig.MaxInFlight", "%d outside [1, MaxMaxInFlight=%d]", cfg.MaxInFlight, MaxMaxInFlight)
	}
	st, err := b.lookupSub(streamName, sub)
	if err != nil {
		return nil, err
	}
	st.opened(cfg.Name)
	return &consumer{b: b, stream: streamName, subName: sub, st: st, cfg: cfg}, nil
}

type consumer struct {
	b       *Broker
	stream  string
	subName string
	st      *subState
	cfg     ConsumerConfig
	closed  atomic.Bool
}

// wrap names the subscription in an error and tells a closed subscription apart
// from a deleted one or a closed broker.
func (c *consumer) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, subscription.ErrClosed) {
		if _, lerr := c.b.lookupSub(c.stream, c.subName); lerr != nil {
			err = lerr
		} else {
			err = fmt.Errorf("%w: subscription reopened", ErrClosed)
		}
	}
	return fmt.Errorf("sluice: %s on %s/%s: %w", op, c.stream, c.subName, toInvalid(err))
}

func (c *consumer) Fetch(ctx context.Context, max int) ([]Delivery, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	ds, err := c.st.sub.Fetch(ctx, c.cfg.Name, max, c.cfg.MaxInFlight)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, err
		}
		return nil, c.wrap("fetch", err)
	}
	out := make([]Delivery, len(ds))
	for i, d := range ds {
		out[i] = Delivery{
			Record: Record{Stream: c.stream, Partition: d.Partition, Offset: d.Offset, Time: time.UnixMilli(d.Timestamp),
				Key: d.Key, Headers: d.Headers, Body: d.Value},
			Subscription: c.subName, Deliveries: d.Deliveries, Lease: d.Lease, Deadline: d.Deadline,
		}
	}
	return out, nil
}

// settledOnFetch returns the error of an op that an AtMostOnce subscription
// cannot do, or nil under AtLeastOnce.
func (c *consumer) settledOnFetch(op string, d Delivery) error {
	if c.st.cfg.Delivery != AtMostOnce {
		return nil
	}
	return c.wrap(op, invalid("SubscriptionConfig.Delivery",
		"subscription %q is at_most_once: the delivery of partition %d offset %d was settled when it was fetched; %s does not apply",
		c.subName, d.Partition, d.Offset, op))
}

func (c *consumer) Ack(ctx context.Context, d Delivery) error {
	if c.st.cfg.Delivery == AtMostOnce {
		return nil // settled when it was fetched
	}
	return c.wrap("ack", c.st.sub.Ack(ctx, d.Partition, d.Offset, d.Lease))
}

func (c *consumer) AckMany(ctx context.Context, ds []Delivery) []error {
	if c.st.cfg.Delivery == AtMostOnce {
		return make([]error, len(ds)) // settled when they were fetched
	}
	refs := make([]subscription.Ref, len(ds))
	for i, d := range ds {
		refs[i] = subscription.Ref{Partition: d.Partition, Offset: d.Offset, Lease: d.Lease}
	}
	errs := c.st.sub.AckMany(ctx, refs)
	for i, err := range errs {
		errs[i] = c.wrap("ack", err)
	}
	return errs
}

func (c *consumer) Nack(ctx context.Context, d Delivery, opts NackOptions) error {
	if err := c.settledOnFetch("nack", d); err != nil {
		return err
	}
	var delay *time.Duration
	if opts.Delay != 0 {
		delay = &opts.Delay
	}
	return c.wrap("nack", c.st.sub.Nack(ctx, d.Partition, d.Offset, d.Lease, delay, opts.Reason))
}

func (c *consumer) Term(ctx context.Context, d Delivery, reason string) error {
	if err := c.settledOnFetch("term", d); err != nil {
		return err
	}
	return c.wrap("term", c.st.sub.Term(ctx, d.Partition, d.Offset, d.Lease, reason))
}

func (c *consumer) Extend(ctx context.Context, d Delivery, by time.Duration) (time.Time, error) {
	if err := c.settledOnFetch("extend", d); err != nil {
		return time.Time{}, err
	}
	t, err := c.st.sub.Extend(d.Partition, d.Offset, d.Lease, by)
	return t, c.wrap("extend", err)
}

// Close leaves the group of a partitioned subscription at once, so that its
// partitions move without waiting for the session to end; unless another
// consumer of the same name is still open (a client that reconnected before
// its old connection's consumer was closed): the member is still there.
func (c *consumer) Close() error {
	if !c.closed.Swap(true) && c.st.closed(c.cfg.Name) {
		c.st.sub.Leave(c.cfg.Name)
	}
	return nil
}
