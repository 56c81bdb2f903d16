// Package idset is a compact set of 128-bit id hashes that forgets in the order
// it learned: the oldest first, when they are older than a cut-off second or when
// the set holds more than a bound. sluice's ProcessedLog keeps the ids of
// processed messages in one.
//
// A Set is a ring of entries (hash, second recorded), oldest first, 20 bytes a
// slot, and an open-addressing index over the ring: a power-of-two table of ring
// positions (4 bytes a slot, at most three quarters full, linear probing,
// deletion by backward shift). The hash is stored once, in the ring; the index
// compares through it. A hash added again while it is held (which a log read
// back from disk can hold) is queued again and the index points at the newer
// entry; the older one then leaves the ring without forgetting the hash.
//
// A Set is not safe for concurrent use.
package idset
