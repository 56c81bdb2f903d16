package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/subscription"
	"github.com/sluicemq/sluice/internal/vfs"
)

// A subscription's files: <stream dir>/subs/<name>/subscription.json (config,
// written atomically) and its state (package subscription).
const (
	subsDir = "subs"
	subFile = "subscription.json"
	// DeadLetterSuffix names a subscription's default dead-letter stream:
	// "<stream>.<subscription>.dlq".
	DeadLetterSuffix = ".dlq"
)

// DefaultDeadLetterStream is the config (less its name) of a dead-letter stream
// that CreateSubscription creates: dead letters are kept 30 days, and at most
// 1 GiB, the oldest dropped first, so that dead-lettering never stops for room.
// Create the stream yourself to choose otherwise.
var DefaultDeadLetterStream = StreamConfig{Retention: Retention{MaxAge: 30 * 24 * time.Hour}, MaxBytes: 1 << 30, Overflow: OverflowDropOldest}

// ErrStaleLease is returned when a consumer settles or extends a delivery whose
// lease it no longer holds: the lease expired and the message went to someone else,
// or it was already settled.
var ErrStaleLease = subscription.ErrStaleLease

// Subscription errors. Test with errors.Is.
var (
	// ErrSubscriptionNotFound is returned for a subscription that does not exist.
	ErrSubscriptionNotFound = errors.New("sluice: subscription not found")
	// ErrSubscriptionExists is returned by CreateSubscription for a name in use.
	ErrSubscriptionExists = errors.New("sluice: subscription already exists")
	// ErrSubscriptionFailed is returned once a subscription's journal failed; it
	// stops until the broker is reopened.
	ErrSubscriptionFailed = subscription.ErrFailed
	// ErrSourceGone is returned by a redrive whose message retention removed.
	ErrSourceGone = subscription.ErrSourceGone
)

// MaxSubscriptionsPerStream bounds the subscriptions of one stream: each costs a
// journal and a watcher per partition.
const MaxSubscriptionsPerStream = 1000

// SubscriptionMode says how a subscription shares messages among its consumers.
type SubscriptionMode = subscription.Mode

// Subscription modes.
const (
	// QueueMode: each message goes to one consumer at a time, under a lease, in any
	// order.
	QueueMode = subscription.ModeQueue
	// KeyOrderedMode: like QueueMode, but the messages of one key are delivered in
	// order, one at a time (the next once the previous is acknowledged or
	// dead-lettered), while different keys are delivered in parallel. A key whose
	// message keeps failing is parked without stalling the others.
	KeyOrderedMode = subscription.ModeKeyOrdered
	// PartitionedMode is the consumer-group model: partitions are assigned to the
	// live consumers (by ConsumerConfig.Name), each reads its partitions in order,
	// and progress is a committed offset per partition. A consumer that stops
	// fetching for Session leaves the group and its partitions move on.
	PartitionedMode = subscription.ModePartitioned
)

// DeliveryGuarantee says when a message counts as consumed; see
// SubscriptionConfig.Delivery.
type DeliveryGuarantee = subscription.DeliveryGuarantee

// Delivery guarantees.
const (
	// AtLeastOnce: a message counts as consumed once the consumer acks it; it may
	// be delivered more than once, and is never lost once handed out.
	AtLeastOnce = subscription.AtLeastOnce
	// AtMostOnce: a message counts as consumed when Fetch hands it out, before it
	// is processed; it is never delivered twice, and lost if the consumer fails
	// to process it.
	AtMostOnce = subscription.AtMostOnce
)

// SubscriptionConfig configures a subscription. Zero fields take their defaults.
type SubscriptionConfig struct {
	// Name is 1..128 characters of [A-Za-z0-9._-], starting with a letter or digit.
	Name string `json:"name"`
	// Mode is how messages are shared among consumers. Default QueueMode.
	Mode SubscriptionMode `json:"mode"`
	// StartLatest starts a new subscription after the messages already stored;
	// by default it starts at the earliest.
	StartLatest bool `json:"start_latest"`
	// Lease is how long a delivery is held before it is redelivered, unless
	// extended. Default 30 s; limits [100 ms, 12 h].
	Lease time.Duration `json:"lease"`
	// MaxDeliveries is how many deliveries a message gets before it is
	// dead-lettered. Default 5; limits [1, 1000].
	MaxDeliveries int `json:"max_deliveries"`
	// BackoffInitial and BackoffMax shape the retry delay after a failed delivery:
	// exponential from BackoffInitial, at most BackoffMax, with jitter. Defaults 1 s
	// and 5 min; limits [1 ms, 24 h].
	BackoffInitial time.Duration `json:"backoff_initial"`
	BackoffMax     time.Duration `json:"backoff_max"`
	// Session is how long a consumer of a PartitionedMode subscription stays in the
	// group without fetching. Default 10 s; limits [100 ms, 5 min].
	Session time.Duration `json:"session,omitempty"`
	// Delivery is when a message counts as consumed. Default AtLeastOnce.
	//
	// AtLeastOnce: when the consumer acks it. The price is duplicates: a message
	// comes again when the consumer crashes before its ack, when its lease expires
	// (a slow handler that does not Extend), and when the broker crashes after the
	// delivery and before the ack was journaled (after a power failure, before the
	// ack's journal write was synced: up to 50 ms). Handlers must be idempotent.
	// Nothing handed out is lost: failures are retried with backoff and
	// dead-lettered after MaxDeliveries.
	//
	// AtMostOnce: when Fetch hands it out, before it is processed. Each Fetch that
	// returns messages costs one fsync of the subscription's journal, and
	// concurrent fetchers of the subscription take turns for it. A message is
	// never delivered twice: no lease, no redelivery, no retries and no dead
	// letters (Lease, MaxDeliveries and the backoff do not apply; the dead-letter
	// stream is created all the same, and stays empty), so a crash of the
	// consumer (kill -9 included), or of the broker after Fetch returned, loses
	// what was fetched and not yet processed. Ack is a no-op, so that code written
	// for either guarantee works; Nack, Term and Extend fail with an
	// *InvalidError. In KeyOrderedMode the messages of a key are handed out in
	// order (several in one Fetch when they are due together), but nothing waits
	// for one to be processed before the next goes out: the order is one of
	// hand-out, not of processing.
	Delivery DeliveryGuarantee `json:"delivery,omitempty"`
	// DeadLetterStream receives the messages the subscription gives up on, with
	// their attempt history in headers. Default "<stream>.<name>.dlq", created with
	// the subscription if missing.
	DeadLetterStream string `json:"dead_letter_stream"`
}

func (c SubscriptionConfig) internal() subscription.Config {
	start := subscription.StartEarliest
	if c.StartLatest {
		start = subscription.StartLatest
	}
	return subscription.Config{Name: c.Name, Mode: c.Mode, Start: start, Lease: c.Lease,
		MaxDeliveries: c.MaxDeliveries, BackoffInitial: c.BackoffInitial, BackoffMax: c.BackoffMax, Session: c.Session,
		Delivery: c.Delivery}
}

func (c SubscriptionConfig) withDefaults(stream string) SubscriptionConfig {
	d := c.internal().WithDefaults()
	c.Mode, c.Lease, c.MaxDeliveries, c.BackoffInitial, c.BackoffMax = d.Mode, d.Lease, d.MaxDeliveries, d.BackoffInitial, d.BackoffMax
	c.Delivery = d.Delivery
	if c.Mode == PartitionedMode {
		c.Session = d.Session
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = stream + "." + c.Name + DeadLetterSuffix
	}
	return c
}

func (c SubscriptionConfig) validate(stream string) error {
	if err := c.internal().Validate(); err != nil {
		return toInvalid(err)
	}
	d := c.withDefaults(stream)
	if !validName(d.DeadLetterStream) {
		return invalid("SubscriptionConfig.DeadLetterStream", "%q must be a valid stream name of at most %d characters", d.DeadLetterStream, MaxStreamNameLen)
	}
	if d.DeadLetterStream == stream {
		return invalid("SubscriptionConfig.DeadLetterStream", "cannot be the subscribed stream %q", stream)
	}
	return nil
}

// toInvalid turns the engine's field errors into *InvalidError.
func toInvalid(err error) error {
	var fe *subscription.FieldError
	if errors.As(err, &fe) {
		return &InvalidError{Field: fe.Field, Reason: fe.Reason}
	}
	return err
}

// SubscriptionInfo describes a subscription and its progress.
type SubscriptionInfo struct {
	Stream string             `json:"stream"`
	Config SubscriptionConfig `json:"config"`
	// Backlog is the number of messages not yet done (acknowledged or
	// dead-lettered), InFlight those under a lease, Waiting those waiting for a
	// retry after a failed delivery.
	Backlog  int64 `json:"backlog"`
	InFlight int   `json:"in_flight"`
	Waiting  int   `json:"waiting"`
	// Delayed counts messages held back until their DeliverAt time; NextDue is
	// when the next waiting or delayed message is due (zero when none waits).
	Delayed int       `json:"delayed"`
	NextDue time.Time `json:"next_due"`
	// Held counts messages waiting behind an earlier one of their key, Parked the
	// keys whose oldest message failed and waits for a retry (KeyOrderedMode).
	Held   int `json:"held"`
	Parked int `json:"parked"`
	// Redeliveries counts deliveries after the first since the broker started.
	Redeliveries int64 `json:"redeliveries"`
	// OldestUnsettled is the time of the oldest message not yet settled (zero when
	// none): the backlog's age.
	OldestUnsettled time.Time `json:"oldest_unsettled"`
	// Members is the group of a PartitionedMode subscription, with Generation
	// counting its rebalances.
	Members      []GroupMember           `json:"members,omitempty"`
	Generation   int64                   `json:"generation,omitempty"`
	DeadLettered int64                   `json:"dead_lettered"`
	Partitions   []SubscriptionPartition `json:"partitions"`
}

// SubscriptionPartition is a subscription's position in one partition.
type SubscriptionPartition struct {
	ID int `json:"id"`
	// Floor: every offset below it is done. Next: the next offset never delivered.
	Floor   int64 `json:"floor"`
	Next    int64 `json:"next"`
	Backlog int64 `json:"backlog"`
}

// subState is an open subscription with its config.
type subState struct {
	cfg SubscriptionConfig
	sub *subscription.Sub

	// open counts the open consumers of each name: a member of a partitioned
	// group leaves when the last of its consumers closes, not when an old
	// connection's consumer closes after the member came back on a new one.
	mu   sync.Mutex
	open map[string]int
}

// opened records an open consumer of name.
func (st *subState) opened(name string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.open == nil {
		st.open = map[string]int{}
	}
	st.open[name]++
}

// closed records that a consumer of name closed, and reports whether it was
// the last one open.
func (st *subState) closed(name string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.open[name]--
	if st.open[name] > 0 {
		return false
	}
	delete(st.open, name)
	return true
}

func (s *stream) subDir(name string) string { return filepath.Join(s.dir, subsDir, name) }

// openSubscriptions opens every subscription of a stream being opened.
func (b *Broker) openSubscriptions(s *stream) error {
	root := filepath.Join(s.dir, subsDir)
	if !b.fs.Exists(root) {
		return nil
	}
	names, err := b.fs.ReadDir(root)
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := b.fs.ReadFile(filepath.Join(root, n, subFile))
		if err != nil {
			// Its creation never completed.
			b.opts.Logger.Warn("sluice: removing incomplete subscription", "stream", s.cfg.Name, "subscription", n, "reason", err)
			if err := b.fs.RemoveAll(filepath.Join(root, n)); err != nil {
				return err
			}
			continue
		}
		var cfg SubscriptionConfig
		if err := json.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("subscription %s: %w", n, err)
		}
		if err := cfg.validate(s.cfg.Name); err != nil || cfg.Name != n {
			return fmt.Errorf("subscription %s: bad config %s: %v", n, subFile, err)
		}
		if cfg.Delivery == "" {
			cfg.Delivery = AtLeastOnce // written before the field existed
		}
		sub, err := b.openSub(s, cfg)
		if err != nil {
			return err
		}
		s.subs[n] = &subState{cfg: cfg, sub: sub}
	}
	return nil
}

func (b *Broker) openSub(s *stream, cfg SubscriptionConfig) (*subscription.Sub, error) {
	source := s.cfg.Name
	return subscription.Open(subscription.Options{
		Config:     cfg.internal(),
		Dir:        s.subDir(cfg.Name),
		FS:         b.fs,
		Partitions: func() []logstore.Log { return *s.partsV.Load() },
		DeadLetter: func(ctx context.Context, m subscription.DeadMessage) error {
			return b.deadLetter(ctx, source, cfg, m)
		},
		Now:    b.opts.now,
		Logger: b.opts.Logger.With("stream", source, "subscription", cfg.Name),
	})
}

// maxAttemptsHeader bounds the attempt history a dead letter carries.
const maxAttemptsHeader = 32 << 10

// Headers a dead letter carries besides the original message's own.
const (
	HeaderDLQStream       = "sluice-dlq-stream"
	HeaderDLQPartition    = "sluice-dlq-partition"
	HeaderDLQOffset       = "sluice-dlq-offset"
	HeaderDLQSubscription = "sluice-dlq-subscription"
	HeaderDLQDeliveries   = "sluice-dlq-deliveries"
	HeaderDLQReason       = "sluice-dlq-reason"
	HeaderDLQFirstFailure = "sluice-dlq-first-failure"
	HeaderDLQLastFailure  = "sluice-dlq-last-failure"
	// HeaderDLQAttempts is a JSON array of {"at" (unix ms), "consumer", "error"}.
	HeaderDLQAttempts = "sluice-dlq-attempts"
	// HeaderDLQTime is the original message's time (unix ms): the dead letter's
	// own time is when it was dead-lettered, which its stream's MaxAge counts from.
	HeaderDLQTime = "sluice-dlq-time"
	// HeaderDLQIdempotencyKey carries the original's IdempotencyKeyHeader: under
	// its own name the dead-letter stream would take it for a key of its own and
	// drop a second dead-lettering of a redriven message as a duplicate.
	HeaderDLQIdempotencyKey = "sluice-dlq-idempotency-key"
)

// deadLetter publishes m to the subscription's dead-letter stream.
func (b *Broker) deadLetter(ctx context.Context, source string, cfg SubscriptionConfig, m subscription.DeadMessage) error {
	attempts, err := json.Marshal(m.Attempts)
	if err != nil {
		return err
	}
	if len(attempts) > maxAttemptsHeader {
		// Keep the newest attempts that fit.
		for len(m.Attempts) > 1 && len(attempts) > maxAttemptsHeader {
			m.Attempts = m.Attempts[1:]
			attempts, _ = json.Marshal(m.Attempts)
		}
	}
	var hdrs []Header
	for _, h := range m.Headers {
		// A deliver-at time is spent, and headers of an earlier dead-lettering
		// would be confused with this one's.
		switch {
		case h.Key == IdempotencyKeyHeader:
			hdrs = append(hdrs, Header{Key: HeaderDLQIdempotencyKey, Value: h.Value})
		case h.Key != DeliverAtHeader && !strings.HasPrefix(h.Key, "sluice-dlq-"):
			hdrs = append(hdrs, h)
		}
	}
	add := func(k, v string) { hdrs = append(hdrs, Header{Key: k, Value: []byte(v)}) }
	add(HeaderDLQStream, source)
	add(HeaderDLQPartition, strconv.Itoa(m.Partition))
	add(HeaderDLQOffset, strconv.FormatInt(m.Offset, 10))
	add(HeaderDLQSubscription, cfg.Name)
	add(HeaderDLQDeliveries, strconv.Itoa(m.Deliveries))
	add(HeaderDLQReason, m.Reason)
	if n := len(m.Attempts); n > 0 {
		add(HeaderDLQFirstFailure, time.UnixMilli(m.Attempts[0].At).UTC().Format(time.RFC3339Nano))
		add(HeaderDLQLastFailure, time.UnixMilli(m.Attempts[n-1].At).UTC().Format(time.RFC3339Nano))
	}
	add(HeaderDLQTime, strconv.FormatInt(m.Timestamp, 10))
	hdrs = append(hdrs, Header{Key: HeaderDLQAttempts, Value: attempts})
	// Partition 0: a dead-letter log is read in one order, by its offsets.
	msg := Message{Key: m.Key, Body: m.Value, Headers: hdrs, Partition: ToPartition(0)}
	_, err = b.publish(ctx, cfg.DeadLetterStream, msg, false)
	return err
}

func (s *stream) closeSubs() error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.subsClosed = true // no subscription is added after this
	var errs []error
	for n, st := range s.subs {
		if err := st.sub.Close(); err != nil {
			errs = append(errs, fmt.Errorf("subscription %s: %w", n, err))
		}
	}
	clear(s.subs)
	return errors.Join(errs...)
}

// CreateSubscription creates a durable subscription on a stream, and its
// dead-letter stream if that does not exist.
func (b *Broker) CreateSubscription(ctx context.Context, streamName string, cfg SubscriptionConfig) (SubscriptionInfo, error) {
	if err := cfg.validate(streamName); err != nil {
		return SubscriptionInfo{}, err
	}
	cfg = cfg.withDefaults(streamName)
	if _, err := b.lookup(streamName); err != nil {
		return SubscriptionInfo{}, err // before creating a dead-letter stream for nothing
	}
	dlq := DefaultDeadLetterStream
	dlq.Name = cfg.DeadLetterStream
	if _, err := b.CreateStream(ctx, dlq); err != nil && !errors.Is(err, ErrStreamExists) {
		return SubscriptionInfo{}, fmt.Errorf("sluice: create dead-letter stream: %w", err)
	}
	s, err := b.acquire(streamName)
	if err != nil {
		return SubscriptionInfo{}, err
	}
	defer s.mu.RUnlock()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subsClosed {
		return SubscriptionInfo{}, fmt.Errorf("%w: %q", ErrStreamNotFound, streamName)
	}
	if _, ok := s.subs[cfg.Name]; ok {
		return SubscriptionInfo{}, fmt.Errorf("%w: %q on %q", ErrSubscriptionExists, cfg.Name, streamName)
	}
	if len(s.subs) >= MaxSubscriptionsPerStream {
		return SubscriptionInfo{}, invalid("SubscriptionConfig.Name", "stream %q has %d subscriptions, limit MaxSubscriptionsPerStream=%d", streamName, len(s.subs), MaxSubscriptionsPerStream)
	}
	dir := s.subDir(cfg.Name)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return SubscriptionInfo{}, err
	}
	if err := b.fs.MkdirAll(dir); err != nil {
		return SubscriptionInfo{}, err
	}
	for _, d := range []string{filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir)} {
		if err := b.fs.SyncDir(d); err != nil {
			return SubscriptionInfo{}, err
		}
	}
	// The state first, config last: a subscription exists once its config does.
	sub, err := b.openSub(s, cfg)
	if err != nil {
		return SubscriptionInfo{}, toInvalid(err)
	}
	if err := vfs.WriteFileAtomic(b.fs, filepath.Join(dir, subFile), append(data, '\n')); err != nil {
		sub.Close()
		return SubscriptionInfo{}, fmt.Errorf("sluice: create subscription: %w", err)
	}
	st := &subState{cfg: cfg, sub: sub}
	s.subs[cfg.Name] = st
	return st.info(streamName), nil
}

// DeleteSubscription deletes a subscription and its state. Its dead-letter stream
// stays.
func (b *Broker) DeleteSubscription(ctx context.Context, streamName, name string) error {
	s, err := b.acquire(streamName)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	st, ok := s.subs[name]
	if !ok {
		return fmt.Errorf("%w: %q on %q", ErrSubscriptionNotFound, name, streamName)
	}
	delete(s.subs, name)
	if err := st.sub.Close(); err != nil {
		b.opts.Logger.Warn("sluice: closing deleted subscription", "subscription", name, "error", err)
	}
	dir := s.subDir(name)
	// Without its config the subscription is gone, even if a crash stops the rest.
	if err := b.fs.Remove(filepath.Join(dir, subFile)); err != nil {
		return err
	}
	if err := b.fs.SyncDir(dir); err != nil {
		return err
	}
	return b.fs.RemoveAll(dir)
}

// ListSubscriptions lists a stream's subscriptions, sorted by name.
func (b *Broker) ListSubscriptions(ctx context.Context, streamName string) ([]SubscriptionInfo, error) {
	s, err := b.acquire(streamName)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	out := make([]SubscriptionInfo, 0, len(s.subs))
	for _, st := range s.subs {
		out = append(out, st.info(streamName))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out, nil
}

// Subscription describes one subscription.
func (b *Broker) Subscription(ctx context.Context, streamName, name string) (SubscriptionInfo, error) {
	st, err := b.lookupSub(streamName, name)
	if err != nil {
		return SubscriptionInfo{}, err
	}
	return st.info(streamName), nil
}

func (b *Broker) lookupSub(streamName, name string) (*subState, error) {
	s, err := b.acquire(streamName)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	st, ok := s.subs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q on %q", ErrSubscriptionNotFound, name, streamName)
	}
	return st, nil
}

func (st *subState) info(stream string) SubscriptionInfo {
	in := st.sub.Info()
	out := SubscriptionInfo{Stream: stream, Config: st.cfg, Backlog: in.Backlog, InFlight: in.InFlight,
		Waiting: in.Waiting, Delayed: in.Delayed, Held: in.Held, Parked: in.Parked, DeadLettered: in.DeadLettered}
	if in.HasNextDue {
		out.NextDue = time.UnixMilli(in.NextDue)
	}
	out.Redeliveries = in.Redeliveries
	if st.cfg.Mode == PartitionedMode {
		ms, gen := st.sub.Members()
		out.Generation = gen
		for _, m := range ms {
			out.Members = append(out.Members, GroupMember{Name: m.Name, Partitions: m.Partitions, LastSeen: time.UnixMilli(m.LastSeen)})
		}
	}
	if in.HasOldest {
		out.OldestUnsettled = time.UnixMilli(in.OldestUnsettled)
	}
	for i, p := range in.Partitions {
		out.Partitions = append(out.Partitions, SubscriptionPartition{ID: i, Floor: p.Floor, Next: p.Next, Backlog: p.Backlog})
	}
	return out
}

// SeekSubscription moves a subscription, in every partition, to a position:
// everything before it counts as done and everything from it on is delivered
// anew. Deliveries in flight lose their leases. AtOffset applies the same offset to
// every partition; AtTime finds each partition's first message at or after it.
func (b *Broker) SeekSubscription(ctx context.Context, streamName, name string, to StartAt) error {
	st, err := b.lookupSub(streamName, name)
	if err != nil {
		return err
	}
	s, err := b.acquire(streamName)
	if err != nil {
		return err
	}
	parts := append([]logstore.Log(nil), s.parts...)
	s.mu.RUnlock()
	for i, p := range parts {
		var off int64
		switch to.kind {
		case startEarliest:
			off = p.StartOffset()
		case startLatest:
			off = p.HighWatermark()
		case startOffset:
			off = to.offset
		case startTime:
			if off, err = p.OffsetForTime(to.time); err != nil {
				return fmt.Errorf("sluice: seek %s/%s: %w", streamName, name, err)
			}
		}
		if err := st.sub.Seek(ctx, i, off); err != nil {
			return fmt.Errorf("sluice: seek %s/%s partition %d: %w", streamName, name, i, toInvalid(err))
		}
	}
	return nil
}

// ParkedKey is a key whose oldest pending message failed and waits for its retry,
// with the later messages of the key waiting behind it (KeyOrderedMode).
type ParkedKey = subscription.ParkedKey

// MaxParkedKeysList bounds ParkedKeys.
const MaxParkedKeysList = 10000

// ParkedKeys lists up to limit parked keys of a subscription.
func (b *Broker) ParkedKeys(ctx context.Context, streamName, name string, limit int) ([]ParkedKey, error) {
	if limit < 1 || limit > MaxParkedKeysList {
		return nil, invalid("limit", "%d outside [1, %d]", limit, MaxParkedKeysList)
	}
	st, err := b.lookupSub(streamName, name)
	if err != nil {
		return nil, err
	}
	return st.sub.ParkedKeys(limit), nil
}

// GroupMember is a consumer in a PartitionedMode subscription's group.
type GroupMember struct {
	Name       string    `json:"name"`
	Partitions []int     `json:"partitions"`
	LastSeen   time.Time `json:"last_seen"`
}
