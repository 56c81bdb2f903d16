package idset

// Hash is a 128-bit hash of an id. The caller chooses the hash function; the
// set uses Hash[0] to place it in the index, so that half must be uniform.
type Hash [2]uint64

// Set is a set of hashes with their insertion order. The zero value is empty
// and ready to use.
type Set struct {
	hs   []Hash   // ring, oldest first from head
	secs []uint32 // the second each ring entry was added in
	head int
	n    int // entries in the ring, stale ones included

	index []uint32 // ring position + 1 for each held hash; 0 is empty
	count int      // hashes held
}

// minRing is the smallest ring a non-empty set allocates.
const minRing = 64

// Len returns how many hashes the set holds.
func (s *Set) Len() int { return s.count }

// Queued returns how many entries the ring holds: Len plus the older entries
// of hashes added again.
func (s *Set) Queued() int { return s.n }

// Has reports whether the set holds h.
func (s *Set) Has(h Hash) bool {
	_, ok := s.find(h)
	return ok
}

// find returns the index slot that holds h.
func (s *Set) find(h Hash) (slot int, ok bool) {
	if len(s.index) == 0 {
		return 0, false
	}
	mask := len(s.index) - 1
	for i := int(h[0]) & mask; ; i = (i + 1) & mask {
		v := s.index[i]
		if v == 0 {
			return i, false
		}
		if s.hs[v-1] == h {
			return i, true
		}
	}
}

// Add adds h, recorded in second sec, as the newest entry. If h is held
// already, it is held from now on by this entry.
func (s *Set) Add(h Hash, sec uint32) {
	if s.n == len(s.hs) {
		s.grow()
	}
	pos := (s.head + s.n) % len(s.hs)
	s.hs[pos], s.secs[pos] = h, sec
	s.n++
	s.insert(pos)
}

// insert points the index at ring position pos for the hash stored there.
func (s *Set) insert(pos int) {
	slot, ok := s.find(s.hs[pos])
	if !ok {
		s.count++
	}
	s.index[slot] = uint32(pos) + 1
}

// grow enlarges the ring by half (not double: it is most of the memory), lays
// it out from position 0 and rebuilds the index for the new positions.
func (s *Set) grow() {
	size := max(minRing, len(s.hs)+len(s.hs)/2)
	hs, secs := make([]Hash, size), make([]uint32, size)
	for j := range s.n {
		k := (s.head + j) % len(s.hs)
		hs[j], secs[j] = s.hs[k], s.secs[k]
	}
	s.hs, s.secs, s.head = hs, secs, 0
	// The index holds at most len(hs) hashes, at most three quarters full.
	slots := 1
	for slots*3 < size*4 {
		slots *= 2
	}
	s.index, s.count = make([]uint32, slots), 0
	for j := range s.n { // oldest first, so a hash ends at its newest entry
		s.insert(j)
	}
}

// pop removes the oldest entry and reports whether that forgot its hash (it
// does not when the hash was added again since).
func (s *Set) pop() bool {
	pos := s.head
	h := s.hs[pos]
	slot, ok := s.find(h)
	if !ok {
		panic("idset: a queued hash is not in the index")
	}
	forgot := s.index[slot] == uint32(pos)+1
	if forgot {
		s.remove(slot)
	}
	s.hs[pos] = Hash{}
	s.head = (s.head + 1) % len(s.hs)
	s.n--
	return forgot
}

// remove empties an index slot and shifts back the entries after it whose home
// slot is not between it and them, so that every probe sequence stays unbroken.
func (s *Set) remove(slot int) {
	mask := len(s.index) - 1
	i := slot
	for j := (i + 1) & mask; s.index[j] != 0; j = (j + 1) & mask {
		home := int(s.hs[s.index[j]-1][0]) & mask
		// The entry at j stays if its home is cyclically within (i, j].
		if i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue
		}
		s.index[i] = s.index[j]
		i = j
	}
	s.index[i] = 0
	s.count--
}

// Expire forgets entries from the oldest on while they were added before second
// cut. An entry added with an earlier second after a later one (a clock that
// went back) waits behind it: hashes are forgotten late, never early.
func (s *Set) Expire(cut uint32) {
	for s.n > 0 && s.secs[s.head] < cut {
		s.pop()
	}
	s.releaseIfEmpty()
}

// EvictOver forgets the oldest hashes while more than max are held, and returns
// how many it forgot.
func (s *Set) EvictOver(max int) int {
	forgot := 0
	for s.count > max {
		if s.pop() {
			forgot++
		}
	}
	s.releaseIfEmpty()
	return forgot
}

// releaseIfEmpty lets the memory of an emptied set go.
func (s *Set) releaseIfEmpty() {
	if s.n == 0 && len(s.hs) > minRing {
		*s = Set{}
	}
}
