package subscription

import (
	"fmt"
	"time"
)

// Mode says how a subscription shares messages among its consumers.
type Mode string

const (
	// ModeQueue: any consumer may get any message; each delivery holds a lease.
	ModeQueue Mode = "queue"
	// ModeKeyOrdered: like ModeQueue, but the messages of one key are delivered in
	// offset order, one at a time: the next only once the previous is acknowledged
	// or dead-lettered. A key whose message keeps failing is parked (its later
	// messages wait) while every other key flows. Messages without a key are not
	// ordered.
	ModeKeyOrdered Mode = "key_ordered"
	// ModePartitioned: the consumer-group model. The stream's partitions are
	// assigned to the live consumers (members); each member gets the messages of
	// its partitions in offset order (several may be in flight, in order) and a
	// failed one holds back the rest of its partition. Members are live while they
	// fetch at least once per Session; when they come and go, partitions move with
	// as little disruption as possible, and the new owner resumes at the first
	// unsettled offset.
	ModePartitioned Mode = "partitioned"
)

// DeliveryGuarantee says when a message counts as consumed. (Delivery, the name
// the field has, is taken by a handed-out message.)
type DeliveryGuarantee string

const (
	// AtLeastOnce: a message counts as consumed once the consumer acknowledges
	// it; until then it is redelivered, so nothing handed out is lost and some
	// messages come twice.
	AtLeastOnce DeliveryGuarantee = "at_least_once"
	// AtMostOnce: a message counts as consumed when it is handed to the consumer,
	// before it is processed; it is never redelivered, so a crash mid-handler
	// loses it.
	AtMostOnce DeliveryGuarantee = "at_most_once"
)

// Session limits for ModePartitioned.
const (
	DefaultSession = 10 * time.Second
	MinSession     = 100 * time.Millisecond
	MaxSession     = 5 * time.Minute
)

// MaxHeld bounds, per partition, the messages of key_ordered mode waiting behind
// an earlier message of their key; beyond it the partition reads no further until
// keys drain.
const MaxHeld = 100000

// MaxPending bounds, per partition, the messages a subscription tracks between its
// floor and its cursor (in flight, waiting for a retry, delayed or held); beyond
// it the partition reads no further until some settle. It bounds the memory of
// delayed messages too.
const MaxPending = 200000

// Start is where a new subscription begins.
type Start string

const (
	StartEarliest Start = "earliest"
	StartLatest   Start = "latest"
)

// Limits and defaults of Config.
const (
	MaxNameLen            = 128
	DefaultLease          = 30 * time.Second
	MinLease              = 100 * time.Millisecond
	MaxLease              = 12 * time.Hour
	DefaultMaxDeliveries  = 5
	MaxMaxDeliveries      = 1000
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	MinBackoff            = time.Millisecond
	MaxBackoff            = 24 * time.Hour
	// MaxRetryDelay bounds a nack's explicit delay.
	MaxRetryDelay = 365 * 24 * time.Hour
	// MaxReasonBytes bounds the error text a nack or term may carry.
	MaxReasonBytes = 1024
	// MaxConsumerNameLen bounds a consumer's name.
	MaxConsumerNameLen = 128
	// DefaultMaxInFlight is a consumer's default cap on unacknowledged deliveries.
	DefaultMaxInFlight = 100
	// MaxMaxInFlight bounds a consumer's cap.
	MaxMaxInFlight = 10000
	// MaxFetch bounds the deliveries one Fetch returns.
	MaxFetch = 1000
)

// Config configures a subscription. Zero fields take their defaults.
type Config struct {
	// Name is 1..MaxNameLen characters of [A-Za-z0-9._-], starting with a letter or
	// digit. Required.
	Name string `json:"name"`
	// Mode is how messages are shared among consumers. Default ModeQueue.
	Mode Mode `json:"mode"`
	// Start is where a new subscription begins. Default StartEarliest.
	Start Start `json:"start"`
	// Lease is how long a consumer holds a delivery before it is redelivered, unless
	// extended. Default 30 s; limits [100 ms, 12 h].
	Lease time.Duration `json:"lease"`
	// MaxDeliveries is how many times a message is delivered before it is
	// dead-lettered. Default 5; limits [1, 1000].
	MaxDeliveries int `json:"max_deliveries"`
	// BackoffInitial and BackoffMax bound the retry delay after a failed delivery:
	// BackoffInitial * 2^(deliveries-1), at most BackoffMax, with jitter (a random
	// value in the upper half). Defaults 1 s and 5 min; limits [1 ms, 24 h].
	BackoffInitial time.Duration `json:"backoff_initial"`
	BackoffMax     time.Duration `json:"backoff_max"`
	// Session is how long a member of a partitioned subscription stays in the
	// group without fetching. Default 10 s; limits [100 ms, 5 min].
	Session time.Duration `json:"session,omitempty"`
	// Delivery is when a message counts as consumed. Default AtLeastOnce.
	//
	// AtLeastOnce: on the consumer's ack. What it costs is duplicates: a message
	// is delivered again when the consumer crashes before its ack, when its lease
	// expires (a slow or stuck handler; Extend prevents it), and when the broker
	// crashes after the delivery and before the ack was journaled (after a power
	// failure: before the ack's journal write was synced, up to 50 ms). In return
	// nothing handed out is lost: failures are retried with backoff and
	// dead-lettered after MaxDeliveries.
	//
	// AtMostOnce: when Fetch hands it out, before it is processed. Fetch journals
	// each delivery together with its settlement and syncs the journal before it
	// returns: one fsync per Fetch that returns messages, under the subscription's
	// lock, so concurrent fetchers of one subscription take turns. No lease, no
	// in-flight count: a message is never redelivered, never retried and never
	// dead-lettered (Lease, MaxDeliveries and the backoff do not apply; ack, nack,
	// term and extend find nothing to settle), and a crash of the consumer, or of
	// the broker after Fetch returned, loses what was fetched and not yet
	// processed. Delays, Seek and the modes work as with AtLeastOnce, except that
	// in ModeKeyOrdered nothing waits for a message to be processed: the messages
	// of a key are handed out in offset order (several in one Fetch, to one
	// consumer, when they are due together), which is an order of hand-out, not
	// of processing; two consumers may process consecutive messages of a key at
	// the same time.
	Delivery DeliveryGuarantee `json:"delivery,omitempty"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeQueue
	}
	if c.Start == "" {
		c.Start = StartEarliest
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = DefaultBackoffInitial
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.Session == 0 {
		c.Session = DefaultSession
	}
	if c.Delivery == "" {
		c.Delivery = AtLeastOnce
	}
	return c
}

// FieldError names the field of a bad config or argument and the rule it breaks.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidName reports whether s is a valid name of at most maxLen bytes: streams,
// subscriptions, consumers and schedules all follow this rule.
func ValidName(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// Validate checks every field against its limits.
func (c Config) Validate() error {
	d := c.WithDefaults()
	switch {
	case !ValidName(d.Name, MaxNameLen):
		return fieldErr("SubscriptionConfig.Name", "%q must be 1..%d characters of [A-Za-z0-9._-] starting with a letter or digit", d.Name, MaxNameLen)
	case d.Mode != ModeQueue && d.Mode != ModeKeyOrdered && d.Mode != ModePartitioned:
		return fieldErr("SubscriptionConfig.Mode", "%q is not one of queue, key_ordered, partitioned", d.Mode)
	case d.Delivery != AtLeastOnce && d.Delivery != AtMostOnce:
		return fieldErr("SubscriptionConfig.Delivery", "%q is not one of at_least_once, at_most_once", d.Delivery)
	case d.Session < MinSession || d.Session > MaxSession:
		return fieldErr("SubscriptionConfig.Session", "%v outside [%v, %v]", d.Session, MinSession, MaxSession)
	case d.Start != StartEarliest && d.Start != StartLatest:
		return fieldErr("SubscriptionConfig.Start", "%q is not one of earliest, latest", d.Start)
	case d.Lease < MinLease || d.Lease > MaxLease:
		return fieldErr("SubscriptionConfig.Lease", "%v outside [%v, %v]", d.Lease, MinLease, MaxLease)
	case d.MaxDeliveries < 1 || d.MaxDeliveries > MaxMaxDeliveries:
		return fieldErr("SubscriptionConfig.MaxDeliveries", "%d outside [1, %d]", d.MaxDeliveries, MaxMaxDeliveries)
	case d.BackoffInitial < MinBackoff || d.BackoffInitial > MaxBackoff:
		return fieldErr("SubscriptionConfig.BackoffInitial", "%v outside [%v, %v]", d.BackoffInitial, MinBackoff, MaxBackoff)
	case d.BackoffMax < d.BackoffInitial || d.BackoffMax > MaxBackoff:
		return fieldErr("SubscriptionConfig.BackoffMax", "%v outside [BackoffInitial=%v, %v]", d.BackoffMax, d.BackoffInitial, MaxBackoff)
	}
	return nil
}
