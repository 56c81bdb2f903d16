package sluice

import (
	"strconv"
	"time"
	"unsafe"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/subscription"
)

// Limits on messages. Each is checked on publish and named in the error.
const (
	// MaxKeyBytes is the largest message key.
	MaxKeyBytes = 4 << 10
	// MaxHeaders is the most headers one message may carry.
	MaxHeaders = 64
	// MaxHeaderKeyBytes is the longest header key.
	MaxHeaderKeyBytes = 256
	// MaxBatchMessages is the most messages one PublishBatch may carry.
	MaxBatchMessages = 10000
	// MaxBatchBytes is the most bytes (keys, bodies and headers) one PublishBatch may carry.
	MaxBatchBytes = 32 << 20
	// MaxIdempotencyKeyBytes is the longest idempotency key.
	MaxIdempotencyKeyBytes = 256
)

// Header is one key/value pair of message metadata: Key string, Value []byte.
type Header = batch.RecordHeader

// Message is what a producer publishes.
type Message struct {
	// Key selects the partition (by a stable hash) and, for consumers that ask for
	// it, the order: messages with the same key land in the same partition. Optional.
	Key []byte
	// Headers carry metadata. At most MaxHeaders.
	Headers []Header
	// Body is the payload.
	Body []byte
	// Time is the message time, stored with millisecond precision. Zero means the
	// time of the publish.
	Time time.Time
	// Partition, when set, sends the message to that partition instead of the one
	// its key (or round-robin, without a key) would choose. See ToPartition.
	Partition *int
	// DeliverAt, when set and in the future, keeps the message from subscriptions'
	// consumers until that time (readers see it at once). Any horizon up to
	// MaxDeliverAhead; stored as the DeliverAtHeader header.
	DeliverAt time.Time
	// IdempotencyKey, when set, makes the publish idempotent within the stream's
	// DedupeWindow: a publish whose key the stream already accepted within the
	// window stores nothing and returns the original position (with Duplicate
	// set), so a producer may retry a publish whose outcome it did not learn.
	// Keys are compared byte for byte across the whole stream. A message without
	// Key or Partition is placed by the hash of its idempotency key, so that a
	// retry lands where the original did. At most MaxIdempotencyKeyBytes; stored
	// as the IdempotencyKeyHeader header.
	IdempotencyKey string
}

// IdempotencyKeyHeader is the header that carries Message.IdempotencyKey in the
// stored message. Set IdempotencyKey rather than the header.
const IdempotencyKeyHeader = "sluice-idempotency-key"

// DeliverAtHeader is the header that carries Message.DeliverAt (decimal unix
// milliseconds). Set DeliverAt rather than the header.
const DeliverAtHeader = subscription.DeliverAtHeader

// MaxDeliverAhead bounds how far in the future Message.DeliverAt may be.
const MaxDeliverAhead = 10 * 366 * 24 * time.Hour

// ToPartition returns a value for Message.Partition.
func ToPartition(n int) *int { return &n }

// Position is where a published message was stored.
type Position struct {
	Partition int
	Offset    int64
	// Duplicate is set when the message carried an idempotency key that the
	// stream had already accepted within its dedupe window: nothing was stored,
	// and Partition and Offset are those of the original.
	Duplicate bool
}

// Record is a stored message as a reader returns it. Its slices are never reused or
// changed by sluice, but they share one buffer with the other records of the same
// fetch (up to ReaderConfig.FetchBytes): keeping one record keeps that buffer alive.
// Copy Key and Body to keep a record for long without the rest.
type Record struct {
	Stream    string
	Partition int
	Offset    int64
	Time      time.Time
	Key       []byte
	Headers   []Header
	Body      []byte
}

// size is what counts against StreamConfig.MaxMessageBytes: key, body and headers.
func (m *Message) size() int {
	n := len(m.Key) + len(m.Body) + len(m.IdempotencyKey)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

func (m *Message) validate(field string, maxBytes int, now time.Time) error {
	switch {
	case len(m.Key) > MaxKeyBytes:
		return invalid(field+".Key", "%d bytes, limit MaxKeyBytes=%d", len(m.Key), MaxKeyBytes)
	case len(m.IdempotencyKey) > MaxIdempotencyKeyBytes:
		return invalid(field+".IdempotencyKey", "%d bytes, limit MaxIdempotencyKeyBytes=%d", len(m.IdempotencyKey), MaxIdempotencyKeyBytes)
	case len(m.Headers) > MaxHeaders:
		return invalid(field+".Headers", "%d headers, limit MaxHeaders=%d", len(m.Headers), MaxHeaders)
	case m.size() > maxBytes:
		return invalid(field, "%d bytes (key, body and headers), limit MaxMessageBytes=%d", m.size(), maxBytes)
	}
	for i, h := range m.Headers {
		if h.Key == "" || len(h.Key) > MaxHeaderKeyBytes {
			return invalid(field+".Headers", "header %d key is %d bytes, must be 1..MaxHeaderKeyBytes=%d", i, len(h.Key), MaxHeaderKeyBytes)
		}
		if h.Key == DeliverAtHeader {
			return invalid(field+".Headers", "header %q is reserved; set DeliverAt instead", DeliverAtHeader)
		}
		if h.Key == IdempotencyKeyHeader {
			return invalid(field+".Headers", "header %q is reserved; set IdempotencyKey instead", IdempotencyKeyHeader)
		}
	}
	if !m.DeliverAt.IsZero() && m.DeliverAt.After(now.Add(MaxDeliverAhead)) {
		return invalid(field+".DeliverAt", "%v is more than MaxDeliverAhead=%v ahead", m.DeliverAt, MaxDeliverAhead)
	}
	return nil
}

// headers returns the headers to store: the message's own, plus DeliverAtHeader
// when DeliverAt is set and IdempotencyKeyHeader when IdempotencyKey is.
// The headers are built in scratch (reusing its memory) when they are not the
// message's own; they may alias the message's strings, and are only to be encoded.
func (m *Message) headers(scratch []Header) []Header {
	if m.DeliverAt.IsZero() && m.IdempotencyKey == "" {
		return m.Headers
	}
	h := append(scratch[:0], m.Headers...)
	if !m.DeliverAt.IsZero() {
		h = append(h, Header{Key: DeliverAtHeader, Value: strconv.AppendInt(nil, m.DeliverAt.UnixMilli(), 10)})
	}
	if m.IdempotencyKey != "" {
		h = append(h, Header{Key: IdempotencyKeyHeader, Value: unsafe.Slice(unsafe.StringData(m.IdempotencyKey), len(m.IdempotencyKey))})
	}
	return h
}
