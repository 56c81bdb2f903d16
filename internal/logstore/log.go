package logstore

import (
	"context"
	"time"
)

// Log is what the broker needs from one partition. *Partition implements it on the
// local disk; a replicated log (a Raft group per partition) can implement it too,
// acknowledging Append once a quorum holds the batches and advancing the high
// watermark to the committed offset. The leader epoch field of every batch is there
// for it.
type Log interface {
	// Append stores encoded batches as consecutive offsets and returns the base
	// offset of the first, once they are durable under the log's policy.
	Append(ctx context.Context, batches ...[]byte) (int64, error)
	// Read returns whole verified batches from the one holding off.
	Read(off int64, maxBytes int, buf []byte) (data []byte, next int64, err error)
	// Wait blocks until the high watermark passes off.
	Wait(ctx context.Context, off int64) (int64, error)
	HighWatermark() int64
	StartOffset() int64
	OffsetForTime(t time.Time) (int64, error)
	ApplyRetention(r Retention, now time.Time) (int, error)
	// Roll seals the active segment so that retention can remove it.
	Roll(ctx context.Context) error
	// Bytes is what the partition's segments hold, read without a lock.
	Bytes() int64
	Stats() Stats
	Close() error
}

var _ Log = (*Partition)(nil)
