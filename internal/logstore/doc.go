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
// its own. Only the last segment, the active one, is ever written. The active
// segment's file may continue past its last batch with zeros (preallocated space; see
// Durability); a sealed segment's file ends with its last batch, and so does the
// active one's after a clean Close.
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
// Config.SyncInterval; SyncNever never syncs until Close. Under any policy,
// Partition.Sync makes what was acknowledged so far durable at once (one fdatasync
// of the active segment), for a caller that needs one write durable now without
// paying SyncAlways for all of them. A failed write or sync is
// never retried: the partition stops accepting writes (fail-stop) and every waiting
// publisher gets ErrFailed.
//
// The writer writes each group with one positioned write (pwrite) at the end of the
// active segment's data, not with O_APPEND, because of preallocation: on ext4 (and
// most file systems) an fdatasync after a write that grows the file also commits the
// journal, for the new size and blocks, while one after overwriting blocks that were
// already written and synced only flushes the data. So under SyncAlways the writer
// keeps the file zero-filled and synced ahead of the data, between groups: when less
// than half a step of zeros is left it writes a step more (the segment's data size
// clamped to [1 MiB, 4 MiB], never past SegmentBytes) and syncs them. Zero-filling
// writes every byte twice, which costs more than the journal commits save once the
// disk's bandwidth rather than the fdatasync's fixed cost is the limit; the writer
// therefore preallocates only while the average group (a moving average of the bytes
// per fdatasync) is below 128 KiB. The other policies sync too rarely to gain from it
// and never preallocate. BENCHMARKS.md has the measurements. The zeros carry no
// durability promise of their own: an fdatasync covers the whole file, so a group is
// durable once its own sync returns, synced zeros under it or not; syncing them
// first is what keeps the journal commit out of the groups' syncs (the tests check
// that it does). A failed zero-fill write or sync stops the partition like any other.
//
// Before a segment rolls, its file is truncated to its data (dropping the zeros),
// its data synced (the sync makes the new length durable too) and its index
// written, so only the active segment can hold unsynced bytes or zeros. Creating,
// renaming and removing files is followed by a sync of the directory.
//
// # Recovery
//
// Open validates the active segment batch by batch (header, CRC, offset continuity)
// up to the first invalid position. If every byte from there to the end of the file
// is zero, that is the clean end of a preallocated segment: nothing is reported and
// the zeros stay, to be overwritten. Anything else there is a torn or unsynced tail
// (or damage, which cannot be told apart from one), and the file is truncated at that
// position and synced: all of the tail goes, not only the bad batch, so that no stale
// byte is left past the end. That matters because the writer writes at its position:
// a later group could otherwise cover a gap exactly and make a stale batch after it
// look continuous. The price of the clean zero end: if damage turned the last
// batches of the active segment into zeros, they are dropped without a report. And
// each open partition may hold up to about 6 MiB of zeros, which also makes a full
// disk stop a partition that much earlier.
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
