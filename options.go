package sluice

import (
	"log/slog"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// Limits and defaults of Options.
const (
	DefaultMaxStreams        = 1000
	MaxMaxStreams            = 100000
	DefaultRetentionInterval = 30 * time.Second
)

// Options configures Open. A nil *Options means all defaults.
type Options struct {
	// Logger receives recovery, corruption and retention reports. Default
	// slog.Default().
	Logger *slog.Logger
	// MaxStreams bounds the number of streams. Default 1000; limits [1, 100000].
	MaxStreams int
	// RetentionInterval is how often retention bounds are enforced. Default 30 s;
	// limits [10 ms, 1 h].
	RetentionInterval time.Duration
	// OnSync, when set, is told how long each fdatasync of a stream's appended
	// data took: the hook of an fsync latency metric. It must not block.
	OnSync func(time.Duration)

	// fs and now are replaced by tests.
	fs  vfs.FS
	now func() time.Time
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.MaxStreams == 0 {
		out.MaxStreams = DefaultMaxStreams
	}
	if out.RetentionInterval == 0 {
		out.RetentionInterval = DefaultRetentionInterval
	}
	if out.fs == nil {
		out.fs = vfs.OS{}
	}
	if out.now == nil {
		out.now = time.Now
	}
	return out
}

// Validate checks every field against its limits.
func (o *Options) Validate() error {
	d := o.withDefaults()
	switch {
	case d.MaxStreams < 1 || d.MaxStreams > MaxMaxStreams:
		return invalid("Options.MaxStreams", "%d outside [1, %d]", d.MaxStreams, MaxMaxStreams)
	case d.RetentionInterval < 10*time.Millisecond || d.RetentionInterval > time.Hour:
		return invalid("Options.RetentionInterval", "%v outside [10ms, 1h]", d.RetentionInterval)
	}
	return nil
}
