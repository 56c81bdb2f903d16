package sluice

import (
	"testing"

	"pgregory.net/rapid"
)

// TestHtabMatchesAMap drives the dedupe index's hash table and a Go map through
// the same puts and deletes, with hashes drawn from a small set (so that
// fingerprints and home slots collide) and sequence numbers that only grow, as a
// FIFO's do, and checks every lookup.
func TestHtabMatchesAMap(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var tab htab
		model := map[uint64]uint64{}  // hash → seq
		hashOf := map[uint64]uint64{} // seq → hash: the FIFO
		var head, next uint64
		// Hashes that share top bits (fingerprints, home slots) or low bits.
		pool := rapid.SliceOfN(rapid.Uint64(), 1, 300).Draw(t, "pool")
		for i := range pool {
			if i%3 == 1 {
				pool[i] = pool[i-1] ^ 1 // same fingerprint and home
			}
		}
		hashAt := func(seq uint64) uint64 {
			h, ok := hashOf[seq]
			if !ok {
				t.Fatalf("table asked for seq %d outside the FIFO [%d, %d)", seq, head, next)
			}
			return h
		}
		steps := rapid.IntRange(1, 1500).Draw(t, "steps")
		for range steps {
			h := pool[rapid.IntRange(0, len(pool)-1).Draw(t, "h")]
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1: // push and put
				seq := next
				next++
				hashOf[seq] = h
				tab.put(h, seq, head, hashAt)
				model[h] = seq
			case 2: // pop the FIFO head, deleting it if it is current
				if head == next {
					continue
				}
				hh := hashOf[head]
				deleted := tab.del(hh, head, head)
				cur, ok := model[hh]
				if want := ok && cur == head; deleted != want {
					t.Fatalf("del(%x, %d) = %v, want %v", hh, head, deleted, want)
				}
				if deleted {
					delete(model, hh)
				}
				delete(hashOf, head)
				head++
			case 3: // delete h's current entry
				seq, ok := model[h]
				if !ok {
					continue
				}
				if !tab.del(h, seq, head) {
					t.Fatalf("del(%x, %d) found nothing", h, seq)
				}
				delete(model, h)
			}
			if tab.n != len(model) {
				t.Fatalf("table holds %d, model %d", tab.n, len(model))
			}
			for _, ph := range pool {
				got, ok := tab.get(ph, head, hashAt)
				want, wok := model[ph]
				if ok != wok || got != want {
					t.Fatalf("get(%x) = %d, %v; want %d, %v", ph, got, ok, want, wok)
				}
			}
		}
	})
}

// TestHtabGrowsAndShrinks puts 100,000 keys (growing the table many times),
// deletes them oldest first (shrinking it), and checks every key on the way.
func TestHtabGrowsAndShrinks(t *testing.T) {
	var tab htab
	const n = 100_000
	hashes := make([]uint64, n)
	for i := range hashes {
		hashes[i] = keyHash(string(rune(i))+"k") ^ uint64(i)<<40
	}
	hashAt := func(seq uint64) uint64 { return hashes[seq] }
	for i := range uint64(n) {
		tab.put(hashes[i], i, 0, hashAt)
	}
	grown := len(tab.slots)
	for i := range uint64(n) {
		if seq, ok := tab.get(hashes[i], 0, hashAt); !ok || seq != i {
			t.Fatalf("get key %d = %d, %v", i, seq, ok)
		}
	}
	for i := range uint64(n) {
		if !tab.del(hashes[i], i, i) {
			t.Fatalf("del key %d found nothing", i)
		}
		if i%997 == 0 {
			for j := i + 1; j < n; j += 101 {
				if seq, ok := tab.get(hashes[j], i+1, hashAt); !ok || seq != j {
					t.Fatalf("after deleting %d keys, get key %d = %d, %v", i+1, j, seq, ok)
				}
			}
		}
	}
	if tab.n != 0 || len(tab.slots) >= grown || len(tab.slots) > 1<<htabMinBits {
		t.Fatalf("after deleting all: %d keys, %d slots (grown to %d)", tab.n, len(tab.slots), grown)
	}
}
