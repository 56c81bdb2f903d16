package sluice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicemq/sluice/internal/logstore"
)

// The calls in this file expose a partition's log as it is stored, for
// protocol adapters that speak another broker's wire format (package kafka):
// the stored record batches are Kafka's RecordBatch v2, byte for byte, so they
// can be served without decoding and re-encoding each record.

// MaxReadBatchesBytes bounds one ReadBatches.
const MaxReadBatchesBytes = 64 << 20

// BatchRead is what ReadBatches returns.
type BatchRead struct {
	// Batches holds whole stored record batches (Kafka RecordBatch v2,
	// CRC-32C verified), the first being the one that holds the offset asked
	// for; it may start before that offset. Empty at the high watermark.
	Batches []byte
	// Next is the offset after the last batch in Batches.
	Next int64
	// StartOffset and HighWatermark are the partition's bounds when read.
	StartOffset, HighWatermark int64
}

// partitionLog returns the log of one partition of a stream.
func (b *Broker) partitionLog(streamName string, partition int) (logstore.Log, error) {
	s, err := b.acquire(streamName)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if partition < 0 || partition >= len(s.parts) {
		return nil, invalid("partition", "%d: stream %q has partitions 0 to %d", partition, streamName, len(s.parts)-1)
	}
	return s.parts[partition], nil
}

// StreamConfig returns a stream's config with its defaults filled in, without
// the partitions' statistics that Stream gathers: for a per-request check on
// a hot path.
func (b *Broker) StreamConfig(ctx context.Context, streamName string) (StreamConfig, error) {
	s, err := b.acquire(streamName)
	if err != nil {
		return StreamConfig{}, err
	}
	defer s.mu.RUnlock()
	return s.cfg, nil
}

// PartitionBounds returns a partition's first stored offset and its high
// watermark.
func (b *Broker) PartitionBounds(ctx context.Context, streamName string, partition int) (start, highWatermark int64, err error) {
	log, err := b.partitionLog(streamName, partition)
	if err != nil {
		return 0, 0, err
	}
	return log.StartOffset(), log.HighWatermark(), nil
}

// ReadBatches reads whole stored batches of a partition from the one holding
// offset from, up to maxBytes (at least one batch, whatever its size), without
// waiting. An offset below the partition's start or above its high watermark
// is ErrOffsetOutOfRange; at the high watermark the read is empty. A maxBytes
// of 0 reads nothing and returns the partition's bounds.
func (b *Broker) ReadBatches(ctx context.Context, streamName string, partition int, from int64, maxBytes int) (BatchRead, error) {
	if maxBytes < 0 || maxBytes > MaxReadBatchesBytes {
		return BatchRead{}, invalid("maxBytes", "%d outside [0, MaxReadBatchesBytes=%d]", maxBytes, MaxReadBatchesBytes)
	}
	log, err := b.partitionLog(streamName, partition)
	if err != nil {
		return BatchRead{}, err
	}
	out := BatchRead{StartOffset: log.StartOffset(), HighWatermark: log.HighWatermark(), Next: from}
	if from < out.StartOffset || from > out.HighWatermark {
		return out, fmt.Errorf("sluice: read %s/%d: %w: %d outside [%d, %d]", streamName, partition, ErrOffsetOutOfRange, from, out.StartOffset, out.HighWatermark)
	}
	if from == out.HighWatermark || maxBytes == 0 {
		return out, nil
	}
	data, next, err := log.Read(from, maxBytes, nil)
	if errors.Is(err, ErrOffsetOutOfRange) {
		// Retention removed it between the bounds and the read.
		out.StartOffset = log.StartOffset()
		return out, fmt.Errorf("sluice: read %s/%d at %d: %w", streamName, partition, from, err)
	}
	if err != nil {
		return out, fmt.Errorf("sluice: read %s/%d at %d: %w", streamName, partition, from, err)
	}
	out.Batches, out.Next = data, next
	return out, nil
}

// WaitBatches blocks until the partition's high watermark passes offset
// after, or ctx ends, and returns the high watermark. It is the long poll of
// a consumer at the tail.
func (b *Broker) WaitBatches(ctx context.Context, streamName string, partition int, after int64) (int64, error) {
	log, err := b.partitionLog(streamName, partition)
	if err != nil {
		return 0, err
	}
	return log.Wait(ctx, after)
}

// OffsetForTime returns the first offset of the partition whose message time
// is at or after t, or the high watermark when there is none.
func (b *Broker) OffsetForTime(ctx context.Context, streamName string, partition int, t time.Time) (int64, error) {
	log, err := b.partitionLog(streamName, partition)
	if err != nil {
		return 0, err
	}
	return log.OffsetForTime(t)
}

// CommitOffset moves a subscription in one partition to offset: everything
// before it counts as done, as SeekSubscription does for every partition. It
// is durable when it returns. A consumer group of another protocol keeps its
// committed offsets this way, so that backlog and lag show the same state
// whichever protocol the consumer speaks. The offset is clamped to what the
// partition stores.
func (b *Broker) CommitOffset(ctx context.Context, streamName, subscription string, partition int, offset int64) error {
	st, err := b.lookupSub(streamName, subscription)
	if err != nil {
		return err
	}
	if err := st.sub.Seek(ctx, partition, offset); err != nil {
		return fmt.Errorf("sluice: commit %s/%s partition %d: %w", streamName, subscription, partition, toInvalid(err))
	}
	return nil
}
