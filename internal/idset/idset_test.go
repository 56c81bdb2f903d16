package idset

import (
	"fmt"
	"runtime"
	"testing"

	"pgregory.net/rapid"
)

// model is the obvious implementation: a queue of entries and, per hash, the
// index of its newest entry.
type model struct {
	queue  []entry
	first  int // index of the oldest queued entry
	newest map[Hash]int
}

type entry struct {
	h   Hash
	sec uint32
}

func (m *model) add(h Hash, sec uint32) {
	m.queue = append(m.queue, entry{h, sec})
	m.newest[h] = len(m.queue) - 1
}

func (m *model) pop() bool {
	e := m.queue[m.first]
	m.first++
	if m.newest[e.h] == m.first-1 {
		delete(m.newest, e.h)
		return true
	}
	return false
}

func TestSetMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var s Set
		m := &model{newest: map[Hash]int{}}
		// Few distinct hashes, many sharing Hash[0] (the index slot), some placed
		// at the end of the index, so that probing, collisions, re-adds and
		// backward shifts all happen, also across the end of the table.
		hashOf := func(i int) Hash { return Hash{uint64(i%7) - 3, uint64(i)} }
		domain := rapid.IntRange(0, 300)
		sec := uint32(1000)
		check := func() {
			if s.Len() != len(m.newest) || s.Queued() != len(m.queue)-m.first {
				rt.Fatalf("Len %d Queued %d, model %d and %d", s.Len(), s.Queued(), len(m.newest), len(m.queue)-m.first)
			}
			for i := range 301 {
				_, want := m.newest[hashOf(i)]
				if s.Has(hashOf(i)) != want {
					rt.Fatalf("Has(%d) = %v, want %v", i, !want, want)
				}
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"add": func(rt *rapid.T) {
				h := hashOf(domain.Draw(rt, "id"))
				sec += uint32(rapid.IntRange(0, 3).Draw(rt, "tick"))
				s.Add(h, sec)
				m.add(h, sec)
			},
			"addMany": func(rt *rapid.T) { // grow the ring past a few sizes
				for range rapid.IntRange(1, 200).Draw(rt, "n") {
					h := hashOf(domain.Draw(rt, "id"))
					s.Add(h, sec)
					m.add(h, sec)
				}
			},
			"expire": func(rt *rapid.T) {
				cut := sec - uint32(rapid.IntRange(0, 20).Draw(rt, "age"))
				s.Expire(cut)
				for m.first < len(m.queue) && m.queue[m.first].sec < cut {
					m.pop()
				}
			},
			"evict": func(rt *rapid.T) {
				max := rapid.IntRange(0, 250).Draw(rt, "max")
				got := s.EvictOver(max)
				want := 0
				for len(m.newest) > max {
					if m.pop() {
						want++
					}
				}
				if got != want {
					rt.Fatalf("EvictOver(%d) forgot %d, model %d", max, got, want)
				}
			},
			"": func(rt *rapid.T) { check() },
		})
	})
}

func TestSetForgetsLateWhenTheClockGoesBack(t *testing.T) {
	var s Set
	s.Add(Hash{1, 1}, 100)
	s.Add(Hash{2, 2}, 50) // recorded after a clock step back
	s.Expire(60)
	if !s.Has(Hash{2, 2}) || !s.Has(Hash{1, 1}) {
		t.Fatal("an entry behind a newer one was forgotten early")
	}
	s.Expire(101)
	if s.Len() != 0 {
		t.Fatalf("Len %d after both expired", s.Len())
	}
}

// BenchmarkSetMemory reports the heap the set holds per hash at a few sizes
// (the ring grows by half and the index doubles, so it varies with n).
func BenchmarkSetMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000, 3_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var perID float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				var s Set
				for i := range n {
					s.Add(Hash{uint64(i) * 0x9E3779B97F4A7C15, uint64(i)}, 1)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perID = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(&s)
			}
			b.ReportMetric(perID, "bytes/id")
		})
	}
}

func BenchmarkSetAddHasExpire(b *testing.B) {
	var s Set
	for i := range b.N {
		h := Hash{uint64(i) * 0x9E3779B97F4A7C15, uint64(i)}
		s.Add(h, uint32(i))
		if !s.Has(h) {
			b.Fatal("lost")
		}
		s.EvictOver(100_000)
	}
}
