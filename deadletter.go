package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults of DeadLetterQuery.
const (
	DefaultDeadLetterLimit = 100
	MaxDeadLetterLimit     = 1000
	// MaxDeadLetterScan bounds the records one DeadLetters call reads; when a
	// filter matches little, it returns fewer results and the offset to go on from.
	MaxDeadLetterScan = 100000
)

// DeadLetterQuery selects a subscription's dead letters.
type DeadLetterQuery struct {
	// From is the dead-letter stream offset to start at (the first not purged
	// when lower).
	From int64
	// Limit is the most dead letters returned. Default 100; limits [1, 1000].
	Limit int
	// Contains keeps the dead letters whose reason or attempt errors contain it.
	Contains string
	// IncludeRedriven also returns dead letters already redriven.
	IncludeRedriven bool
}

// DeadLetterAttempt is one failed delivery in a dead letter's history.
type DeadLetterAttempt struct {
	At       time.Time
	Consumer string
	Error    string
}

// DeadLetter is a message a subscription gave up on, as stored in its dead-letter
// stream (partition 0).
type DeadLetter struct {
	// Offset is the dead letter's offset in the dead-letter stream.
	Offset int64
	// Source is where the message is in the subscribed stream.
	Source     Position
	Deliveries int
	Reason     string
	Attempts   []DeadLetterAttempt
	Redriven   bool
	// Message is the original message, with its own headers only.
	Message Record
}

// DeadLetters returns a subscription's dead letters that match q, oldest first,
// and the offset to continue from.
func (b *Broker) DeadLetters(ctx context.Context, streamName, sub string, q DeadLetterQuery) ([]DeadLetter, int64, error) {
	if q.Limit == 0 {
		q.Limit = DefaultDeadLetterLimit
	}
	if q.Limit < 1 || q.Limit > MaxDeadLetterLimit {
		return nil, q.From, invalid("DeadLetterQuery.Limit", "%d outside [1, %d]", q.Limit, MaxDeadLetterLimit)
	}
	st, err := b.lookupSub(streamName, sub)
	if err != nil {
		return nil, q.From, err
	}
	_, start := st.sub.DeadLetterState(0)
	dlq, err := b.Stream(ctx, st.cfg.DeadLetterStream)
	if err != nil {
		return nil, q.From, fmt.Errorf("sluice: dead letters of %s/%s: %w", streamName, sub, err)
	}
	hw := dlq.Partitions[0].HighWatermark
	r, err := b.NewReader(ctx, st.cfg.DeadLetterStream, ReaderConfig{Start: AtOffset(max(q.From, start))})
	if err != nil {
		return nil, q.From, err
	}
	defer r.Close()
	var out []DeadLetter
	scanned := 0
	for len(out) < q.Limit && r.Offset() < hw && scanned < MaxDeadLetterScan {
		scanned++
		rec, err := r.Next(ctx)
		if err != nil {
			return out, r.Offset(), err
		}
		dl, ok := parseDeadLetter(rec, streamName, sub)
		if !ok {
			continue // another subscription's, or not a dead letter
		}
		dl.Redriven, _ = st.sub.DeadLetterState(dl.Offset)
		if dl.Redriven && !q.IncludeRedriven || !dl.matches(q.Contains) {
			continue
		}
		out = append(out, dl)
	}
	return out, r.Offset(), nil
}

// ErrDeadLetterNotFound is returned by DeadLetter for an offset that holds no dead
// letter of the subscription (or one that was purged).
var ErrDeadLetterNotFound = errors.New("sluice: dead letter not found")

// DeadLetter returns the subscription's dead letter at offset off of its
// dead-letter stream, redriven or not.
func (b *Broker) DeadLetter(ctx context.Context, streamName, sub string, off int64) (DeadLetter, error) {
	dls, _, err := b.DeadLetters(ctx, streamName, sub, DeadLetterQuery{From: off, Limit: 1, IncludeRedriven: true})
	if err != nil {
		return DeadLetter{}, err
	}
	if len(dls) == 0 || dls[0].Offset != off {
		return DeadLetter{}, fmt.Errorf("%w: %s/%s at %d", ErrDeadLetterNotFound, streamName, sub, off)
	}
	return dls[0], nil
}

func (d *DeadLetter) matches(s string) bool {
	if s == "" || strings.Contains(d.Reason, s) {
		return true
	}
	for _, a := range d.Attempts {
		if strings.Contains(a.Error, s) {
			return true
		}
	}
	return false
}

// parseDeadLetter reads the dead-letter headers of rec; ok is false unless it is a
// dead letter of stream/sub.
func parseDeadLetter(rec Record, stream, sub string) (DeadLetter, bool) {
	dl := DeadLetter{Offset: rec.Offset}
	h := map[string]string{}
	msg := rec
	msg.Headers = nil
	for _, kv := range rec.Headers {
		if kv.Key == HeaderDLQIdempotencyKey {
			msg.Headers = append(msg.Headers, Header{Key: IdempotencyKeyHeader, Value: kv.Value})
		} else if strings.HasPrefix(kv.Key, "sluice-dlq-") {
			h[kv.Key] = string(kv.Value)
		} else {
			msg.Headers = append(msg.Headers, kv)
		}
	}
	if h[HeaderDLQStream] != stream || h[HeaderDLQSubscription] != sub {
		return dl, false
	}
	p, err1 := strconv.Atoi(h[HeaderDLQPartition])
	off, err2 := strconv.ParseInt(h[HeaderDLQOffset], 10, 64)
	n, err3 := strconv.Atoi(h[HeaderDLQDeliveries])
	var attempts []struct {
		At       int64  `json:"at"`
		Consumer string `json:"consumer"`
		Error    string `json:"error"`
	}
	err4 := json.Unmarshal([]byte(h[HeaderDLQAttempts]), &attempts)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return dl, false
	}
	msg.Stream, msg.Partition, msg.Offset = stream, p, off
	if ms, err := strconv.ParseInt(h[HeaderDLQTime], 10, 64); err == nil {
		msg.Time = time.UnixMilli(ms) // the original's; the record's is the dead-lettering's
	}
	dl.Source, dl.Deliveries, dl.Reason, dl.Message = Position{Partition: p, Offset: off}, n, h[HeaderDLQReason], msg
	for _, a := range attempts {
		dl.Attempts = append(dl.Attempts, DeadLetterAttempt{At: time.UnixMilli(a.At), Consumer: a.Consumer, Error: a.Error})
	}
	return dl, true
}

// RedriveOptions says which dead letters to redrive and how fast.
type RedriveOptions struct {
	// Query selects the dead letters (IncludeRedriven is ignored: a dead letter is
	// redriven once). Limit bounds how many are redriven per call.
	Query DeadLetterQuery
	// PerSecond bounds the redrive rate; 0 means no bound. Limits [0, 1e6].
	PerSecond float64
}

// RedriveDeadLetters puts dead letters back into their subscription, and only
// that one: each becomes pending again with a fresh delivery count. It returns how
// many it redrove and the offset to continue from.
func (b *Broker) RedriveDeadLetters(ctx context.Context, streamName, sub string, opts RedriveOptions) (int, int64, error) {
	if opts.PerSecond != 0 && (opts.PerSecond < 0.001 || opts.PerSecond > 1e6) {
		return 0, opts.Query.From, invalid("RedriveOptions.PerSecond", "%v: 0 (no bound) or in [0.001, 1e6]", opts.PerSecond)
	}
	opts.Query.IncludeRedriven = false
	dls, next, err := b.DeadLetters(ctx, streamName, sub, opts.Query)
	if err != nil {
		return 0, next, err
	}
	st, err := b.lookupSub(streamName, sub)
	if err != nil {
		return 0, next, err
	}
	var tick *time.Ticker
	if opts.PerSecond > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / opts.PerSecond))
		defer tick.Stop()
	}
	n := 0
	for i, dl := range dls {
		if tick != nil && i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return n, dl.Offset, ctx.Err()
			}
		}
		if err := st.sub.Redrive(ctx, dl.Source.Partition, dl.Source.Offset, dl.Offset, dl.Message.Key); err != nil {
			return n, dl.Offset, fmt.Errorf("sluice: redrive dead letter %d: %w", dl.Offset, toInvalid(err))
		}
		n++
	}
	return n, next, nil
}

// PurgeDeadLetters discards every dead letter the subscription has so far: they
// are no longer listed or redriven. The dead-letter stream's own retention frees
// their space. It returns the offset the remaining dead letters start at.
func (b *Broker) PurgeDeadLetters(ctx context.Context, streamName, sub string) (int64, error) {
	st, err := b.lookupSub(streamName, sub)
	if err != nil {
		return 0, err
	}
	dlq, err := b.Stream(ctx, st.cfg.DeadLetterStream)
	if err != nil {
		return 0, err
	}
	hw := dlq.Partitions[0].HighWatermark
	return hw, st.sub.PurgeDeadLetters(ctx, hw)
}
