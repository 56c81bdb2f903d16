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
	// Retention bounds what the stream keeps. Zero fields are no bound. Whole
	// segments are removed, oldest first, so a partition keeps up to one segment
	// more than the bound. Updatable.
	Retention Retention `json:"retention"`
	// MaxMessageBytes bounds key + body + headers of one message. Default 1 MiB;
	// limits [1, MaxMessageBytesCeiling = 16 MiB]. Updatable.
	MaxMessageBytes int `json:"max_message_bytes"`
	// Sync is the fsync policy. Default SyncAlways. Fixed at creation.
	Sync SyncPolicy `json:"sync"`
	// SyncInterval is the period of SyncInterval. Default 100 ms; limits [1 ms, 1 min].
	// Fixed at creation.
	SyncInterval time.Duration `json:"sync_interval"`
	// SegmentBytes is the size at which a partition's segment file rolls. Default
	// 128 MiB; limits [4 KiB, 1 GiB]. Fixed at creation.
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

// Retention bounds what a stream keeps, per partition for bytes and messages.
type Retention struct {
	Policy      RetentionPolicy `json:"policy,omitempty"`
	MaxAge      time.Duration   `json:"max_age"`
	MaxBytes    int64           `json:"max_bytes"`
	MaxMessages int64           `json:"max_messages"`
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
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
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
	case d.Retention.MaxBytes < 0:
		return invalid("StreamConfig.Retention.MaxBytes", "%d is negative", d.Retention.MaxBytes)
	case d.Retention.MaxMessages < 0:
		return invalid("StreamConfig.Retention.MaxMessages", "%d is negative", d.Retention.MaxMessages)
	case d.MaxMessageBytes < 1 || d.MaxMessageBytes > MaxMessageBytesCeiling:
		return invalid("StreamConfig.MaxMessageBytes", "%d outside [1, %d]", d.MaxMessageBytes, MaxMessageBytesCeiling)
	case d.Sync != SyncAlways && d.Sync != SyncInterval && d.Sync != SyncNever:
		return invalid("StreamConfig.Sync", "%q is not one of always, interval, never", d.Sync)
	case d.SyncInterval < time.Millisecond || d.SyncInterval > time.Minute:
		return invalid("StreamConfig.SyncInterval", "%v outside [1ms, 1m]", d.SyncInterval)
	case d.SegmentBytes < logstore.MinSegmentBytes || d.SegmentBytes > logstore.MaxSegmentBytes:
		return invalid("StreamConfig.SegmentBytes", "%d outside [%d, %d]", d.SegmentBytes, logstore.MinSegmentBytes, logstore.MaxSegmentBytes)
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
	// Policy is applied by the broker (DoneBefore), not by the log.
	return logstore.Retention{MaxAge: r.MaxAge, MaxBytes: r.MaxBytes, MaxMessages: r.MaxMessages}
}

// StreamInfo describes a stream and its partitions.
type StreamInfo struct {
	Config     StreamConfig    `json:"config"`
	Partitions []PartitionInfo `json:"partitions"`
	// Messages and Bytes are totals over the partitions.
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
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
