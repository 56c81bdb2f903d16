package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConformance runs the same contract over both implementations: Mem is only a
// faithful stand-in for the disk in the crash tests if it behaves as OS does.
func TestConformance(t *testing.T) {
	impls := map[string]func(t *testing.T) (FS, string){
		"OS":  func(t *testing.T) (FS, string) { return OS{}, t.TempDir() },
		"Mem": func(t *testing.T) (FS, string) { return NewMem(), "/root" },
	}
	for name, setup := range impls {
		t.Run(name, func(t *testing.T) {
			fsys, root := setup(t)
			conformance(t, fsys, root)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func conformance(t *testing.T, fsys FS, root string) {
	dir := filepath.Join(root, "a", "b")
	must(t, fsys.MkdirAll(dir))
	must(t, fsys.MkdirAll(dir)) // idempotent
	if !fsys.Exists(dir) {
		t.Fatal("MkdirAll'd directory does not exist")
	}
	name := filepath.Join(dir, "f.log")

	// Create, write, read back, size.
	f, err := fsys.Create(name)
	must(t, err)
	for _, s := range []string{"hello ", "world"} {
		if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	must(t, f.Sync())
	if size, err := f.Size(); err != nil || size != 11 {
		t.Fatalf("Size = %d, %v", size, err)
	}
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 6); err != nil || string(buf[:n]) != "world" {
		t.Fatalf("ReadAt(6) = %q, %v", buf[:n], err)
	}
	if n, err := f.ReadAt(buf, 8); err != io.EOF || string(buf[:n]) != "rld" {
		t.Fatalf("ReadAt past the end = %q, %v; want the rest and io.EOF", buf[:n], err)
	}
	must(t, f.Truncate(5))
	if size, _ := f.Size(); size != 5 {
		t.Fatalf("Size after Truncate = %d", size)
	}
	must(t, f.Close())
	if got, err := fsys.ReadFile(name); err != nil || string(got) != "hello" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}

	// OpenAppend appends and refuses WriteAt, as O_APPEND does; Open is read-only;
	// Create truncates.
	f, err = fsys.OpenAppend(name)
	must(t, err)
	_, err = f.Write([]byte("!"))
	must(t, err)
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("WriteAt on a file opened with OpenAppend succeeded")
	}
	must(t, f.Close())
	if got, _ := fsys.ReadFile(name); string(got) != "hello!" {
		t.Fatalf("after OpenAppend: %q", got)
	}
	r, err := fsys.Open(name)
	must(t, err)
	if _, err := r.Write([]byte("x")); err == nil {
		t.Fatal("Write on a file opened with Open succeeded")
	}
	if _, err := r.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("WriteAt on a file opened with Open succeeded")
	}
	must(t, r.Close())

	// OpenWrite writes in place: Write from offset 0 on, WriteAt anywhere, a gap
	// past the end reading as zeros; Truncate shrinks and extends with zeros.
	f, err = fsys.OpenWrite(name)
	must(t, err)
	_, err = f.Write([]byte("J"))
	must(t, err)
	_, err = f.Write([]byte("E"))
	must(t, err)
	_, err = f.WriteAt([]byte("LO"), 2)
	must(t, err)
	if got, _ := fsys.ReadFile(name); string(got) != "JELOo!" {
		t.Fatalf("after Write and WriteAt in place: %q", got)
	}
	_, err = f.WriteAt([]byte("z"), 7)
	must(t, err)
	if got, _ := fsys.ReadFile(name); string(got) != "JELOo!\x00z" {
		t.Fatalf("after WriteAt past the end: %q", got)
	}
	must(t, f.Truncate(3))
	must(t, f.Truncate(5))
	if got, _ := fsys.ReadFile(name); string(got) != "JEL\x00\x00" {
		t.Fatalf("after Truncate down and up: %q", got)
	}
	if size, err := f.Size(); err != nil || size != 5 {
		t.Fatalf("Size = %d, %v", size, err)
	}
	must(t, f.Sync())
	must(t, f.Close())
	f, err = fsys.Create(name)
	must(t, err)
	must(t, f.Close())
	if got, _ := fsys.ReadFile(name); len(got) != 0 {
		t.Fatalf("Create did not truncate: %q", got)
	}
	if err := f.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}

	// Missing files.
	missing := filepath.Join(dir, "missing")
	for op, err := range map[string]error{
		"Open":       func() error { _, err := fsys.Open(missing); return err }(),
		"OpenAppend": func() error { _, err := fsys.OpenAppend(missing); return err }(),
		"OpenWrite":  func() error { _, err := fsys.OpenWrite(missing); return err }(),
		"ReadFile":   func() error { _, err := fsys.ReadFile(missing); return err }(),
		"Remove":     fsys.Remove(missing),
		"Rename":     fsys.Rename(missing, missing+"2"),
		"ReadDir":    func() error { _, err := fsys.ReadDir(missing); return err }(),
		"Create":     func() error { _, err := fsys.Create(filepath.Join(missing, "x")); return err }(),
	} {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s of a missing name = %v, want fs.ErrNotExist", op, err)
		}
	}
	if fsys.Exists(missing) {
		t.Fatal("Exists(missing)")
	}

	// ReadDir is sorted and lists only direct children.
	for _, n := range []string{"c", "a", "b"} {
		must(t, WriteFileAtomic(fsys, filepath.Join(dir, n), []byte(n)))
	}
	must(t, fsys.MkdirAll(filepath.Join(dir, "sub", "deeper")))
	names, err := fsys.ReadDir(dir)
	must(t, err)
	if want := []string{"a", "b", "c", "f.log", "sub"}; !slices.Equal(names, want) {
		t.Fatalf("ReadDir = %v, want %v (no .tmp left by WriteFileAtomic)", names, want)
	}
	must(t, WriteFileAtomic(fsys, filepath.Join(dir, "a"), []byte("replaced")))
	if got, _ := fsys.ReadFile(filepath.Join(dir, "a")); string(got) != "replaced" {
		t.Fatalf("WriteFileAtomic over a file: %q", got)
	}

	// Rename over an existing file; rename of a directory moves its content.
	must(t, fsys.Rename(filepath.Join(dir, "b"), filepath.Join(dir, "c")))
	if got, _ := fsys.ReadFile(filepath.Join(dir, "c")); string(got) != "b" || fsys.Exists(filepath.Join(dir, "b")) {
		t.Fatalf("Rename over a file: c=%q, b exists %v", got, fsys.Exists(filepath.Join(dir, "b")))
	}
	must(t, WriteFileAtomic(fsys, filepath.Join(dir, "sub", "deeper", "x"), []byte("x")))
	must(t, fsys.Rename(filepath.Join(dir, "sub"), filepath.Join(dir, "moved")))
	if got, err := fsys.ReadFile(filepath.Join(dir, "moved", "deeper", "x")); err != nil || string(got) != "x" {
		t.Fatalf("file under a renamed directory: %q, %v", got, err)
	}

	// Remove refuses a non-empty directory; RemoveAll does not.
	if err := fsys.Remove(filepath.Join(dir, "moved")); err == nil {
		t.Fatal("Remove of a non-empty directory succeeded")
	}
	must(t, fsys.SyncDir(dir))
	must(t, fsys.RemoveAll(filepath.Join(root, "a")))
	if fsys.Exists(name) || fsys.Exists(dir) {
		t.Fatal("RemoveAll left files behind")
	}
	must(t, fsys.RemoveAll(filepath.Join(root, "a"))) // missing is fine
}

// memWith creates dir/name on a new Mem with durable content synced, then appends
// unsynced (not synced), making the name durable.
func memWith(t *testing.T, synced, unsynced string) (*Mem, File) {
	t.Helper()
	m := NewMem()
	must(t, m.MkdirAll("/d"))
	must(t, m.SyncDir("/"))
	f, err := m.Create("/d/f")
	must(t, err)
	must(t, m.SyncDir("/d"))
	_, err = f.Write([]byte(synced))
	must(t, err)
	must(t, f.Sync())
	_, err = f.Write([]byte(unsynced))
	must(t, err)
	return m, f
}

// TestMemCrashTearsUnsyncedTail: a crash keeps the synced bytes plus a prefix of
// the unsynced ones, every length possible across seeds, possibly followed by zeros
// up to the length written (the size made it to disk, the data did not), never
// anything else; and with a nil rng exactly the synced bytes.
func TestMemCrashTearsUnsyncedTail(t *testing.T) {
	const synced, unsynced = "durable|", "0123456789"
	seen := map[string]bool{}
	for seed := range uint64(1000) {
		m, _ := memWith(t, synced, unsynced)
		m.Crash(rand.New(rand.NewPCG(seed, 0)))
		got, err := m.ReadFile("/d/f")
		must(t, err)
		tail, ok := bytes.CutPrefix(got, []byte(synced))
		kept := bytes.TrimRight(tail, "\x00")
		if !ok || !bytes.HasPrefix([]byte(unsynced), kept) || (len(tail) != len(kept) && len(tail) != len(unsynced)) {
			t.Fatalf("seed %d: after the crash the file is %q", seed, got)
		}
		seen[string(tail)] = true
	}
	// Every prefix, and every prefix padded with zeros (the empty one padded is
	// all zeros; the whole one cannot be padded).
	if want := 2*(len(unsynced)+1) - 1; len(seen) != want {
		t.Fatalf("%d tails seen, want %d: %q", len(seen), want, slices.Sorted(maps.Keys(seen)))
	}
	m, _ := memWith(t, synced, unsynced)
	m.Crash(nil)
	if got, _ := m.ReadFile("/d/f"); string(got) != synced {
		t.Fatalf("Crash(nil) kept %q, want the synced %q", got, synced)
	}
}

// TestMemCrashInPlace: writes over synced bytes and truncates are lost or torn
// like appends. After a synced "abcdefgh", WriteAt("XY", 2), Truncate(6) and
// WriteAt("PQ", 5) unsynced, a crash leaves exactly one of the states a prefix of
// these changes makes, the last change torn; every one of them across seeds.
func TestMemCrashInPlace(t *testing.T) {
	want := map[string]bool{
		"abcdefgh":      true, // nothing
		"abXdefgh":      true, // XY torn after X
		"abXYefgh":      true, // XY
		"abXYef":        true, // XY, truncate
		"abXYeP":        true, // XY, truncate, PQ torn after P (the size is 6 either way)
		"abXYe\x00\x00": true, // ... torn after nothing, the size reached 7
		"abXYeP\x00":    true, // ... torn after P, the size reached 7
		"abXYePQ":       true, // all
	}
	seen := map[string]bool{}
	for seed := range uint64(2000) {
		m, f := memWith(t, "abcdefgh", "")
		_, err := f.WriteAt([]byte("XY"), 2)
		must(t, err)
		must(t, f.Truncate(6))
		_, err = f.WriteAt([]byte("PQ"), 5)
		must(t, err)
		if got, _ := m.ReadFile("/d/f"); string(got) != "abXYePQ" {
			t.Fatalf("before the crash: %q", got)
		}
		m.Crash(rand.New(rand.NewPCG(seed, 1)))
		got, err := m.ReadFile("/d/f")
		must(t, err)
		if !want[string(got)] {
			t.Fatalf("seed %d: after the crash the file is %q, which no prefix of the changes makes", seed, got)
		}
		seen[string(got)] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("states seen: %q; want all of %q", slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(want)))
	}
	// A Sync makes the changes durable: nothing is lost or torn after it.
	m, f := memWith(t, "abcdefgh", "")
	_, err := f.WriteAt([]byte("XY"), 2)
	must(t, err)
	must(t, f.Sync())
	m.Crash(rand.New(rand.NewPCG(1, 1)))
	if got, _ := m.ReadFile("/d/f"); string(got) != "abXYefgh" {
		t.Fatalf("a synced write in place after the crash: %q", got)
	}
}

// TestMemCrashNames: names are durable only through SyncDir of their directory,
// which itself must be durable; renames and removals likewise.
func TestMemCrashNames(t *testing.T) {
	write := func(m *Mem, name, data string) {
		f, err := m.Create(name)
		must(t, err)
		_, err = f.Write([]byte(data))
		must(t, err)
		must(t, f.Sync())
		must(t, f.Close())
	}
	tests := []struct {
		name  string
		setup func(m *Mem)
		want  map[string]string // file -> content after the crash; absent: gone
	}{
		{"synced file, directory not synced", func(m *Mem) {
			write(m, "/d/f", "x")
		}, map[string]string{}},
		{"synced file and directory", func(m *Mem) {
			write(m, "/d/f", "x")
			must(t, m.SyncDir("/d"))
		}, map[string]string{"/d/f": "x"}},
		{"directory whose own name is not durable", func(m *Mem) {
			must(t, m.MkdirAll("/d/e"))
			write(m, "/d/e/f", "x")
			must(t, m.SyncDir("/d/e"))
		}, map[string]string{}},
		{"rename not synced", func(m *Mem) {
			write(m, "/d/a", "x")
			must(t, m.SyncDir("/d"))
			must(t, m.Rename("/d/a", "/d/b"))
		}, map[string]string{"/d/a": "x"}},
		{"rename synced", func(m *Mem) {
			write(m, "/d/a", "x")
			must(t, m.SyncDir("/d"))
			must(t, m.Rename("/d/a", "/d/b"))
			must(t, m.SyncDir("/d"))
		}, map[string]string{"/d/b": "x"}},
		{"remove not synced", func(m *Mem) {
			write(m, "/d/a", "x")
			must(t, m.SyncDir("/d"))
			must(t, m.Remove("/d/a"))
		}, map[string]string{"/d/a": "x"}},
		{"remove synced", func(m *Mem) {
			write(m, "/d/a", "x")
			must(t, m.SyncDir("/d"))
			must(t, m.Remove("/d/a"))
			must(t, m.SyncDir("/d"))
		}, map[string]string{}},
		{"truncate synced", func(m *Mem) {
			write(m, "/d/a", "long content")
			must(t, m.SyncDir("/d"))
			f, err := m.OpenWrite("/d/a")
			must(t, err)
			must(t, f.Truncate(4))
			must(t, f.Sync())
		}, map[string]string{"/d/a": "long"}},
		{"atomic write", func(m *Mem) {
			must(t, m.SyncDir("/d"))
			must(t, WriteFileAtomic(m, "/d/a", []byte("v1")))
			must(t, WriteFileAtomic(m, "/d/a", []byte("v2")))
		}, map[string]string{"/d/a": "v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMem()
			must(t, m.MkdirAll("/d"))
			must(t, m.SyncDir("/"))
			tt.setup(m)
			m.Crash(rand.New(rand.NewPCG(1, 2)))
			for _, name := range []string{"/d/f", "/d/a", "/d/b", "/d/e/f", "/d/a.tmp"} {
				got, err := m.ReadFile(name)
				want, ok := tt.want[name]
				if ok != (err == nil) || string(got) != want {
					t.Fatalf("%s after the crash: %q, %v; want present %v with %q", name, got, err, ok, want)
				}
			}
		})
	}
}

// TestMemCrashedHandles: every handle opened before a crash fails with
// ErrCrashed, and new handles work.
func TestMemCrashedHandles(t *testing.T) {
	m, f := memWith(t, "a", "b")
	m.Crash(nil)
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("Write after the crash = %v", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("Sync after the crash = %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrCrashed) {
		t.Fatalf("ReadAt after the crash = %v", err)
	}
	g, err := m.OpenAppend("/d/f")
	must(t, err)
	_, err = g.Write([]byte("c"))
	must(t, err)
	must(t, g.Sync())
	if got, _ := m.ReadFile("/d/f"); string(got) != "ac" {
		t.Fatalf("after the crash and a new write: %q", got)
	}
}

func TestMemSyncError(t *testing.T) {
	m, f := memWith(t, "a", "b")
	before := m.Syncs()
	errEIO := errors.New("EIO")
	m.SetSyncError(errEIO)
	if err := f.Sync(); !errors.Is(err, errEIO) {
		t.Fatalf("Sync = %v", err)
	}
	if err := m.SyncDir("/d"); !errors.Is(err, errEIO) {
		t.Fatalf("SyncDir = %v", err)
	}
	if m.Syncs() != before {
		t.Fatal("a failed sync was counted")
	}
	m.Crash(nil)
	if got, _ := m.ReadFile("/d/f"); string(got) != "a" {
		t.Fatalf("a failed sync made %q durable", got)
	}
	m.SetSyncError(nil)
	g, err := m.OpenAppend("/d/f")
	must(t, err)
	must(t, g.Sync())
	if m.Syncs() != before+1 {
		t.Fatalf("Syncs = %d, want %d", m.Syncs(), before+1)
	}
}
