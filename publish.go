package sluice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/sluicemq/sluice/internal/batch"
)

// encoder is reusable publish scratch space.
type encoder struct {
	recs []batch.Record
	buf  []byte
	bufs [][]byte // {buf}: Append's argument without an allocation per call
}

var encoderPool = sync.Pool{New: func() any { return new(encoder) }}

// partitionFor picks the partition of m: explicit, by key hash, or round-robin.
func (s *stream) partitionFor(m *Message, field string) (int, error) {
	n := len(s.parts)
	if m.Partition != nil {
		if p := *m.Partition; p < 0 || p >= n {
			return 0, invalid(field+".Partition", "%d outside [0, %d) for stream %q", p, n, s.cfg.Name)
		}
		return *m.Partition, nil
	}
	if len(m.Key) > 0 {
		return int(xxhash.Sum64(m.Key) % uint64(n)), nil
	}
	return int(s.rr.Add(1) % uint64(n)), nil
}

func toRecord(m *Message, now time.Time) batch.Record {
	t := m.Time
	if t.IsZero() {
		t = now
	}
	return batch.Record{Timestamp: t.UnixMilli(), Key: m.Key, Value: m.Body, Headers: m.headers()}
}

// Publish stores msg and returns its partition and offset once it is durable under
// the stream's sync policy. If ctx ends first the message may or may not be stored.
func (b *Broker) Publish(ctx context.Context, name string, msg Message) (Position, error) {
	return b.publish(ctx, name, msg, true)
}

// publish is Publish; the broker's own messages (dead letters, which carry a
// message that was within its own stream's limits plus their history) skip the
// size and header-count limits.
func (b *Broker) publish(ctx context.Context, name string, msg Message, limits bool) (Position, error) {
	s, err := b.acquire(name)
	if err != nil {
		return Position{}, err
	}
	defer s.mu.RUnlock()
	now := b.opts.now()
	if limits {
		if err := msg.validate("Message", s.cfg.MaxMessageBytes, now); err != nil {
			return Position{}, err
		}
	}
	part, err := s.partitionFor(&msg, "Message")
	if err != nil {
		return Position{}, err
	}
	e := encoderPool.Get().(*encoder)
	e.recs = append(e.recs[:0], toRecord(&msg, now))
	e.buf = batch.Append(e.buf[:0], e.recs)
	clear(e.recs)
	e.bufs = append(e.bufs[:0], e.buf)
	off, err := s.parts[part].Append(ctx, e.bufs...)
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil && errors.Is(err, ctxErr) {
		// The partition may still hold e.buf; do not reuse it.
		return Position{}, err
	}
	e.bufs[0] = nil
	encoderPool.Put(e)
	if err != nil {
		return Position{}, fmt.Errorf("sluice: publish to %s/%d: %w", name, part, err)
	}
	return Position{Partition: part, Offset: off}, nil
}

// PublishBatch stores msgs. The messages of each partition form one batch that is
// stored atomically, in order; partitions are written in parallel. On error the
// positions of the messages that were stored are still returned; the others have
// Offset -1.
func (b *Broker) PublishBatch(ctx context.Context, name string, msgs []Message) ([]Position, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if len(msgs) > MaxBatchMessages {
		return nil, invalid("msgs", "%d messages, limit MaxBatchMessages=%d", len(msgs), MaxBatchMessages)
	}
	s, err := b.acquire(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	total := 0
	now := b.opts.now()
	pos := make([]Position, len(msgs))
	byPart := map[int][]int{}
	for i := range msgs {
		field := fmt.Sprintf("msgs[%d]", i)
		if err := msgs[i].validate(field, s.cfg.MaxMessageBytes, now); err != nil {
			return nil, err
		}
		total += msgs[i].size()
		if total > MaxBatchBytes {
			return nil, invalid("msgs", "more than MaxBatchBytes=%d bytes", MaxBatchBytes)
		}
		p, err := s.partitionFor(&msgs[i], field)
		if err != nil {
			return nil, err
		}
		pos[i] = Position{Partition: p, Offset: -1}
		byPart[p] = append(byPart[p], i)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for p, idx := range byPart {
		recs := make([]batch.Record, len(idx))
		for j, i := range idx {
			recs[j] = toRecord(&msgs[i], now)
		}
		enc := batch.Append(nil, recs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			base, err := s.parts[p].Append(ctx, enc)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("sluice: publish to %s/%d: %w", name, p, err))
				mu.Unlock()
				return
			}
			for j, i := range idx {
				pos[i].Offset = base + int64(j)
			}
		}()
	}
	wg.Wait()
	return pos, errors.Join(errs...)
}
