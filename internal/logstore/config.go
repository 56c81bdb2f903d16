package logstore

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// SyncPolicy says when appended data is synced to disk and when a publisher is told
// its batch is stored.
type SyncPolicy int

const (
	// SyncAlways acknowledges only after fdatasync. The default.
	SyncAlways SyncPolicy = iota
	// SyncInterval acknowledges after the write and syncs every SyncInterval: a power
	// failure loses what was acknowledged in the last interval (a process crash does not).
	SyncInterval
	// SyncNever acknowledges after the write and never syncs until Close.
	SyncNever
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Limits and defaults of Config.
const (
	DefaultSegmentBytes  = 128 << 20
	MinSegmentBytes      = 4 << 10
	MaxSegmentBytes      = 1 << 30
	DefaultIndexInterval = 4 << 10
	DefaultSyncInterval  = 100 * time.Millisecond
	// MaxGroupBytes bounds the bytes one group commit writes.
	MaxGroupBytes = 8 << 20
	// MaxGroupRequests bounds the publish requests one group commit acknowledges.
	MaxGroupRequests = 4096
	// QueueDepth bounds the publish requests waiting for the writer; publishers
	// beyond it wait in Append (until their context ends).
	QueueDepth = 4096
)

// Config configures one partition log.
type Config struct {
	// Dir is the partition's directory; it is created if missing. Required.
	Dir string
	// FS is the file system. Default vfs.OS{}.
	FS vfs.FS
	// SegmentBytes is the size at which a segment rolls. Default 128 MiB; limits
	// [MinSegmentBytes, MaxSegmentBytes].
	SegmentBytes int64
	// IndexIntervalBytes is the spacing of index entries. Default 4 KiB; limits
	// [64, SegmentBytes].
	IndexIntervalBytes int64
	// Sync is the sync policy. Default SyncAlways.
	Sync SyncPolicy
	// SyncInterval is the period of SyncInterval. Default 100 ms; limits [1 ms, 1 min].
	SyncInterval time.Duration
	// Logger receives recovery and corruption reports. Default slog.Default().
	Logger *slog.Logger
	// OnSync, when set, is told how long each fdatasync of appended data took
	// (a metric's hook; it must not block).
	OnSync func(time.Duration)

	// ackBeforeSync makes SyncAlways acknowledge before the sync: a deliberately
	// broken engine that the crash tests must catch. Tests only.
	ackBeforeSync bool
	// zeroLengthEnds makes recovery take a batch length field of zero as the clean
	// end of the active segment without checking that every byte after it is
	// zero: a deliberately broken engine that keeps stale bytes. Tests only.
	zeroLengthEnds bool
	// prezeroNoSync makes prezero skip the sync of the zeros, so that the next
	// group's fdatasync pays for the file's growth after all. Tests only.
	prezeroNoSync bool
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.FS == nil {
		out.FS = vfs.OS{}
	}
	if out.SegmentBytes == 0 {
		out.SegmentBytes = DefaultSegmentBytes
	}
	if out.IndexIntervalBytes == 0 {
		out.IndexIntervalBytes = DefaultIndexInterval
	}
	if out.SyncInterval == 0 {
		out.SyncInterval = DefaultSyncInterval
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// Validate checks every field against its limits.
func (c *Config) Validate() error {
	d := c.withDefaults()
	switch {
	case d.Dir == "":
		return fmt.Errorf("logstore: Dir is required")
	case d.SegmentBytes < MinSegmentBytes || d.SegmentBytes > MaxSegmentBytes:
		return fmt.Errorf("logstore: SegmentBytes %d outside [%d, %d]", d.SegmentBytes, MinSegmentBytes, MaxSegmentBytes)
	case d.IndexIntervalBytes < 64 || d.IndexIntervalBytes > d.SegmentBytes:
		return fmt.Errorf("logstore: IndexIntervalBytes %d outside [64, SegmentBytes=%d]", d.IndexIntervalBytes, d.SegmentBytes)
	case d.Sync < SyncAlways || d.Sync > SyncNever:
		return fmt.Errorf("logstore: unknown Sync policy %d", d.Sync)
	case d.SyncInterval < time.Millisecond || d.SyncInterval > time.Minute:
		return fmt.Errorf("logstore: SyncInterval %v outside [1ms, 1m]", d.SyncInterval)
	}
	return nil
}
