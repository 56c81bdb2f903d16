package sluice

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/sluicemq/sluice/internal/batch"
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
// one map slot (hash → entry number: 16 bytes, over the map's load factor). Keys
// are compared by their 64-bit xxhash; a hit is confirmed against the stored
// message's header, so that two keys with the same hash are never taken for one.
const dedupeFile = "dedupe.snap"

// dedupeChunk is the number of entries per FIFO chunk (24 KiB... 192 KiB).
const dedupeChunk = 8192

// dedupeSnapshotEvery is how often, at most, a changed index is snapshotted.
const dedupeSnapshotEvery = 30 * time.Second

// dentry is one accepted idempotency key.
type dentry struct {
	hash uint64
	ref  uint64 // partition << refOffsetBits | offset
	ms   int64  // the message's time, unix ms
}

const refOffsetBits = 54

func makeRef(part int, off int64) uint64 { return uint64(part)<<refOffsetBits | uint64(off) }
func splitRef(r uint64) (int, int64) {
	return int(r >> refOffsetBits), int64(r & (1<<refOffsetBits - 1))
}

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

// claim is a key being published: others with the same key wait for it.
type claim struct {
	part  int
	floor int64         // the partition's high watermark when claimed: the key lands at or after it
	done  chan struct{} // made by the first waiter (most claims have none), closed by finish
}

// dedupe is a stream's index of the idempotency keys it accepted within its window.
type dedupe struct {
	mu      sync.Mutex
	window  time.Duration
	maxKeys int
	idx     map[uint64]uint64 // key hash → seq of its entry
	q       fifo
	pending map[uint64]*claim
	evicted int64
	dups    int64
	dirty   bool // changed since the last snapshot
	saved   time.Time
	covered []int64 // of the last snapshot
}

func newDedupe(window time.Duration, maxKeys int) *dedupe {
	return &dedupe{window: window, maxKeys: maxKeys, idx: map[uint64]uint64{}, pending: map[uint64]*claim{}}
}

func keyHash(key string) uint64 { return xxhash.Sum64String(key) }

// configure applies an updated window and bound.
func (d *dedupe) configure(window time.Duration, maxKeys int) {
	d.mu.Lock()
	d.window, d.maxKeys = window, maxKeys
	d.mu.Unlock()
}

// expireLocked forgets the keys whose window passed, and the oldest keys beyond
// maxKeys.
func (d *dedupe) expireLocked(now time.Time) {
	cut := now.Add(-d.window).UnixMilli()
	for d.q.len() > 0 {
		e := d.q.at(d.q.head)
		over := d.q.len() > d.maxKeys
		if !over && e.ms >= cut {
			return
		}
		if over && e.ms >= cut {
			d.evicted++
		}
		seq := d.q.head
		d.q.pop()
		if d.idx[e.hash] == seq {
			delete(d.idx, e.hash)
		}
		d.dirty = true
	}
}

// lookup returns, for a key hash: the position of the key's message if the key
// was accepted within the window; or a claim being published, with the channel
// closed when it finishes; or, if neither, a new claim that the caller owns and
// must finish.
func (d *dedupe) lookup(h uint64, part int, floor int64, now time.Time) (ref uint64, found bool, wait *claim, done <-chan struct{}, own *claim) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(now)
	if seq, ok := d.idx[h]; ok {
		return d.q.at(seq).ref, true, nil, nil, nil
	}
	if c := d.pending[h]; c != nil {
		if c.done == nil {
			c.done = make(chan struct{})
		}
		return 0, false, c, c.done, nil
	}
	c := &claim{part: part, floor: floor}
	d.pending[h] = c
	return 0, false, nil, nil, c
}

// finish releases a claim; stored says the key's message was stored at ref with
// time ms.
func (d *dedupe) finish(h uint64, c *claim, stored bool, ref uint64, ms int64) {
	d.mu.Lock()
	if d.pending[h] == c {
		delete(d.pending, h)
	}
	if stored {
		d.addLocked(dentry{hash: h, ref: ref, ms: ms})
	}
	done := c.done
	d.mu.Unlock()
	if done != nil {
		close(done)
	}
}

func (d *dedupe) addLocked(e dentry) {
	d.idx[e.hash] = d.q.push(e)
	d.dirty = true
	for d.q.len() > d.maxKeys {
		old := d.q.pop()
		seq := d.q.head - 1
		if d.idx[old.hash] == seq {
			delete(d.idx, old.hash)
		}
		d.evicted++
	}
}

// forget drops the key hash h from the index if it still points at ref: the
// message there has another key (a hash collision, or an index that outlived a
// log truncated by a power failure).
func (d *dedupe) forget(h, ref uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq, ok := d.idx[h]; ok && d.q.at(seq).ref == ref {
		delete(d.idx, h)
		d.dirty = true
	}
}

func (d *dedupe) duplicate() {
	d.mu.Lock()
	d.dups++
	d.mu.Unlock()
}

// counters fills the dedupe part of c.
func (d *dedupe) counters(c *StreamCounters) {
	d.mu.Lock()
	c.Duplicates, c.DedupeKeys, c.DedupeEvicted = d.dups, d.q.len(), d.evicted
	d.mu.Unlock()
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
	err = eachRecord(data, func(r *batch.Record) bool {
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

// eachRecord calls fn for every record of the batches in data until fn returns
// false.
func eachRecord(data []byte, fn func(*batch.Record) bool) error {
	var it batch.Iter
	for len(data) > 0 {
		size, err := batch.PeekSize(data)
		if err != nil {
			return err
		}
		if err := it.Reset(data[:size]); err != nil {
			return err
		}
		for it.Next() {
			if !fn(it.Record()) {
				return nil
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		data = data[size:]
	}
	return nil
}

// Snapshot format, little-endian: "SLDD", version u32, partitions u32, then per
// partition the offset it covers (i64: every keyed message before it is in the
// snapshot), entry count u64, entries (hash u64, ref u64, ms i64), and a CRC-32C
// of everything before it.
const (
	dedupeMagic   = "SLDD"
	dedupeVersion = 1
	dedupeEntry   = 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeDedupe(covered []int64, entries []dentry) []byte {
	b := make([]byte, 0, 16+8*len(covered)+8+dedupeEntry*len(entries)+4)
	b = append(b, dedupeMagic...)
	b = binary.LittleEndian.AppendUint32(b, dedupeVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(covered)))
	for _, c := range covered {
		b = binary.LittleEndian.AppendUint64(b, uint64(c))
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint64(b, e.hash)
		b = binary.LittleEndian.AppendUint64(b, e.ref)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.ms))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errDedupeSnapshot = errors.New("sluice: bad dedupe snapshot")

func decodeDedupe(b []byte) (covered []int64, entries []dentry, err error) {
	bad := func(why string) ([]int64, []dentry, error) {
		return nil, nil, fmt.Errorf("%w: %s", errDedupeSnapshot, why)
	}
	if len(b) < 16+4 || !bytes.Equal(b[:4], []byte(dedupeMagic)) {
		return bad("no header")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return bad("checksum")
	}
	if v := binary.LittleEndian.Uint32(body[4:]); v != dedupeVersion {
		return bad(fmt.Sprintf("version %d", v))
	}
	n := binary.LittleEndian.Uint32(body[8:])
	if n > MaxPartitions {
		return bad(fmt.Sprintf("%d partitions", n))
	}
	rest := body[12:]
	if len(rest) < 8*int(n)+8 {
		return bad("short")
	}
	covered = make([]int64, n)
	for i := range covered {
		covered[i] = int64(binary.LittleEndian.Uint64(rest[8*i:]))
		if covered[i] < 0 || covered[i] >= 1<<refOffsetBits {
			return bad("offset out of range")
		}
	}
	rest = rest[8*n:]
	count := binary.LittleEndian.Uint64(rest)
	rest = rest[8:]
	if count > MaxDedupeMaxKeys || uint64(len(rest)) != count*dedupeEntry {
		return bad("entry count")
	}
	entries = make([]dentry, count)
	for i := range entries {
		e := rest[dedupeEntry*i:]
		entries[i] = dentry{hash: binary.LittleEndian.Uint64(e), ref: binary.LittleEndian.Uint64(e[8:]), ms: int64(binary.LittleEndian.Uint64(e[16:]))}
		if p, _ := splitRef(entries[i].ref); p >= int(n) {
			return bad("entry partition")
		}
	}
	return covered, entries, nil
}

// snapshot returns the index as a snapshot of parts, or nil if nothing changed
// since the last one (unless force).
func (d *dedupe) snapshot(parts []logstore.Log, now time.Time, force bool) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	covered := make([]int64, len(parts))
	for i, l := range parts {
		covered[i] = l.HighWatermark()
	}
	// A stream without keys is snapshotted too while it is written to, so that
	// the read after a crash stays short.
	if !force && (!d.dirty && slices.Equal(covered, d.covered) || now.Sub(d.saved) < dedupeSnapshotEvery) {
		return nil
	}
	d.expireLocked(now)
	// A key being published lands at or after its claim's floor and is not in
	// the entries yet: the snapshot must not claim to cover it.
	for _, c := range d.pending {
		if c.part < len(covered) {
			covered[c.part] = min(covered[c.part], c.floor)
		}
	}
	entries := make([]dentry, 0, d.q.len())
	for seq := d.q.head; seq < d.q.next; seq++ {
		entries = append(entries, *d.q.at(seq))
	}
	d.dirty, d.saved = false, now
	d.covered = slices.Clone(covered)
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
	inSnap := map[uint64]bool{} // snapshot entries the scan reads again
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
		ahead := false
		for i := range covered {
			ahead = ahead || i < len(s.parts) && covered[i] > s.parts[i].HighWatermark()
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
						inSnap[e.ref] = true
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
			err = eachRecord(data, func(r *batch.Record) bool {
				if r.Offset < off {
					return true
				}
				if k, ok := idempotencyKey(r); ok && r.Timestamp >= cut && !inSnap[makeRef(i, r.Offset)] {
					entries = append(entries, dentry{hash: keyHash(k), ref: makeRef(i, r.Offset), ms: r.Timestamp})
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
		d.addLocked(e)
	}
	d.evicted, d.dirty = 0, true
	return nil
}
