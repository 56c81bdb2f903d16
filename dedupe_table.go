package sluice

// htab maps key hashes to FIFO sequence numbers in 8 bytes a slot: an open
// addressing table with linear probing, indexed by the hash's top bits. A slot
// holds a 31-bit fingerprint of the hash (bits 33..63, with bit 31 set so that a
// used slot is never zero) and the low 32 bits of the sequence number; the FIFO
// holds the full hash and fewer than 2^32 entries, so both are recovered exactly.
// At most three quarters of the slots are used, at least three sixteenths once the
// table grew: 11 to 43 bytes a key, where a Go map takes about 40.
type htab struct {
	slots []uint64 // fingerprint << 32 | low 32 bits of seq; 0 is empty
	bits  uint
	n     int
}

const (
	htabMinBits = 6
	htabUsed    = 1 << 31
)

func fingerprint(h uint64) uint64 { return h>>33 | htabUsed }

// home is the slot a hash (or a slot's fingerprint) starts probing at.
func (t *htab) home(fp uint64) uint64 { return (fp &^ htabUsed) >> (31 - t.bits) }

func (t *htab) mask() uint64 { return uint64(len(t.slots) - 1) }

// get returns the sequence number stored for h; at (seq → full hash, for the
// entries the table holds) tells fingerprint twins apart, and head is the FIFO's
// head (every stored seq is within 2^32 of it).
func (t *htab) get(h uint64, head uint64, hashAt func(uint64) uint64) (uint64, bool) {
	if t.n == 0 {
		return 0, false
	}
	fp := fingerprint(h)
	for i := t.home(fp); ; i = (i + 1) & t.mask() {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if s>>32 == fp {
			seq := fullSeq(uint32(s), head)
			if hashAt(seq) == h {
				return seq, true
			}
		}
	}
}

func fullSeq(low uint32, head uint64) uint64 { return head + uint64(low-uint32(head)) }

// put stores seq for h, replacing what h had.
func (t *htab) put(h, seq uint64, head uint64, hashAt func(uint64) uint64) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(t.bits+1, htabMinBits), head)
	}
	fp := fingerprint(h)
	for i := t.home(fp); ; i = (i + 1) & t.mask() {
		s := t.slots[i]
		if s == 0 {
			t.slots[i] = fp<<32 | uint64(uint32(seq))
			t.n++
			return
		}
		if s>>32 == fp && hashAt(fullSeq(uint32(s), head)) == h {
			t.slots[i] = fp<<32 | uint64(uint32(seq))
			return
		}
	}
}

// del removes h if it maps to seq, and reports whether it did.
func (t *htab) del(h, seq uint64, head uint64) bool {
	if t.n == 0 {
		return false
	}
	fp := fingerprint(h)
	want := fp<<32 | uint64(uint32(seq))
	i := t.home(fp)
	for ; ; i = (i + 1) & t.mask() {
		s := t.slots[i]
		if s == 0 {
			return false
		}
		if s == want {
			break
		}
	}
	// Backward shift: pull each following slot of the run back into the hole
	// unless its home lies cyclically in (hole, slot].
	m := t.mask()
	for j := (i + 1) & m; t.slots[j] != 0; j = (j + 1) & m {
		k := t.home(t.slots[j] >> 32)
		if (j-k)&m >= (j-i)&m {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
	t.n--
	if t.bits > htabMinBits && t.n*16 < len(t.slots)*3 {
		t.resize(t.bits-1, head)
	}
	return true
}

func (t *htab) resize(bits uint, head uint64) {
	old := t.slots
	t.slots, t.bits = make([]uint64, 1<<bits), bits
	m := t.mask()
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := t.home(s >> 32)
		for t.slots[i] != 0 {
			i = (i + 1) & m
		}
		t.slots[i] = s
	}
}
