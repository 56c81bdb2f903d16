// Package subscription is sluice's delivery engine: a subscription is a named,
// durable cursor over a stream whose messages it hands to consumers under leases,
// with acknowledgements, retries with backoff, a delivery limit and dead-lettering.
//
// # State
//
// For each partition a subscription keeps a floor (every offset below it is done:
// acknowledged or dead-lettered), a cursor next (no offset at or above it was ever
// delivered), and the pending set: every offset in [floor, next) that is not done,
// with its delivery count, lease (while in flight), retry time and attempt history.
// Offsets in [floor, next) that are not pending are done. The backlog beyond next
// costs no memory at all, so memory is bounded by what is in flight or waiting for a
// retry, not by the backlog.
//
// # Durability
//
// Every change is an event appended to the subscription's journal, a partition log
// (package logstore) under journal-<generation>/, before it takes effect for the
// caller: a delivery is journaled before the consumer sees it, so that a crash can
// never reset a delivery count and a poison message is not retried forever. The
// journal acknowledges after the write (logstore.SyncInterval): what was acknowledged
// survives kill -9 of the broker; a power failure can lose the last interval, which
// makes messages come back (at-least-once), never lost.
//
// Config.Delivery AtMostOnce changes when a message counts as consumed: Fetch
// journals every delivery with an ack right after it, in the same append (a
// record batch, whole or absent after a crash), and syncs the journal
// (logstore.Partition.Sync) before it returns the deliveries. Replay therefore
// never finds such a message in flight: it is not handed out again after kill -9
// or a power failure, and it has no lease to expire.
//
// On open the subscription loads state.json (the snapshot, written atomically),
// replays its journal generation, then compacts: it writes a new snapshot that
// points at a fresh, empty journal generation and removes the old one. Leases that
// were in flight at a crash are treated as expired.
//
// Journal events (the value of one record each; integers are varints):
//
//	kind=1 deliver  partition, offset, deliveries, unix ms
//	kind=2 ack      partition, offset
//	kind=3 retry    partition, offset, not-before unix ms, unix ms, consumer, reason
//	kind=4 dead     partition, offset
//	kind=5 delay    partition, offset, not-before unix ms
//	kind=6 seek     partition, offset
//	kind=7 redrive  partition, offset, dead-letter offset
//	kind=8 purge    0, dead-letter offset
//
// A redrive makes a dead-lettered message pending again (the floor moves back to
// it if needed; the offsets between stay done) so that only this subscription
// sees it again; the source message must still be stored.
//
// A message whose DeliverAtHeader holds a time in the future is not delivered when
// the cursor reaches it: it becomes pending with no delivery and a not-before time
// (a delay event), and is delivered once due, like a retry. Nack-with-delay uses
// the same mechanism. Delayed messages cost memory while they wait (one pending
// entry each).
//
// Strings are length-prefixed and bounded (MaxReasonBytes, MaxConsumerNameLen).
package subscription
