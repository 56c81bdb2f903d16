package sluice

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/dedupesnap"
	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

// A stream's idempotency keys live in the messages themselves (the
// IdempotencyKeyHeader header), so the log is the index's durable form: after a
// crash, the index is rebuilt by reading the headers of the messages published
// within the window. A snapshot of the index (dedupeFile, written at close and
// now and then) makes that read short: it covers each partition up to an offset,
// and only the messages after it are read.
//
// In memory a key costs one entry in a FIFO (hash, position, time: 24 bytes) and
// a slot of a hash table (8 bytes, over its load factor; htab). Keys
// are compared by their 64-bit xxhash; a hit is confirmed against the stored
// message's header, so that two keys with the same hash are never taken for one.
const dedupeFile = "dedupe.snap"

// dedupeChunk is the number of entries per FIFO chunk (192 KiB).
const dedupeChunk = 8192

// dedupeSnapshotEvery is how often, at most, a changed index is snapshotted.
const dedupeSnapshotEvery = 30 * time.Second

// dentry is one accepted idempotency key.
type dentry struct {
	hash uint64
	ref  uint64 // partition << refOffsetBits | offset; or a claim: refClaimed | partition << refOffsetBits | floor
	ms   int64  // the message's time, unix ms (a claim's: when claimed)
}

// refOffsetBits leaves 10 bits of partition (MaxPartitions = 1024) and the top bit,
// which marks a claim: a key being published, whose offset is not known yet.
const (
	refOffsetBits = dedupesnap.RefOffsetBits
	refClaimed    = 1 << 63
)

func makeRef(part int, off int64) uint64 { return uint64(part)<<refOffsetBits | uint64(off) }
func splitRef(r uint64) (int, int64) {
	return int(r >> refOffsetBits), int64(r & (1<<refOffsetBits - 1))
}

func claimed(r uint64) bool { return r&refClaimed != 0 }

// fifo is a queue of entries in chunks, addressed by sequence number.
type fifo struct {
	chunks [][]dentry
	first  uint64 // seq of chunks[0][0]
	head   uint64 // seq of the oldest entry held
	next   uint64 // seq of the next entry
}

func (f *fifo) len() int { return int(f.next - f.head) }

func (f *fifo) at(seq uint64) *dentry {
	i := seq - f.first
	return &f.chunks[i/dedupeChunk][i%dedupeChunk]
}

func (f *fifo) push(e dentry) uint64 {
	if n := len(f.chunks); n == 0 || len(f.chunks[n-1]) == dedupeChunk {
		f.chunks = append(f.chunks, make([]dentry, 0, dedupeChunk))
	}
	last := &f.chunks[len(f.chunks)-1]
	*last = append(*last, e)
	f.next++
	return f.next - 1
}

func (f *fifo) pop() dentry {
	e := *f.at(f.head)
	f.head++
	if f.head-f.first == dedupeChunk {
		f.chunks[0] = nil
		f.chunks = f.chunks[1:]
		f.first += dedupeChunk
	}
	return e
}

// claim is a key a publisher is publishing: its entry in a shard's FIFO, which
// holds the partition and that partition's high watermark when claimed (the key
// lands at or after it) until the publisher finishes it.
type claim struct {
	seq uint64
}

// dedupe is a stream's index of the idempotency keys it accepted within its
// window. It is split in shards by key hash, each with its own lock, so that
// concurrent publishers rarely wait for each other; a small index (below
// dedupeShardFrom keys) has one shard, which keeps its bound exact.
type dedupe struct {
	shards []*dshard
	dups   atomic.Int64

	saveMu  sync.Mutex
	saved   time.Time
	covered []int64 // of the last snapshot
}

const (
	dedupeShards    = 16
	dedupeShardFrom = 1 << 16
)

// dshard is one shard of a dedupe index: the keys whose hash falls in it.
type dshard struct {
	mu      sync.Mutex
	window  time.Duration
	maxKeys int
	tab     htab // key hash → seq of its entry (or claim)
	q       fifo
	waits   map[uint64]chan struct{} // claims (by seq) that a publisher waits for
	evicted int64
	dirty   bool // changed since the last snapshot
}

func newDedupe(window time.Duration, maxKeys int) *dedupe {
	n := 1
	if maxKeys >= dedupeShardFrom {
		n = dedupeShards
	}
	d := &dedupe{shards: make([]*dshard, n)}
	for i := range d.shards {
		d.shards[i] = &dshard{waits: map[uint64]chan struct{}{}}
	}
	d.configure(window, maxKeys)
	return d
}

func keyHash(key string) uint64 { return xxhash.Sum64String(key) }

// shard picks by the hash's low bits; the shard's table indexes by its top bits.
func (d *dedupe) shard(h uint64) *dshard { return d.shards[h%uint64(len(d.shards))] }

func (d *dshard) hashAt(seq uint64) uint64 { return d.q.at(seq).hash }

func (d *dshard) get(h uint64) (uint64, bool) { return d.tab.get(h, d.q.head, d.hashAt) }

// configure applies an updated window and bound, split exactly among the shards
// (their number is chosen when the stream opens).
func (d *dedupe) configure(window time.Duration, maxKeys int) {
	n := len(d.shards)
	for i, sh := range d.shards {
		per := maxKeys / n
		if i < maxKeys%n {
			per++
		}
		sh.mu.Lock()
		sh.window, sh.maxKeys = window, per
		sh.mu.Unlock()
	}
}

// expireLocked forgets the keys whose window passed, and the oldest keys beyond
// maxKeys (counted in the table: the FIFO also holds entries no longer indexed). A
// claim at the head stops it: claims last as long as a publish.
func (d *dshard) expireLocked(now time.Time) {
	cut := now.Add(-d.window).UnixMilli()
	for d.q.len() > 0 {
		e := d.q.at(d.q.head)
		over := d.tab.n > d.maxKeys
		if claimed(e.ref) || !over && e.ms >= cut {
			return
		}
		if d.tab.del(e.hash, d.q.head, d.q.head) && e.ms >= cut {
			d.evicted++
		}
		d.q.pop()
		d.dirty = true
	}
}

// lookup returns, for a key hash: the position of the key's message if the key
// was accepted within the window; or, if the key is being published, a channel
// closed when that publish finishes; or, if neither and take is set, a new claim
// that the caller owns and must finish.
func (d *dedupe) lookup(h uint64, part int, floor int64, now time.Time, take bool) (ref uint64, found bool, done <-chan struct{}, own claim, owned bool) {
	sh := d.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.expireLocked(now)
	if seq, ok := sh.get(h); ok {
		e := sh.q.at(seq)
		switch {
		case claimed(e.ref):
			ch := sh.waits[seq]
			if ch == nil {
				ch = make(chan struct{})
				sh.waits[seq] = ch
			}
			return 0, false, ch, claim{}, false
		case e.ms >= now.Add(-sh.window).UnixMilli():
			return e.ref, true, nil, claim{}, false
		}
		// An entry behind a later one in the FIFO may outlive its window there.
	}
	if !take {
		return 0, false, nil, claim{}, false
	}
	seq := sh.q.push(dentry{hash: h, ref: refClaimed | makeRef(part, floor), ms: now.UnixMilli()})
	sh.tab.put(h, seq, sh.q.head, sh.hashAt)
	return 0, false, nil, claim{seq: seq}, true
}

// finish releases a claim; stored says the key's message was stored at ref with
// time ms.
func (d *dedupe) finish(h uint64, c claim, stored bool, ref uint64, ms int64) {
	sh := d.shard(h)
	sh.mu.Lock()
	e := sh.q.at(c.seq)
	if stored {
		e.ref, e.ms = ref, ms
		sh.dirty = true
	} else {
		e.ref, e.ms = 0, math.MinInt64 // expired: forgotten when it reaches the head
		sh.tab.del(h, c.seq, sh.q.head)
	}
	var ch chan struct{}
	if len(sh.waits) > 0 {
		if ch = sh.waits[c.seq]; ch != nil {
			delete(sh.waits, c.seq)
		}
	}
	sh.evictLocked()
	sh.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// add indexes an entry (a rebuild's).
func (d *dedupe) add(e dentry) {
	sh := d.shard(e.hash)
	sh.mu.Lock()
	sh.tab.put(e.hash, sh.q.push(e), sh.q.head, sh.hashAt)
	sh.dirty = true
	sh.evictLocked()
	sh.mu.Unlock()
}

// evictLocked forgets the oldest keys beyond maxKeys (up to a claim).
func (d *dshard) evictLocked() {
	for d.tab.n > d.maxKeys && d.q.len() > 0 {
		e := d.q.at(d.q.head)
		if claimed(e.ref) {
			return
		}
		if d.tab.del(e.hash, d.q.head, d.q.head) {
			d.evicted++
		}
		d.q.pop()
	}
}

// forget drops the key hash h from the index if it still points at ref: the
// message there has another key (a hash collision, or an index that outlived a
// log truncated by a power failure).
func (d *dedupe) forget(h, ref uint64) {
	sh := d.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if seq, ok := sh.get(h); ok && sh.q.at(seq).ref == ref {
		sh.tab.del(h, seq, sh.q.head)
		sh.dirty = true
	}
}

func (d *dedupe) duplicate() { d.dups.Add(1) }

// counters fills the dedupe part of c.
func (d *dedupe) counters(c *StreamCounters) {
	c.Duplicates = d.dups.Load()
	for _, sh := range d.shards {
		sh.mu.Lock()
		c.DedupeKeys += sh.tab.n
		c.DedupeEvicted += sh.evicted
		sh.mu.Unlock()
	}
}

// resetCounters zeroes the eviction counts (after a rebuild).
func (d *dedupe) resetCounters() {
	for _, sh := range d.shards {
		sh.mu.Lock()
		sh.evicted = 0
		sh.mu.Unlock()
	}
}

// storedKey returns the idempotency key of the message at off in log, and
// whether the message is still stored.
func storedKey(log logstore.Log, off int64) (string, bool, error) {
	data, _, err := log.Read(off, 1, nil)
	if errors.Is(err, logstore.ErrOutOfRange) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	key, found := "", false
	err = batch.Each(data, func(r *batch.Record) bool {
		if r.Offset != off {
			return true
		}
		found = true
		key, _ = idempotencyKey(r)
		return false
	})
	return key, found, err
}

func idempotencyKey(r *batch.Record) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == IdempotencyKeyHeader {
			return string(h.Value), true
		}
	}
	return "", false
}

// encodeDedupe and decodeDedupe are the snapshot codec (package dedupesnap)
// over the index's own entries.
func encodeDedupe(covered []int64, entries []dentry) []byte {
	es := make([]dedupesnap.Entry, len(entries))
	for i, e := range entries {
		es[i] = dedupesnap.Entry{Hash: e.hash, Ref: e.ref, Ms: e.ms}
	}
	return dedupesnap.Encode(covered, es)
}

var errDedupeSnapshot = dedupesnap.ErrBad

func decodeDedupe(b []byte) ([]int64, []dentry, error) {
	covered, es, err := dedupesnap.Decode(b, dedupesnap.Limits{Partitions: MaxPartitions, Entries: MaxDedupeMaxKeys})
	if err != nil {
		return nil, nil, err
	}
	entries := make([]dentry, len(es))
	for i, e := range es {
		entries[i] = dentry{hash: e.Hash, ref: e.Ref, ms: e.Ms}
	}
	return covered, entries, nil
}

// snapshot returns the index as a snapshot of parts, or nil if nothing changed
// since the last one (unless force).
func (d *dedupe) snapshot(parts []logstore.Log, now time.Time, force bool) []byte {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	// The high watermarks first: a key indexed after this is either in the
	// entries read below or still claimed then.
	covered := make([]int64, len(parts))
	for i, l := range parts {
		covered[i] = l.HighWatermark()
	}
	dirty := false
	for _, sh := range d.shards {
		sh.mu.Lock()
		dirty = dirty || sh.dirty
		sh.mu.Unlock()
	}
	// A stream without keys is snapshotted too while it is written to, so that
	// the read after a crash stays short.
	if !force && (!dirty && slices.Equal(covered, d.covered) || now.Sub(d.saved) < dedupeSnapshotEvery) {
		return nil
	}
	d.covered = slices.Clone(covered)
	var entries []dentry
	for _, sh := range d.shards {
		sh.mu.Lock()
		sh.expireLocked(now)
		// A key being published lands at or after its claim's floor and is not
		// in the entries yet: the snapshot must not claim to cover it.
		for seq := sh.q.head; seq < sh.q.next; seq++ {
			e := sh.q.at(seq)
			switch {
			case claimed(e.ref):
				if p, floor := splitRef(e.ref &^ refClaimed); p < len(covered) {
					covered[p] = min(covered[p], floor)
				}
			default:
				if cur, ok := sh.get(e.hash); ok && cur == seq {
					entries = append(entries, *e)
				}
			}
		}
		sh.dirty = false
		sh.mu.Unlock()
	}
	slices.SortFunc(entries, func(a, b dentry) int { return cmp.Compare(a.ms, b.ms) }) // shards interleave; ties in any order
	d.saved = now
	return encodeDedupe(covered, entries)
}

// saveDedupe writes s's dedupe snapshot if it changed (always with force).
func (b *Broker) saveDedupe(s *stream, force bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.gone {
		return nil
	}
	data := s.dedupe.snapshot(s.parts, b.opts.now(), force)
	if data == nil {
		return nil
	}
	if err := vfs.WriteFileAtomic(b.fs, filepath.Join(s.dir, dedupeFile), data); err != nil {
		return fmt.Errorf("sluice: stream %s: save dedupe index: %w", s.cfg.Name, err)
	}
	return nil
}

// maxDedupeScanBytes is how much a rebuild reads per call to the log.
const maxDedupeScanBytes = 1 << 20

// loadDedupe rebuilds s's dedupe index from its snapshot (if valid) and the
// messages after it. Lock held: s is not shared yet.
func (b *Broker) loadDedupe(s *stream) error {
	now := b.opts.now()
	d := newDedupe(s.cfg.DedupeWindow, s.cfg.DedupeMaxKeys)
	s.dedupe = d
	cut := now.Add(-s.cfg.DedupeWindow).UnixMilli()
	var entries []dentry
	type refKey struct{ ref, hash uint64 }
	inSnap := map[refKey]bool{} // snapshot entries the scan reads again
	from := make([]int64, len(s.parts))
	for i, l := range s.parts {
		// A message's time is within DedupeWindow of its publish, so one whose
		// time is in the window was published at most two windows ago.
		off, err := l.OffsetForTime(now.Add(-2 * s.cfg.DedupeWindow))
		if err != nil {
			return err
		}
		from[i] = off
	}
	snapPath := filepath.Join(s.dir, dedupeFile)
	if data, err := b.fs.ReadFile(snapPath); err == nil {
		covered, snap, err := decodeDedupe(data)
		if err == nil && len(covered) > len(s.parts) {
			err = fmt.Errorf("%w: %d partitions, the stream has %d", errDedupeSnapshot, len(covered), len(s.parts))
		}
		ahead := false
		if err == nil {
			for i := range covered {
				ahead = ahead || covered[i] > s.parts[i].HighWatermark()
			}
			for _, e := range snap {
				p, off := splitRef(e.ref)
				ahead = ahead || off >= s.parts[p].HighWatermark()
			}
		}
		if ahead && err == nil {
			// The log lost a tail the snapshot covers (a power failure under a lax
			// sync policy). The offsets will be reused by new messages, which this
			// snapshot would hide from the next rebuild: remove it before any are
			// written, and use what of it still holds.
			if rerr := b.fs.Remove(snapPath); rerr != nil {
				return fmt.Errorf("dedupe index: %w", rerr)
			}
			if rerr := b.fs.SyncDir(s.dir); rerr != nil {
				return fmt.Errorf("dedupe index: %w", rerr)
			}
		}
		if err != nil {
			b.opts.Logger.Warn("sluice: ignoring dedupe snapshot; rebuilding from the log", "stream", s.cfg.Name, "error", err)
		} else {
			for i := range from {
				if i < len(covered) {
					from[i] = max(from[i], min(covered[i], s.parts[i].HighWatermark()))
				}
			}
			for _, e := range snap {
				p, off := splitRef(e.ref)
				// A message the log lost (a power failure under a lax sync policy)
				// is no original to point at.
				if e.ms >= cut && off < s.parts[p].HighWatermark() {
					entries = append(entries, e)
					if off >= from[p] {
						inSnap[refKey{e.ref, e.hash}] = true
					}
				}
			}
		}
	}
	buf := make([]byte, 0, maxDedupeScanBytes)
	for i, l := range s.parts {
		for off, hw := max(from[i], l.StartOffset()), l.HighWatermark(); off < hw; {
			data, next, err := l.Read(off, maxDedupeScanBytes, buf)
			if err != nil {
				return fmt.Errorf("dedupe index: partition %d: %w", i, err)
			}
			err = batch.Each(data, func(r *batch.Record) bool {
				if r.Offset < off {
					return true
				}
				if k, ok := idempotencyKey(r); ok && r.Timestamp >= cut {
					e := dentry{hash: keyHash(k), ref: makeRef(i, r.Offset), ms: r.Timestamp}
					if !inSnap[refKey{e.ref, e.hash}] {
						entries = append(entries, e)
					}
				}
				return true
			})
			if err != nil {
				return fmt.Errorf("dedupe index: partition %d: %w", i, err)
			}
			if next <= off {
				break
			}
			off = next
		}
	}
	slices.SortStableFunc(entries, func(a, b dentry) int { return cmp.Compare(a.ms, b.ms) })
	for _, e := range entries {
		d.add(e)
	}
	d.resetCounters()
	return nil
}
