// Package logstore is sluice's storage engine: one durable, segmented, append-only
// log per partition, with group commit and crash recovery.
//
// # On-disk layout
//
// A partition is one directory:
//
//	00000000000000000000.log    segment: record batches back to back (package batch)
//	00000000000000000000.index  sparse index of a sealed segment
//	00000000000000052311.log    the next segment; the name is its base offset
//	00000000000000052311.log.bad  a quarantined segment (never read again)
//
// A segment file holds whole record batches in the layout of package batch (Kafka's
// RecordBatch v2), with strictly consecutive offsets: each batch's base offset is the
// previous batch's last offset plus one, and the first batch's base offset is the
// number in the file name. A segment rolls (a new one starts) when the next batch
// would take it past Config.SegmentBytes; a batch larger than that gets a segment of
// its own. Only the last segment, the active one, is ever written.
//
// The index has one 16-byte entry per Config.IndexIntervalBytes of segment data, each
// at the start of a batch, all integers big-endian:
//
//	0  4  relative offset   base offset of the batch minus the segment's base
//	4  4  position          byte position of the batch in the segment
//	8  8  max timestamp before  largest batch max timestamp before this position
//	                        (milliseconds; math.MinInt64 when none)
//
// It serves both lookups: by offset (last entry whose relative offset is not past
// the target) and by time (last entry whose "max timestamp before" is below the
// target; because it is a running maximum it is sorted). The index of the active
// segment lives in memory and is rebuilt from the data on open; a sealed segment's
// index is written once, atomically, when the segment rolls, and searched in the file
// so that memory does not grow with the data on disk.
//
// # Durability
//
// Publishers hand encoded batches to the partition's writer goroutine. The writer
// takes every request waiting, assigns offsets, writes them all with one write and,
// under SyncAlways (the default), fdatasyncs once; only then does it acknowledge every
// publisher of the group and make the data visible to readers. While it syncs, the
// next group gathers in the request queue, so under load one fdatasync serves as many
// publishers as arrived during the previous one (group commit). SyncInterval
// acknowledges after the write and a syncer goroutine syncs every
// Config.SyncInterval; SyncNever never syncs until Close. A failed write or sync is
// never retried: the partition stops accepting writes (fail-stop) and every waiting
// publisher gets ErrFailed.
//
// Before a segment rolls, its data is synced and its index written, so only the
// active segment can hold unsynced bytes. Creating, renaming and removing files is
// followed by a sync of the directory.
//
// # Recovery
//
// Open validates the active segment batch by batch (header, CRC, offset continuity)
// and truncates it after the last valid batch: a torn or unsynced tail is dropped.
// Sealed segments are trusted for their length (they were synced before the roll) and
// their index is checked; a missing or damaged index is rebuilt from the data. Every
// batch is also verified when it is read. A sealed segment that fails verification is
// corruption, not a torn tail: it is logged, renamed to .bad (quarantined) and its
// offsets are skipped; corrupt bytes are never returned as data.
//
// # Locking
//
// Partition.mu guards the segment list; readers hold it shared while they read a
// segment file so that retention cannot close the file under them. segment.mu guards
// the in-memory index and counters of the active segment, which the writer updates.
// Lock order: Partition.mu before segment.mu.
package logstore
