package sluice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
)

// Limits and defaults of ReaderConfig.
const (
	DefaultFetchBytes = 1 << 20
	MaxFetchBytes     = 64 << 20
)

type startKind int

const (
	startEarliest startKind = iota
	startLatest
	startOffset
	startTime
)

// StartAt is where a reader starts. The zero value is the earliest message.
type StartAt struct {
	kind   startKind
	offset int64
	time   time.Time
}

// Earliest starts at the first message still stored.
func Earliest() StartAt { return StartAt{kind: startEarliest} }

// Latest starts after the last message: only messages published from now on.
func Latest() StartAt { return StartAt{kind: startLatest} }

// AtOffset starts at offset n (clamped to what is stored).
func AtOffset(n int64) StartAt { return StartAt{kind: startOffset, offset: n} }

// AtTime starts at the first message whose time is at or after t.
func AtTime(t time.Time) StartAt { return StartAt{kind: startTime, time: t} }

func (s StartAt) String() string {
	switch s.kind {
	case startLatest:
		return "latest"
	case startOffset:
		return fmt.Sprintf("offset %d", s.offset)
	case startTime:
		return "time " + s.time.Format(time.RFC3339Nano)
	}
	return "earliest"
}

// ReaderConfig configures a reader.
type ReaderConfig struct {
	// Partition to read. Limits [0, partitions).
	Partition int
	// Start is where to begin. Default Earliest().
	Start StartAt
	// FetchBytes is how much the reader reads from the log at once. Default 1 MiB;
	// limits [1, MaxFetchBytes = 64 MiB]. A batch larger than it is still read whole.
	FetchBytes int
}

// NewReader opens a reader on one partition of a stream.
func (b *Broker) NewReader(ctx context.Context, name string, cfg ReaderConfig) (Reader, error) {
	if cfg.FetchBytes == 0 {
		cfg.FetchBytes = DefaultFetchBytes
	}
	if cfg.FetchBytes < 1 || cfg.FetchBytes > MaxFetchBytes {
		return nil, invalid("ReaderConfig.FetchBytes", "%d outside [1, MaxFetchBytes=%d]", cfg.FetchBytes, MaxFetchBytes)
	}
	s, err := b.acquire(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if cfg.Partition < 0 || cfg.Partition >= len(s.parts) {
		return nil, invalid("ReaderConfig.Partition", "%d outside [0, %d) for stream %q", cfg.Partition, len(s.parts), name)
	}
	p := s.parts[cfg.Partition]
	r := &partitionReader{b: b, stream: name, partition: cfg.Partition, log: p, fetch: cfg.FetchBytes}
	switch cfg.Start.kind {
	case startEarliest:
		r.off = p.StartOffset()
	case startLatest:
		r.off = p.HighWatermark()
	case startOffset:
		r.off = min(max(cfg.Start.offset, p.StartOffset()), p.HighWatermark())
	case startTime:
		off, err := p.OffsetForTime(cfg.Start.time)
		if err != nil {
			return nil, fmt.Errorf("sluice: reader on %s/%d: %w", name, cfg.Partition, err)
		}
		r.off = off
	}
	return r, nil
}

// partitionReader reads one partition log. It is not safe for concurrent use.
type partitionReader struct {
	b         *Broker
	stream    string
	partition int
	log       logstore.Log
	fetch     int
	off       int64  // next offset to return
	data      []byte // fetched batches not yet consumed
	it        batch.Iter
	inBatch   bool
	closed    bool
}

func (r *partitionReader) Offset() int64 { return r.off }

func (r *partitionReader) Close() error {
	r.closed = true
	r.data = nil
	return nil
}

func (r *partitionReader) Next(ctx context.Context) (Record, error) {
	for {
		rec, ok, err := r.poll()
		if err != nil || ok {
			return rec, err
		}
		if _, err := r.log.Wait(ctx, r.off); err != nil {
			if errors.Is(err, logstore.ErrClosed) {
				return Record{}, r.wrap(r.closedErr(err))
			}
			return Record{}, err
		}
	}
}

// poll returns the next record if one is stored, without waiting.
func (r *partitionReader) poll() (Record, bool, error) {
	for {
		if r.closed {
			return Record{}, false, ErrClosed
		}
		if r.inBatch {
			if r.it.Next() {
				rec := r.it.Record()
				if rec.Offset < r.off {
					continue
				}
				r.off = rec.Offset + 1
				return r.record(rec), true, nil
			}
			r.inBatch = false
			if err := r.it.Err(); err != nil {
				return Record{}, false, r.wrap(fmt.Errorf("%w: %w", ErrCorrupt, err))
			}
		}
		if len(r.data) > 0 {
			size, err := batch.PeekSize(r.data)
			if err == nil {
				err = r.it.Reset(r.data[:size])
			}
			if err != nil {
				r.data = nil
				return Record{}, false, r.wrap(fmt.Errorf("%w: %w", ErrCorrupt, err))
			}
			r.data = r.data[size:]
			r.inBatch = true
			continue
		}
		ok, err := r.readMore()
		if err != nil || !ok {
			return Record{}, false, err
		}
	}
}

// readMore reads the next batches into r.data; false means the reader is at the end.
func (r *partitionReader) readMore() (bool, error) {
	for {
		// A fresh buffer each time: the records handed out alias it.
		data, _, err := r.log.Read(r.off, r.fetch, nil)
		if errors.Is(err, logstore.ErrOutOfRange) {
			start, hw := r.log.StartOffset(), r.log.HighWatermark()
			switch {
			case r.off < start:
				r.off = start // removed by retention
				continue
			case r.off > hw:
				return false, r.wrap(err)
			}
			continue
		}
		if err != nil {
			return false, r.wrap(r.closedErr(err))
		}
		r.data = data
		return len(data) > 0, nil
	}
}

// closedErr turns a closed partition into what happened to it: the stream was
// deleted (ErrStreamNotFound) or the broker closed (ErrClosed).
func (r *partitionReader) closedErr(err error) error {
	if !errors.Is(err, logstore.ErrClosed) {
		return err
	}
	if _, lerr := r.b.lookup(r.stream); lerr != nil {
		return lerr
	}
	return err
}

func (r *partitionReader) wrap(err error) error {
	return fmt.Errorf("sluice: read %s/%d at offset %d: %w", r.stream, r.partition, r.off, err)
}

// record turns a decoded record into a Record. Its slices alias the fetch buffer,
// which the reader never reuses: a fetch is one allocation shared by its records,
// not one per record.
func (r *partitionReader) record(rec *batch.Record) Record {
	out := Record{
		Stream:    r.stream,
		Partition: r.partition,
		Offset:    rec.Offset,
		Time:      time.UnixMilli(rec.Timestamp),
		Key:       rec.Key,
		Body:      rec.Value,
	}
	if len(rec.Headers) > 0 {
		out.Headers = append([]Header(nil), rec.Headers...)
	}
	return out
}
