package sluice

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/subscription"
)

// SyncPolicy says when a published message is acknowledged relative to fsync.
type SyncPolicy string

const (
	// SyncAlways acknowledges a publish only after fdatasync: an acknowledged message
	// survives kill -9 and power loss. The default.
	SyncAlways SyncPolicy = "always"
	// SyncInterval acknowledges after the write and syncs every SyncInterval. An
	// acknowledged message survives kill -9 of the broker, but a power failure loses
	// up to one interval of acknowledged messages.
	SyncInterval SyncPolicy = "interval"
	// SyncNever acknowledges after the write and never syncs (except on Close). For
	// throwaway data and tests.
	SyncNever SyncPolicy = "never"
)

// Limits and defaults of StreamConfig.
const (
	MaxStreamNameLen       = 128
	DefaultPartitions      = 1
	MaxPartitions          = 1024
	DefaultMaxMessageBytes = 1 << 20
	MaxMessageBytesCeiling = 16 << 20
	DefaultSegmentBytes    = logstore.DefaultSegmentBytes
	DefaultSyncInterval    = logstore.DefaultSyncInterval

	// DefaultMaxMessages and DefaultMaxBytes bound each partition of a stream that
	// sets no bound of its own; a stream is never unbounded.
	DefaultMaxMessages = 10_000_000
	DefaultMaxBytes    = 1 << 30
	// MaxMaxMessages and MaxMaxBytes are the highest bounds a stream may set.
	MaxMaxMessages = 1 << 40
	MaxMaxBytes    = 1 << 40
	// DefaultBlockTimeout is how long a publish to a full stream under OverflowBlock
	// waits for room; MaxBlockTimeout bounds it.
	DefaultBlockTimeout = 5 * time.Second
	MaxBlockTimeout     = 5 * time.Minute
	// DefaultDedupeWindow is how long a stream remembers an idempotency key;
	// MinDedupeWindow and MaxDedupeWindow bound it.
	DefaultDedupeWindow = 10 * time.Minute
	MinDedupeWindow     = time.Second
	MaxDedupeWindow     = 30 * 24 * time.Hour
	// DefaultDedupeMaxKeys bounds the idempotency keys a stream holds (about 42
	// bytes of memory each); MaxDedupeMaxKeys bounds the bound.
	DefaultDedupeMaxKeys = 1_000_000
	MaxDedupeMaxKeys     = 100_000_000
)

// OverflowPolicy says what a publish does when a partition is at its bound.
type OverflowPolicy string

const (
	// OverflowReject fails the publish at once with a *StreamFullError (matching
	// ErrStreamFull): nothing is stored, and the producer may retry after its
	// RetryAfter hint. Load is shed at the door. The default.
	OverflowReject OverflowPolicy = "reject"
	// OverflowBlock makes the publish wait up to BlockTimeout for room, then fail
	// as OverflowReject does. The producer slows down to the consumers' pace.
	OverflowBlock OverflowPolicy = "block"
	// OverflowDropOldest removes the oldest messages (whole segments) to make room:
	// publishes never fail for room, and messages nobody consumed yet may be lost;
	// StreamInfo.Counters.Dropped counts them. Only with RetainLimits.
	OverflowDropOldest OverflowPolicy = "drop_oldest"
)

// StreamConfig configures a stream. Zero fields take their defaults.
type StreamConfig struct {
	// Name is 1..MaxStreamNameLen characters of [A-Za-z0-9._-], starting with a
	// letter or digit. Required; cannot change.
	Name string `json:"name"`
	// Partitions is the number of partitions. Default 1; limits [1, MaxPartitions].
	// UpdateStream may raise it, never lower it (that would lose data and break
	// key order).
	Partitions int `json:"partitions"`
	// Retention says when messages are removed (by age, or once settled).
	// Updatable.
	Retention Retention `json:"retention"`
	// MaxMessages bounds the messages each partition holds: all it stores under
	// RetainLimits, those not yet settled by every subscription under RetainWork
	// (so room frees as messages are acknowledged). Default DefaultMaxMessages
	// (10 million); limits [1, MaxMaxMessages]. Updatable.
	MaxMessages int64 `json:"max_messages"`
	// MaxBytes bounds the bytes each partition's log holds. Space is reclaimed a
	// whole segment at a time (under RetainWork, segments whose messages every
	// subscription settled), so it must hold at least two segments. Default
	// DefaultMaxBytes (1 GiB); limits [2*SegmentBytes, MaxMaxBytes]. Updatable.
	MaxBytes int64 `json:"max_bytes"`
	// Overflow is what a publish does when its partition is at MaxMessages or
	// MaxBytes. Default OverflowReject. Updatable.
	Overflow OverflowPolicy `json:"overflow"`
	// BlockTimeout is how long a publish waits for room under OverflowBlock.
	// Default 5 s; limits [1 ms, MaxBlockTimeout = 5 min]. Updatable.
	BlockTimeout time.Duration `json:"block_timeout"`
	// DedupeWindow is how long the stream remembers a message's IdempotencyKey,
	// counted from the message's time; a publish with a key seen within it is
	// answered with the original position. It survives restarts and crashes.
	// Default 10 min; limits [1 s, 30 days]. Updatable.
	DedupeWindow time.Duration `json:"dedupe_window"`
	// DedupeMaxKeys bounds the idempotency keys the stream holds in memory (about
	// 42 bytes each). When it is full the oldest key is forgotten before its
	// window passed, and StreamInfo.Counters.DedupeEvicted counts it. From 65,536
	// keys the index is split in 16 shards, each with a sixteenth of the bound, so
	// "oldest" is then per shard. Default
	// 1 million; limits [1, MaxDedupeMaxKeys]. Updatable.
	DedupeMaxKeys int `json:"dedupe_max_keys"`
	// MaxMessageBytes bounds key + body + headers of one message. Default 1 MiB;
	// limits [1, MaxMessageBytesCeiling = 16 MiB]. Updatable.
	MaxMessageBytes int `json:"max_message_bytes"`
	// Sync is the fsync policy. Default SyncAlways. Fixed at creation.
	Sync SyncPolicy `json:"sync"`
	// SyncInterval is the period of SyncInterval. Default 100 ms; limits [1 ms, 1 min].
	// Fixed at creation.
	SyncInterval time.Duration `json:"sync_interval"`
	// SegmentBytes is the size at which a partition's segment file rolls. Default
	// 128 MiB, or MaxBytes/8 when that is smaller; limits [4 KiB, 1 GiB]. Fixed at
	// creation.
	SegmentBytes int64 `json:"segment_bytes"`
}

// RetentionPolicy says when messages may be removed besides the bounds.
type RetentionPolicy string

const (
	// RetainLimits keeps messages until the age, size or count bounds remove them,
	// whatever subscriptions did with them: a log that can be replayed. The default.
	RetainLimits RetentionPolicy = "limits"
	// RetainWork also removes messages once every subscription of the stream has
	// settled them (acknowledged or dead-lettered): a work queue whose space is
	// reclaimed as work is done. Whole segments are removed, so up to a segment of
	// settled messages stays. A stream without subscriptions keeps its messages.
	RetainWork RetentionPolicy = "work"
)

// Retention says when a stream removes messages besides its bounds.
type Retention struct {
	// Policy is RetainLimits (the default) or RetainWork.
	Policy RetentionPolicy `json:"policy,omitempty"`
	// MaxAge removes a segment once its newest message is older. Zero keeps
	// messages whatever their age.
	MaxAge time.Duration `json:"max_age"`
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Sync == "" {
		c.Sync = SyncAlways
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Overflow == "" {
		c.Overflow = OverflowReject
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.DedupeMaxKeys == 0 {
		c.DedupeMaxKeys = DefaultDedupeMaxKeys
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = min(DefaultSegmentBytes, max(c.MaxBytes/8, logstore.MinSegmentBytes))
	}
	return c
}

func validName(s string) bool { return subscription.ValidName(s, MaxStreamNameLen) }

// Validate checks every field against its limits; zero fields count as their
// defaults.
func (c StreamConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case !validName(d.Name):
		return invalid("StreamConfig.Name", "%q must be 1..%d characters of [A-Za-z0-9._-] starting with a letter or digit", d.Name, MaxStreamNameLen)
	case d.Partitions < 1 || d.Partitions > MaxPartitions:
		return invalid("StreamConfig.Partitions", "%d outside [1, MaxPartitions=%d]", d.Partitions, MaxPartitions)
	case d.Retention.Policy != "" && d.Retention.Policy != RetainLimits && d.Retention.Policy != RetainWork:
		return invalid("StreamConfig.Retention.Policy", "%q is not one of limits, work", d.Retention.Policy)
	case d.Retention.MaxAge < 0:
		return invalid("StreamConfig.Retention.MaxAge", "%v is negative", d.Retention.MaxAge)
	case d.MaxMessages < 1 || d.MaxMessages > MaxMaxMessages:
		return invalid("StreamConfig.MaxMessages", "%d outside [1, MaxMaxMessages=%d]", d.MaxMessages, int64(MaxMaxMessages))
	case d.MaxBytes < 1 || d.MaxBytes > MaxMaxBytes:
		return invalid("StreamConfig.MaxBytes", "%d outside [1, MaxMaxBytes=%d]", d.MaxBytes, int64(MaxMaxBytes))
	case d.Overflow != OverflowReject && d.Overflow != OverflowBlock && d.Overflow != OverflowDropOldest:
		return invalid("StreamConfig.Overflow", "%q is not one of reject, block, drop_oldest", d.Overflow)
	case d.Overflow == OverflowDropOldest && d.Retention.Policy == RetainWork:
		return invalid("StreamConfig.Overflow", "drop_oldest would drop unfinished work: only for Retention.Policy limits")
	case d.BlockTimeout < time.Millisecond || d.BlockTimeout > MaxBlockTimeout:
		return invalid("StreamConfig.BlockTimeout", "%v outside [1ms, MaxBlockTimeout=%v]", d.BlockTimeout, MaxBlockTimeout)
	case d.DedupeWindow < MinDedupeWindow || d.DedupeWindow > MaxDedupeWindow:
		return invalid("StreamConfig.DedupeWindow", "%v outside [MinDedupeWindow=%v, MaxDedupeWindow=%v]", d.DedupeWindow, MinDedupeWindow, MaxDedupeWindow)
	case d.DedupeMaxKeys < 1 || d.DedupeMaxKeys > MaxDedupeMaxKeys:
		return invalid("StreamConfig.DedupeMaxKeys", "%d outside [1, MaxDedupeMaxKeys=%d]", d.DedupeMaxKeys, MaxDedupeMaxKeys)
	case d.MaxMessageBytes < 1 || d.MaxMessageBytes > MaxMessageBytesCeiling:
		return invalid("StreamConfig.MaxMessageBytes", "%d outside [1, %d]", d.MaxMessageBytes, MaxMessageBytesCeiling)
	case d.Sync != SyncAlways && d.Sync != SyncInterval && d.Sync != SyncNever:
		return invalid("StreamConfig.Sync", "%q is not one of always, interval, never", d.Sync)
	case d.SyncInterval < time.Millisecond || d.SyncInterval > time.Minute:
		return invalid("StreamConfig.SyncInterval", "%v outside [1ms, 1m]", d.SyncInterval)
	case d.SegmentBytes < logstore.MinSegmentBytes || d.SegmentBytes > logstore.MaxSegmentBytes:
		return invalid("StreamConfig.SegmentBytes", "%d outside [%d, %d]", d.SegmentBytes, logstore.MinSegmentBytes, logstore.MaxSegmentBytes)
	case d.MaxBytes < 2*d.SegmentBytes:
		return invalid("StreamConfig.MaxBytes", "%d holds less than two segments of SegmentBytes=%d: space is reclaimed a segment at a time", d.MaxBytes, d.SegmentBytes)
	}
	return nil
}

func (c StreamConfig) syncPolicy() logstore.SyncPolicy {
	switch c.Sync {
	case SyncInterval:
		return logstore.SyncInterval
	case SyncNever:
		return logstore.SyncNever
	}
	return logstore.SyncAlways
}

func (r Retention) internal() logstore.Retention {
	// Policy is applied by the broker (DoneBefore), and the bounds by publishes.
	return logstore.Retention{MaxAge: r.MaxAge}
}

// StreamInfo describes a stream and its partitions.
type StreamInfo struct {
	Config     StreamConfig    `json:"config"`
	Partitions []PartitionInfo `json:"partitions"`
	// Messages and Bytes are totals over the partitions.
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
	// Counters count backpressure and deduplication since the broker started.
	Counters StreamCounters `json:"counters"`
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	ID int `json:"id"`
	// StartOffset is the first offset still stored; HighWatermark the offset the
	// next message will get. They are equal when the partition is empty.
	StartOffset   int64 `json:"start_offset"`
	HighWatermark int64 `json:"high_watermark"`
	Bytes         int64 `json:"bytes"`
	Segments      int   `json:"segments"`
}

// streamMeta is the on-disk form of a stream's configuration.
type streamMeta struct {
	Version int          `json:"version"`
	Config  StreamConfig `json:"config"`
}

const streamMetaVersion = 1

func encodeStreamFile(c StreamConfig) []byte {
	b, err := json.MarshalIndent(streamMeta{Version: streamMetaVersion, Config: c}, "", "  ")
	if err != nil {
		panic(err) // plain struct: cannot fail
	}
	return append(b, '\n')
}

func decodeStreamFile(b []byte) (StreamConfig, error) {
	var f streamMeta
	if err := json.Unmarshal(b, &f); err != nil {
		return StreamConfig{}, err
	}
	if f.Version != streamMetaVersion {
		return StreamConfig{}, fmt.Errorf("stream file version %d, want %d", f.Version, streamMetaVersion)
	}
	if err := f.Config.Validate(); err != nil {
		return StreamConfig{}, err
	}
	return f.Config.withDefaults(), nil
}
