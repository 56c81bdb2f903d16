package sluice

import "context"

// Client is the whole API of sluice. *Broker implements it in-process; the network
// client implements it against a server, so code written against one runs
// unchanged against the other.
type Client interface {
	// CreateStream creates a stream; zero config fields take their defaults.
	CreateStream(ctx context.Context, cfg StreamConfig) (StreamInfo, error)
	// UpdateStream changes a stream's updatable fields.
	UpdateStream(ctx context.Context, cfg StreamConfig) (StreamInfo, error)
	// DeleteStream deletes a stream and its messages.
	DeleteStream(ctx context.Context, name string) error
	// ListStreams lists every stream.
	ListStreams(ctx context.Context) ([]StreamInfo, error)
	// Stream describes one stream.
	Stream(ctx context.Context, name string) (StreamInfo, error)
	// Publish stores one message and returns where, once it is durable.
	Publish(ctx context.Context, stream string, msg Message) (Position, error)
	// PublishBatch stores messages, one atomic batch per partition.
	PublishBatch(ctx context.Context, stream string, msgs []Message) ([]Position, error)
	// NewReader opens a reader on one partition of a stream.
	NewReader(ctx context.Context, stream string, cfg ReaderConfig) (Reader, error)
	// SubscribeLive opens a live, non-durable subscription to every partition.
	SubscribeLive(ctx context.Context, stream string, cfg LiveConfig) (Reader, error)
	// CreateSubscription creates a durable subscription (and its dead-letter
	// stream) on a stream.
	CreateSubscription(ctx context.Context, stream string, cfg SubscriptionConfig) (SubscriptionInfo, error)
	// DeleteSubscription deletes a subscription and its state.
	DeleteSubscription(ctx context.Context, stream, name string) error
	// ListSubscriptions lists a stream's subscriptions.
	ListSubscriptions(ctx context.Context, stream string) ([]SubscriptionInfo, error)
	// Subscription describes one subscription and its progress.
	Subscription(ctx context.Context, stream, name string) (SubscriptionInfo, error)
	// SeekSubscription moves a subscription to a position in every partition.
	SeekSubscription(ctx context.Context, stream, name string, to StartAt) error
	// ParkedKeys lists a key_ordered subscription's parked keys.
	ParkedKeys(ctx context.Context, stream, subscription string, limit int) ([]ParkedKey, error)
	// DeadLetters lists a subscription's dead letters.
	DeadLetters(ctx context.Context, stream, subscription string, q DeadLetterQuery) ([]DeadLetter, int64, error)
	// DeadLetter shows one dead letter.
	DeadLetter(ctx context.Context, stream, subscription string, offset int64) (DeadLetter, error)
	// RedriveDeadLetters puts dead letters back into their subscription.
	RedriveDeadLetters(ctx context.Context, stream, subscription string, opts RedriveOptions) (int, int64, error)
	// PurgeDeadLetters discards a subscription's dead letters.
	PurgeDeadLetters(ctx context.Context, stream, subscription string) (int64, error)
	// NewConsumer opens a consumer on a subscription.
	NewConsumer(ctx context.Context, stream, subscription string, cfg ConsumerConfig) (Consumer, error)
	// CreateSchedule creates a schedule that publishes a message periodically.
	CreateSchedule(ctx context.Context, cfg ScheduleConfig) (ScheduleInfo, error)
	// PauseSchedule pauses or resumes a schedule.
	PauseSchedule(ctx context.Context, name string, paused bool) (ScheduleInfo, error)
	// DeleteSchedule removes a schedule.
	DeleteSchedule(ctx context.Context, name string) error
	// ListSchedules lists every schedule with its next fire time.
	ListSchedules(ctx context.Context) ([]ScheduleInfo, error)
	// Close releases the client (for *Broker: stops the broker).
	Close() error
}

// Reader reads one partition in offset order and follows its tail.
type Reader interface {
	// Next returns the next record, waiting for one to be published if the reader
	// is at the end, until ctx ends.
	Next(ctx context.Context) (Record, error)
	// Offset is the offset of the record Next will return.
	Offset() int64
	// Close releases the reader.
	Close() error
}
