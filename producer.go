package sluice

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// ErrUnavailable is matched by errors that leave a publish's outcome unknown: the
// request may or may not have been stored (a lost connection, a timeout). The
// network client wraps its transport errors with it. A Producer retries such a
// publish only when the message carries an IdempotencyKey.
var ErrUnavailable = errors.New("sluice: broker unavailable, outcome unknown")

// ErrTooManyInFlight is returned by a Producer with NoWait when MaxInFlight
// publishes are outstanding.
var ErrTooManyInFlight = errors.New("sluice: too many publishes in flight")

// Limits and defaults of ProducerConfig.
const (
	DefaultProducerInFlight = 1000
	MaxProducerInFlight     = 100_000
	DefaultMaxAttempts      = 5
	MaxMaxAttempts          = 100
	DefaultAttemptTimeout   = 10 * time.Second
	MaxAttemptTimeout       = 5 * time.Minute
	DefaultRetryInitial     = 50 * time.Millisecond
	DefaultRetryMax         = 5 * time.Second
	MaxRetryBackoff         = time.Minute
)

// ProducerConfig configures a Producer. Zero fields take their defaults.
type ProducerConfig struct {
	// MaxInFlight bounds the publishes outstanding at once; a Publish beyond it
	// waits for a slot (or fails with ErrTooManyInFlight under NoWait), so a
	// producer never queues without limit. Default 1000; limits [1, 100000].
	MaxInFlight int
	// NoWait makes Publish fail at once instead of waiting for a slot.
	NoWait bool
	// MaxAttempts bounds the attempts of one Publish. Default 5; limits [1, 100].
	MaxAttempts int
	// AttemptTimeout bounds one attempt; an attempt that times out has an unknown
	// outcome. Default 10 s; limits [1 ms, 5 min].
	AttemptTimeout time.Duration
	// RetryInitial and RetryMax shape the wait between attempts: exponential with
	// jitter, and at least a refused publish's RetryAfter hint (up to RetryMax).
	// Defaults 50 ms and 5 s; limits [1 ms, 1 min].
	RetryInitial time.Duration
	RetryMax     time.Duration
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultProducerInFlight
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = DefaultRetryInitial
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	return c
}

// Validate checks every field against its limits; zero fields count as their
// defaults.
func (c ProducerConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case d.MaxInFlight < 1 || d.MaxInFlight > MaxProducerInFlight:
		return invalid("ProducerConfig.MaxInFlight", "%d outside [1, %d]", d.MaxInFlight, MaxProducerInFlight)
	case d.MaxAttempts < 1 || d.MaxAttempts > MaxMaxAttempts:
		return invalid("ProducerConfig.MaxAttempts", "%d outside [1, %d]", d.MaxAttempts, MaxMaxAttempts)
	case d.AttemptTimeout < time.Millisecond || d.AttemptTimeout > MaxAttemptTimeout:
		return invalid("ProducerConfig.AttemptTimeout", "%v outside [1ms, %v]", d.AttemptTimeout, MaxAttemptTimeout)
	case d.RetryInitial < time.Millisecond || d.RetryInitial > MaxRetryBackoff:
		return invalid("ProducerConfig.RetryInitial", "%v outside [1ms, %v]", d.RetryInitial, MaxRetryBackoff)
	case d.RetryMax < d.RetryInitial || d.RetryMax > MaxRetryBackoff:
		return invalid("ProducerConfig.RetryMax", "%v outside [RetryInitial=%v, %v]", d.RetryMax, d.RetryInitial, MaxRetryBackoff)
	}
	return nil
}

// Producer publishes to one stream through any Client, bounding its publishes in
// flight and retrying those that can be retried safely:
//
//   - a publish refused with ErrStreamFull stored nothing, and is retried after
//     the broker's RetryAfter hint;
//   - a publish whose outcome is unknown (ErrUnavailable, or an attempt that
//     timed out) is retried only when the message has an IdempotencyKey, so that
//     the retry stores nothing new if the first attempt was stored: the stream
//     answers it with the original position, Duplicate set;
//   - anything else (an invalid message, a missing stream) is returned at once.
//
// It is safe for concurrent use.
type Producer struct {
	c      Client
	stream string
	cfg    ProducerConfig
	slots  chan struct{}

	retries, ambiguous atomic.Int64
}

// ProducerStats counts a producer's retries.
type ProducerStats struct {
	InFlight int
	// Retries counts attempts after the first; Unknown counts attempts whose
	// outcome was unknown.
	Retries int64
	Unknown int64
}

// NewProducer returns a producer that publishes to stream through c.
func NewProducer(c Client, stream string, cfg ProducerConfig) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Producer{c: c, stream: stream, cfg: cfg, slots: make(chan struct{}, cfg.MaxInFlight)}, nil
}

// Stats returns the producer's counters.
func (p *Producer) Stats() ProducerStats {
	return ProducerStats{InFlight: len(p.slots), Retries: p.retries.Load(), Unknown: p.ambiguous.Load()}
}

// Publish publishes msg, retrying as the Producer's rules allow, and returns its
// position. The last attempt's error is returned when the attempts run out.
func (p *Producer) Publish(ctx context.Context, msg Message) (Position, error) {
	if p.cfg.NoWait {
		select {
		case p.slots <- struct{}{}:
		default:
			return Position{}, fmt.Errorf("%w: MaxInFlight=%d", ErrTooManyInFlight, p.cfg.MaxInFlight)
		}
	} else {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return Position{}, ctx.Err()
		}
	}
	defer func() { <-p.slots }()
	wait := p.cfg.RetryInitial
	for attempt := 1; ; attempt++ {
		pos, err := p.attempt(ctx, msg)
		if err == nil {
			return pos, nil
		}
		if ctx.Err() != nil {
			return pos, err
		}
		var full *StreamFullError
		// Jitter: a random pause in [wait/2, wait]; at least a refusal's hint.
		pause := wait/2 + rand.N(wait/2+1)
		switch {
		case errors.As(err, &full):
			pause = max(pause, min(full.RetryAfter, p.cfg.RetryMax))
		case errors.Is(err, ErrUnavailable):
			p.ambiguous.Add(1)
			if msg.IdempotencyKey == "" {
				return pos, fmt.Errorf("%w (not retried: the message has no IdempotencyKey, and a retry could store it twice)", err)
			}
		default:
			return pos, err
		}
		if attempt >= p.cfg.MaxAttempts {
			return pos, fmt.Errorf("sluice: publish to %s: %d attempts: %w", p.stream, attempt, err)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return pos, ctx.Err()
		}
		wait = min(2*wait, p.cfg.RetryMax)
		p.retries.Add(1)
	}
}

// attempt is one publish, bounded by AttemptTimeout; running out of it makes the
// outcome unknown.
func (p *Producer) attempt(ctx context.Context, msg Message) (Position, error) {
	actx, cancel := context.WithTimeout(ctx, p.cfg.AttemptTimeout)
	defer cancel()
	pos, err := p.c.Publish(actx, p.stream, msg)
	if err != nil && ctx.Err() == nil && actx.Err() != nil && errors.Is(err, actx.Err()) {
		err = fmt.Errorf("%w: attempt timed out after %v: %w", ErrUnavailable, p.cfg.AttemptTimeout, err)
	}
	return pos, err
}
