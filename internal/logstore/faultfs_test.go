package logstore

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/internal/vfs"
)

// crashFS is a vfs.Mem that crashes itself right after its k-th mutating operation
// (a write, sync, truncate, create, rename, remove or directory sync) once armed.
// Crashing from inside the engine's own I/O lands the crash where it matters: with
// a group written but not synced, between a segment's sync and its index, between
// creating a segment and syncing the directory. A crash from the test goroutine
// mostly lands while the engine is idle.
type crashFS struct {
	*vfs.Mem
	rng *rand.Rand // used once, by the crashing operation

	mu      sync.Mutex
	left    int64         // operations until the crash; 0 when not armed
	crashCh chan struct{} // closed at the crash
	crashed atomic.Bool
}

func newCrashFS(seed uint64) *crashFS {
	return &crashFS{Mem: vfs.NewMem(), rng: rand.New(rand.NewPCG(seed, 0xfa11))}
}

// arm makes the k-th mutating operation from now crash the file system, and
// returns a channel closed when it has.
func (c *crashFS) arm(k int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.left, c.crashCh = k, make(chan struct{})
	c.crashed.Store(false)
	return c.crashCh
}

// step counts one mutating operation, which has just completed.
func (c *crashFS) step() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left == 0 {
		return
	}
	if c.left--; c.left == 0 {
		c.crashed.Store(true)
		c.Mem.Crash(c.rng)
		close(c.crashCh)
	}
}

func (c *crashFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return crashFile{File: f, c: c}, nil
}

func (c *crashFS) Create(name string) (vfs.File, error)     { return c.wrap(c.Mem.Create(name)) }
func (c *crashFS) OpenAppend(name string) (vfs.File, error) { return c.wrap(c.Mem.OpenAppend(name)) }
func (c *crashFS) OpenWrite(name string) (vfs.File, error)  { return c.wrap(c.Mem.OpenWrite(name)) }

func (c *crashFS) Remove(name string) error {
	defer c.step()
	return c.Mem.Remove(name)
}

func (c *crashFS) Rename(oldname, newname string) error {
	defer c.step()
	return c.Mem.Rename(oldname, newname)
}

func (c *crashFS) SyncDir(dir string) error {
	defer c.step()
	return c.Mem.SyncDir(dir)
}

type crashFile struct {
	vfs.File
	c *crashFS
}

func (f crashFile) Write(p []byte) (int, error) {
	defer f.c.step()
	return f.File.Write(p)
}

func (f crashFile) WriteAt(p []byte, off int64) (int, error) {
	defer f.c.step()
	return f.File.WriteAt(p, off)
}

func (f crashFile) Sync() error {
	defer f.c.step()
	return f.File.Sync()
}

func (f crashFile) Truncate(size int64) error {
	defer f.c.step()
	return f.File.Truncate(size)
}

// failingWrites is a vfs.Mem whose file writes fail with errInjected while fail is
// set.
type failingWrites struct {
	*vfs.Mem
	fail atomic.Bool
}

func (w *failingWrites) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return failingFile{File: f, w: w}, nil
}

func (w *failingWrites) Create(name string) (vfs.File, error) { return w.wrap(w.Mem.Create(name)) }
func (w *failingWrites) OpenAppend(name string) (vfs.File, error) {
	return w.wrap(w.Mem.OpenAppend(name))
}
func (w *failingWrites) OpenWrite(name string) (vfs.File, error) {
	return w.wrap(w.Mem.OpenWrite(name))
}

type failingFile struct {
	vfs.File
	w *failingWrites
}

func (f failingFile) Write(p []byte) (int, error) {
	if f.w.fail.Load() {
		return 0, errInjected
	}
	return f.File.Write(p)
}

func (f failingFile) WriteAt(p []byte, off int64) (int, error) {
	if f.w.fail.Load() {
		return 0, errInjected
	}
	return f.File.WriteAt(p, off)
}

// gatedWrites is a vfs.Mem whose file writes of data block while the gate is
// closed. It holds the writer goroutine inside a group's write, so that later
// appends queue up. Writes of zeros only (preallocation) pass.
type gatedWrites struct {
	*vfs.Mem
	mu      sync.Mutex
	open    chan struct{} // closed while the gate is open
	blocked chan struct{} // receives when a write starts waiting
}

func newGatedWrites() *gatedWrites {
	g := &gatedWrites{Mem: vfs.NewMem(), open: make(chan struct{}), blocked: make(chan struct{}, 1)}
	close(g.open)
	return g
}

func (g *gatedWrites) close() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedWrites) release() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

func (g *gatedWrites) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return gatedFile{File: f, g: g}, nil
}

func (g *gatedWrites) Create(name string) (vfs.File, error) { return g.wrap(g.Mem.Create(name)) }
func (g *gatedWrites) OpenAppend(name string) (vfs.File, error) {
	return g.wrap(g.Mem.OpenAppend(name))
}
func (g *gatedWrites) OpenWrite(name string) (vfs.File, error) { return g.wrap(g.Mem.OpenWrite(name)) }

type gatedFile struct {
	vfs.File
	g *gatedWrites
}

func (f gatedFile) Write(p []byte) (int, error) {
	f.wait()
	return f.File.Write(p)
}

func (f gatedFile) WriteAt(p []byte, off int64) (int, error) {
	if !allZero(p) {
		f.wait()
	}
	return f.File.WriteAt(p, off)
}

// wait returns once the gate is open.
func (f gatedFile) wait() {
	f.g.mu.Lock()
	open := f.g.open
	f.g.mu.Unlock()
	select {
	case <-open:
	default:
		select {
		case f.g.blocked <- struct{}{}:
		default:
		}
		<-open
	}
}

// syncTracker is a vfs.Mem that remembers, per file, how many bytes its last
// successful Sync covered: what a crash would keep.
type syncTracker struct {
	*vfs.Mem
	mu     sync.Mutex
	synced map[string]int64
}

func newSyncTracker() *syncTracker {
	return &syncTracker{Mem: vfs.NewMem(), synced: map[string]int64{}}
}

// durable reports whether every byte of the file is covered by a sync.
func (s *syncTracker) durable(name string) bool {
	data, err := s.ReadFile(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return err == nil && s.synced[name] == int64(len(data))
}

func (s *syncTracker) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return trackedFile{File: f, s: s, name: name}, nil
}

func (s *syncTracker) Create(name string) (vfs.File, error) {
	f, err := s.Mem.Create(name)
	return s.wrap(name, f, err)
}

func (s *syncTracker) OpenAppend(name string) (vfs.File, error) {
	f, err := s.Mem.OpenAppend(name)
	return s.wrap(name, f, err)
}

func (s *syncTracker) OpenWrite(name string) (vfs.File, error) {
	f, err := s.Mem.OpenWrite(name)
	return s.wrap(name, f, err)
}

type trackedFile struct {
	vfs.File
	s    *syncTracker
	name string
}

func (f trackedFile) Sync() error {
	size, err := f.Size()
	if err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.s.mu.Lock()
	f.s.synced[f.name] = max(f.s.synced[f.name], size)
	f.s.mu.Unlock()
	return nil
}

// growthTracker is a vfs.Mem that watches the syncs of the files opened for
// writing: how many came after a data write (not only zeros) and how many of those
// found the file longer than at its previous sync. On ext4 such a sync pays for a
// journal commit; preallocation exists to avoid it.
type growthTracker struct {
	*vfs.Mem
	mu          sync.Mutex
	zeroWrites  int // writes of zeros only
	dataSyncs   int // syncs after a write of data
	dataGrowths int // those that found the file longer than at its last sync
}

func (g *growthTracker) counts() (zeroWrites, dataSyncs, dataGrowths int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.zeroWrites, g.dataSyncs, g.dataGrowths
}

func (g *growthTracker) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	return &growthFile{File: f, g: g, synced: size}, nil
}

func (g *growthTracker) Create(name string) (vfs.File, error) { return g.wrap(g.Mem.Create(name)) }
func (g *growthTracker) OpenAppend(name string) (vfs.File, error) {
	return g.wrap(g.Mem.OpenAppend(name))
}
func (g *growthTracker) OpenWrite(name string) (vfs.File, error) {
	return g.wrap(g.Mem.OpenWrite(name))
}

type growthFile struct {
	vfs.File
	g      *growthTracker
	synced int64 // the file's size at its last sync
	data   bool  // data written since the last sync
}

func (f *growthFile) written(p []byte) {
	if !allZero(p) {
		f.data = true
		return
	}
	f.g.mu.Lock()
	f.g.zeroWrites++
	f.g.mu.Unlock()
}

func (f *growthFile) Write(p []byte) (int, error) {
	f.written(p)
	return f.File.Write(p)
}

func (f *growthFile) WriteAt(p []byte, off int64) (int, error) {
	f.written(p)
	return f.File.WriteAt(p, off)
}

func (f *growthFile) Sync() error {
	if err := f.File.Sync(); err != nil {
		return err
	}
	size, err := f.Size()
	if err != nil {
		return err
	}
	f.g.mu.Lock()
	if f.data {
		f.g.dataSyncs++
		if size > f.synced {
			f.g.dataGrowths++
		}
	}
	f.g.mu.Unlock()
	f.synced, f.data = size, false
	return nil
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
