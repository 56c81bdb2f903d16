package drill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sluicemq/sluice"
)

// Figure is one measured number of a live run.
type Figure struct {
	// Name says what was measured, e.g. "caller p99 inline".
	Name  string
	Value float64
	// Unit is one of "ms", "msg", "msg/s", "count", "s".
	Unit string
}

// Kinds of Event.
const (
	// KindStep is a heading: what happens next.
	KindStep = "step"
	// KindInfo is an observation.
	KindInfo = "info"
	// KindFigures is Text followed by measured Figures.
	KindFigures = "figures"
	// KindDone is the conclusion, the last event of a run that succeeded.
	KindDone = "done"
)

// Event is one line of a live run, in order.
type Event struct {
	// Kind is KindStep, KindInfo, KindFigures or KindDone.
	Kind    string
	Text    string
	Figures []Figure
}

// MaxPrefixLen bounds Options.Prefix, so that every name a run derives from it
// (dead-letter streams included) stays within sluice.MaxStreamNameLen.
const MaxPrefixLen = 64

// Options configures Run.
type Options struct {
	// Prefix names the scratch streams: every stream the run creates is named
	// Prefix + "-" + something, and is deleted when the run ends (also on error
	// or cancellation, with a fresh short context). Required: 1 to MaxPrefixLen
	// characters of [A-Za-z0-9._-], starting with a letter or a digit.
	Prefix string
	// Dir is a directory for files the run needs (the ProcessedLog of drill 2);
	// the run creates a subdirectory there and removes it at the end. Required
	// for drill 2, unused by the others.
	Dir string
}

// cleanupTimeout bounds the deletion of a run's streams, which runs on a
// context of its own so that it happens after a cancellation too.
const cleanupTimeout = 10 * time.Second

// Run runs drill n's live scenario against c and calls emit for each event, in
// order, always from the calling goroutine. It returns when the scenario ends,
// or when ctx ends (with ctx's error); every wait inside has a deadline. The
// streams it created are deleted before it returns. An invalid n or Options
// is reported before anything is created: ErrNoDrill, or a *sluice.InvalidError.
func Run(ctx context.Context, c sluice.Client, n int, opts Options, emit func(Event)) (err error) {
	if n < 1 || n > len(drills) {
		return &noDrillError{n}
	}
	if err := opts.validate(n); err != nil {
		return err
	}
	if emit == nil {
		emit = func(Event) {}
	}
	s := &scratch{c: c, prefix: opts.Prefix}
	defer func() {
		if cerr := s.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	r := &run{ctx: ctx, s: s, emit: emit, opts: opts}
	switch n {
	case 1:
		err = r.queueOrNot()
	case 2:
		err = r.exactlyOnce()
	case 3:
		err = r.poison()
	default:
		err = r.taskQueueOrLog()
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (o Options) validate(n int) error {
	if !validPrefix(o.Prefix) {
		return &sluice.InvalidError{Field: "Options.Prefix", Reason: fmt.Sprintf(
			"%q must be 1 to %d characters of [A-Za-z0-9._-], starting with a letter or a digit", o.Prefix, MaxPrefixLen)}
	}
	if n == 2 && o.Dir == "" {
		return &sluice.InvalidError{Field: "Options.Dir", Reason: "drill 2 needs a directory for its ProcessedLog"}
	}
	return nil
}

func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > MaxPrefixLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// run is one Run's state: what the scenarios share.
type run struct {
	ctx  context.Context
	s    *scratch
	emit func(Event)
	opts Options
}

func (r *run) step(format string, a ...any) {
	r.emit(Event{Kind: KindStep, Text: fmt.Sprintf(format, a...)})
}

func (r *run) info(format string, a ...any) {
	r.emit(Event{Kind: KindInfo, Text: fmt.Sprintf(format, a...)})
}

func (r *run) figures(text string, fs ...Figure) {
	r.emit(Event{Kind: KindFigures, Text: text, Figures: fs})
}

func (r *run) done(format string, a ...any) {
	r.emit(Event{Kind: KindDone, Text: fmt.Sprintf(format, a...)})
}

// Scratch streams are small: MaxMessages per partition, segments of
// scratchSegment bytes (which also bounds the zeros a partition preallocates).
const (
	scratchMaxMessages = 5000
	scratchSegment     = 256 << 10
	scratchMaxBytes    = 16 * scratchSegment
)

// scratch creates a run's streams and consumers and removes them at the end.
type scratch struct {
	c         sluice.Client
	prefix    string
	streams   []string // in creation order
	consumers []sluice.Consumer
	closers   []func() error // run last, after the streams are deleted
}

// name returns the scratch name of suffix.
func (s *scratch) name(suffix string) string { return s.prefix + "-" + suffix }

// stream creates the stream Prefix-suffix with small bounds and returns its
// name.
func (s *scratch) stream(ctx context.Context, suffix string, partitions int) (string, error) {
	name := s.name(suffix)
	if err := s.create(ctx, sluice.StreamConfig{Name: name, Partitions: partitions}); err != nil {
		return "", err
	}
	return name, nil
}

// create creates a stream with the scratch bounds; it is deleted at the end.
func (s *scratch) create(ctx context.Context, cfg sluice.StreamConfig) error {
	cfg.MaxMessages, cfg.MaxBytes, cfg.SegmentBytes = scratchMaxMessages, scratchMaxBytes, scratchSegment
	cfg.DedupeMaxKeys = scratchMaxMessages
	cfg.Sync = sluice.SyncAlways
	if _, err := s.c.CreateStream(ctx, cfg); err != nil {
		return fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	s.streams = append(s.streams, cfg.Name)
	return nil
}

// subscription creates a subscription on stream, and first its dead-letter
// stream "<stream>.<name>.dlq" with the scratch bounds (the default one holds
// up to 1 GiB).
func (s *scratch) subscription(ctx context.Context, stream string, cfg sluice.SubscriptionConfig) error {
	cfg.DeadLetterStream = stream + "." + cfg.Name + sluice.DeadLetterSuffix
	if err := s.create(ctx, sluice.StreamConfig{Name: cfg.DeadLetterStream, Overflow: sluice.OverflowDropOldest}); err != nil {
		return err
	}
	if _, err := s.c.CreateSubscription(ctx, stream, cfg); err != nil {
		return fmt.Errorf("create subscription %s on %s: %w", cfg.Name, stream, err)
	}
	return nil
}

// consumer opens a consumer; it is closed at the end if the scenario has not.
func (s *scratch) consumer(ctx context.Context, stream, sub, name string, maxInFlight int) (sluice.Consumer, error) {
	cons, err := s.c.NewConsumer(ctx, stream, sub, sluice.ConsumerConfig{Name: name, MaxInFlight: maxInFlight})
	if err != nil {
		return nil, fmt.Errorf("open consumer %s on %s/%s: %w", name, stream, sub, err)
	}
	s.consumers = append(s.consumers, cons)
	return cons, nil
}

// cleanup closes the consumers and deletes the streams, newest first, on a
// context of its own; then it runs the closers.
func (s *scratch) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, c := range s.consumers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.consumers = nil
	for _, name := range slices.Backward(s.streams) {
		if err := s.c.DeleteStream(ctx, name); err != nil && !errors.Is(err, sluice.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("delete stream %s: %w", name, err))
		}
	}
	s.streams = nil
	for _, f := range slices.Backward(s.closers) {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// pause waits d, or until ctx ends: the simulated work of a handler or a
// downstream.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor waits until ch is closed, ctx ends or timeout passes; what names
// what was waited for in the error.
func waitFor(ctx context.Context, ch <-chan struct{}, timeout time.Duration, what string) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("drill: %s: not within %v", what, timeout)
	}
}

// poll calls cond every interval until it returns true or an error, ctx ends,
// or timeout passes.
func poll(ctx context.Context, interval, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drill: %s: not within %v", what, timeout)
		}
		if err := pause(ctx, interval); err != nil {
			return err
		}
	}
}

// ms is d in milliseconds, to a tenth.
func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }

// seconds is d in seconds, to a hundredth.
func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*100) / 100 }

// percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method, 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// rate is n per second over d, rounded.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n) / d.Seconds())
}
