package vfs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestMemTearSectors checks that under TearSectors a torn write survives as whole
// sectors aligned to the file offset, each one entirely new or entirely old (zeros
// beyond the old end), and that over many crashes a later sector does survive
// without an earlier one: the model is not a prefix model in disguise.
func TestMemTearSectors(t *testing.T) {
	const name = "/f"
	old := bytes.Repeat([]byte{'o'}, 700) // synced; ends inside sector 1
	write := bytes.Repeat([]byte{'n'}, 3*SectorSize)
	const off = 300 // the write covers sectors 0..3, the first and last partly
	outOfOrder := false
	for seed := range uint64(400) {
		m := NewMem()
		m.SetTearMode(TearSectors)
		f, err := m.Create(name)
		must(t, err)
		_, err = f.Write(old)
		must(t, err)
		must(t, f.Sync())
		must(t, m.SyncDir("/"))
		_, err = f.WriteAt(write, off)
		must(t, err)
		m.Crash(rand.New(rand.NewPCG(seed, 1)))
		got, err := m.ReadFile(name)
		must(t, err)
		if len(got) < len(old) || len(got) > off+len(write) {
			t.Fatalf("seed %d: %d bytes after the crash, want [%d, %d]", seed, len(got), len(old), off+len(write))
		}
		var kept []bool
		for s := 0; s*SectorSize < off+len(write); s++ {
			lo, hi := max(s*SectorSize, off), min((s+1)*SectorSize, off+len(write))
			if lo >= len(got) {
				kept = append(kept, false)
				continue
			}
			piece := got[lo:min(hi, len(got))]
			switch {
			case len(piece) == hi-lo && bytes.Count(piece, []byte{'n'}) == len(piece):
				kept = append(kept, true)
			case bytes.Equal(piece, expectOld(old, lo, lo+len(piece))):
				kept = append(kept, false)
			default:
				t.Fatalf("seed %d: sector %d is torn inside: %q", seed, s, piece)
			}
		}
		if !bytes.Equal(got[:off], old[:off]) {
			t.Fatalf("seed %d: bytes before the write changed", seed)
		}
		for i := 1; i < len(kept); i++ {
			if kept[i] && !kept[i-1] {
				outOfOrder = true
			}
		}
		f.Close()
	}
	if !outOfOrder {
		t.Fatal("no crash kept a sector without the one before it")
	}
}

// expectOld is what [lo, hi) holds if the write did not reach it: the old content,
// then zeros where the file was extended.
func expectOld(old []byte, lo, hi int) []byte {
	out := make([]byte, hi-lo)
	if lo < len(old) {
		copy(out, old[lo:min(hi, len(old))])
	}
	return out
}

// TestMemPowerCut checks that between PowerCut and PowerOn nothing can be read or
// written, through old handles or new ones, and that the crash's world is what
// PowerOn shows: a write made after the cut cannot leak into it.
func TestMemPowerCut(t *testing.T) {
	m := NewMem()
	f, err := m.Create("/a")
	must(t, err)
	_, err = f.Write([]byte("synced"))
	must(t, err)
	must(t, f.Sync())
	must(t, m.SyncDir("/"))
	m.PowerCut(nil)
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write on an old handle after the cut: %v", err)
	}
	if _, err := m.Create("/b"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("create after the cut: %v", err)
	}
	if err := m.MkdirAll("/d"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("mkdir after the cut: %v", err)
	}
	if _, err := m.ReadFile("/a"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("read after the cut: %v", err)
	}
	if m.Exists("/a") {
		t.Fatal("a file exists while the power is off")
	}
	m.PowerOn()
	if got, err := m.ReadFile("/a"); err != nil || string(got) != "synced" {
		t.Fatalf("after PowerOn: %q, %v", got, err)
	}
	if m.Exists("/b") || m.Exists("/d") {
		t.Fatal("a name created during the cut exists after PowerOn")
	}
	f.Close()
}
