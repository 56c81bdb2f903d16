package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// ErrCrashed is returned by every operation on a handle opened before Mem.Crash.
var ErrCrashed = errors.New("vfs: file system crashed")

type memNode struct {
	dir    bool
	data   []byte  // what a reader sees now
	synced []byte  // the content at the last Sync: what a crash surely keeps
	ops    []memOp // writes and truncates since the last Sync, in order
}

// memOp is one change to a file's content: a write of data at off, or (trunc) a
// truncation or extension to size.
type memOp struct {
	trunc bool
	off   int64
	data  []byte
	size  int64
}

// apply returns b changed by op. b may be modified in place.
func (op memOp) apply(b []byte) []byte {
	if op.trunc {
		if op.size <= int64(len(b)) {
			return b[:op.size:op.size]
		}
		return append(b, make([]byte, op.size-int64(len(b)))...)
	}
	if end := op.off + int64(len(op.data)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[op.off:], op.data)
	return b
}

// change records op as not yet synced and applies it to what readers see.
func (n *memNode) change(op memOp) {
	n.ops = append(n.ops, op)
	n.data = op.apply(n.data)
}

// crashed returns what a crash leaves of the file: the synced content with a
// random prefix of the later changes applied, the last of them possibly torn. Under
// TearPrefix a torn write keeps a prefix of its bytes; if it extended the file, the
// new size may have reached the disk without the rest of its data, which then reads
// as zeros. Under TearSectors see tearSectors. With rng nil it returns the synced
// content.
func (n *memNode) crashed(rng *rand.Rand, mode TearMode) []byte {
	keep := bytes.Clone(n.synced)
	if rng == nil || len(n.ops) == 0 {
		return keep
	}
	k := rng.IntN(len(n.ops) + 1)
	for i, op := range n.ops[:k] {
		if i == k-1 && !op.trunc && mode == TearSectors {
			keep = tearSectors(keep, op, rng)
			continue
		}
		if i == k-1 && !op.trunc {
			full := op.data
			op.data = full[:rng.IntN(len(full)+1)]
			if end := op.off + int64(len(full)); end > int64(len(keep)) && rng.IntN(2) == 0 {
				op.data = append(bytes.Clone(op.data), make([]byte, len(full)-len(op.data))...)
			}
			if len(op.data) == 0 {
				continue
			}
		}
		keep = op.apply(keep)
	}
	return keep
}

// SectorSize is the unit in which TearSectors tears a write: the sector of a disk,
// which it writes whole or not at all.
const SectorSize = 512

// TearMode says how Crash tears the last change it keeps of a file.
type TearMode int

const (
	// TearPrefix, the default, keeps a prefix of the torn write, cut at any byte.
	TearPrefix TearMode = iota
	// TearSectors keeps whole SectorSize sectors of the torn write, aligned to the
	// file offset, each one written or not independently of the others: a disk
	// may persist sector N+1 of a write without sector N.
	TearSectors
)

// tearSectors returns b with op, a write, applied sector by sector: each piece of
// op.data that falls in one SectorSize-aligned sector of the file is kept or not at
// random. If the write extended the file, the new size may have reached the disk
// even where its sectors did not; bytes never written then read as zeros.
func tearSectors(b []byte, op memOp, rng *rand.Rand) []byte {
	end := op.off + int64(len(op.data))
	grow := func(n int64) {
		if n > int64(len(b)) {
			b = append(b, make([]byte, n-int64(len(b)))...)
		}
	}
	for s := op.off; s < end; {
		e := min((s/SectorSize+1)*SectorSize, end)
		if rng.IntN(2) == 0 {
			grow(e)
			copy(b[s:e], op.data[s-op.off:e-op.off])
		}
		s = e
	}
	if rng.IntN(2) == 0 {
		grow(end)
	}
	return b
}

// Mem is an in-memory FS that models durability; see the package documentation.
// The zero value is not usable; call NewMem.
type Mem struct {
	mu      sync.Mutex
	gen     int
	tear    TearMode
	down    bool // between PowerCut and PowerOn: every operation fails
	live    map[string]*memNode
	durable map[string]*memNode
	syncErr error
	syncs   int
}

// NewMem returns an empty in-memory file system whose root directory exists.
func NewMem() *Mem {
	root := &memNode{dir: true}
	return &Mem{
		live:    map[string]*memNode{"/": root},
		durable: map[string]*memNode{"/": root},
	}
}

// SetSyncError makes every later Sync and SyncDir fail with err (nil to stop).
func (m *Mem) SetSyncError(err error) {
	m.mu.Lock()
	m.syncErr = err
	m.mu.Unlock()
}

// SetTearMode sets how later crashes tear the last write they keep of a file.
func (m *Mem) SetTearMode(mode TearMode) {
	m.mu.Lock()
	m.tear = mode
	m.mu.Unlock()
}

// PowerCut is Crash followed by darkness: every operation, on old handles and on
// the file system itself, fails with ErrCrashed until PowerOn. A test that cuts the
// power under a running program uses it so that the program, which goes on running
// until the test stops it, cannot write anything into the world after the crash.
func (m *Mem) PowerCut(rng *rand.Rand) {
	m.Crash(rng)
	m.mu.Lock()
	m.down = true
	m.mu.Unlock()
}

// PowerOn ends a PowerCut: the file system holds what the crash kept.
func (m *Mem) PowerOn() {
	m.mu.Lock()
	m.down = false
	m.mu.Unlock()
}

// Syncs reports how many Sync calls on files succeeded.
func (m *Mem) Syncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// Crash simulates a power failure: every handle opened before it fails with
// ErrCrashed from now on; names not made durable by SyncDir vanish; every file keeps
// its content at its last Sync with a random prefix of the writes and truncates made
// since applied in order, the last one possibly torn (see memNode.crashed). With rng
// nil, only synced content is kept.
func (m *Mem) Crash(rng *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	live := make(map[string]*memNode, len(m.durable))
	for name, n := range m.durable {
		if n.dir {
			live[name] = n
			continue
		}
		keep := n.crashed(rng, m.tear)
		c := &memNode{data: keep, synced: bytes.Clone(keep)}
		live[name] = c
	}
	// A name whose directory did not survive goes with it.
	for name := range live {
		for p := filepath.Dir(name); name != "/" && p != "/"; p = filepath.Dir(p) {
			if n, ok := live[p]; !ok || !n.dir {
				delete(live, name)
				break
			}
		}
	}
	durable := make(map[string]*memNode, len(live))
	for k, v := range live {
		durable[k] = v
	}
	m.live, m.durable = live, durable
}

// downErr is the error of an operation on name while the power is cut.
func (m *Mem) downErr(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: ErrCrashed}
}

func clean(name string) string { return filepath.Clean("/" + name) }

func (m *Mem) parentOKLocked(name string) error {
	p := filepath.Dir(name)
	if n, ok := m.live[p]; !ok || !n.dir {
		return &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return nil
}

// Create implements FS.
func (m *Mem) Create(name string) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, m.downErr("create", name)
	}
	if err := m.parentOKLocked(name); err != nil {
		return nil, err
	}
	n, ok := m.live[name]
	if ok && n.dir {
		return nil, &fs.PathError{Op: "create", Path: name, Err: errors.New("is a directory")}
	}
	if ok {
		n.change(memOp{trunc: true, size: 0})
	} else {
		n = &memNode{}
		m.live[name] = n
	}
	return &memFile{m: m, gen: m.gen, n: n, name: name, write: true}, nil
}

func (m *Mem) open(name string, write, appendOnly bool) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, m.downErr("open", name)
	}
	n, ok := m.live[name]
	if !ok || n.dir {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{m: m, gen: m.gen, n: n, name: name, write: write, appendOnly: appendOnly}, nil
}

// OpenAppend implements FS.
func (m *Mem) OpenAppend(name string) (File, error) { return m.open(name, true, true) }

// OpenWrite implements FS.
func (m *Mem) OpenWrite(name string) (File, error) { return m.open(name, true, false) }

// Open implements FS.
func (m *Mem) Open(name string) (File, error) { return m.open(name, false, false) }

// ReadFile implements FS.
func (m *Mem) ReadFile(name string) ([]byte, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, m.downErr("open", name)
	}
	n, ok := m.live[name]
	if !ok || n.dir {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.Clone(n.data), nil
}

// Remove implements FS.
func (m *Mem) Remove(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return m.downErr("remove", name)
	}
	if _, ok := m.live[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	for k := range m.live {
		if strings.HasPrefix(k, name+"/") {
			return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
		}
	}
	delete(m.live, name)
	return nil
}

// RemoveAll implements FS.
func (m *Mem) RemoveAll(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return m.downErr("remove", name)
	}
	for k := range m.live {
		if k == name || strings.HasPrefix(k, name+"/") {
			delete(m.live, k)
		}
	}
	return nil
}

// Rename implements FS. Renaming a directory moves everything below it.
func (m *Mem) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return m.downErr("rename", oldname)
	}
	n, ok := m.live[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	if err := m.parentOKLocked(newname); err != nil {
		return err
	}
	for k, v := range m.live {
		if strings.HasPrefix(k, oldname+"/") {
			delete(m.live, k)
			m.live[newname+k[len(oldname):]] = v
		}
	}
	delete(m.live, oldname)
	m.live[newname] = n
	return nil
}

// MkdirAll implements FS.
func (m *Mem) MkdirAll(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return m.downErr("mkdir", dir)
	}
	for p := dir; p != "/"; p = filepath.Dir(p) {
		n, ok := m.live[p]
		if ok && !n.dir {
			return &fs.PathError{Op: "mkdir", Path: p, Err: errors.New("not a directory")}
		}
		if !ok {
			m.live[p] = &memNode{dir: true}
		}
	}
	return nil
}

// ReadDir implements FS.
func (m *Mem) ReadDir(dir string) ([]string, error) {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, m.downErr("readdir", dir)
	}
	if n, ok := m.live[dir]; !ok || !n.dir {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for k := range m.live {
		if k != dir && filepath.Dir(k) == dir {
			names = append(names, filepath.Base(k))
		}
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS: the current names directly in dir become durable.
func (m *Mem) SyncDir(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return m.downErr("syncdir", dir)
	}
	if m.syncErr != nil {
		return m.syncErr
	}
	for k := range m.durable {
		if k != dir && filepath.Dir(k) == dir {
			delete(m.durable, k)
		}
	}
	for k, v := range m.live {
		if k != dir && filepath.Dir(k) == dir {
			m.durable[k] = v
		}
	}
	return nil
}

// Exists implements FS.
func (m *Mem) Exists(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.live[clean(name)]
	return ok && !m.down
}

type memFile struct {
	m          *Mem
	gen        int
	n          *memNode
	name       string
	write      bool
	appendOnly bool  // opened with OpenAppend: Write appends, WriteAt fails
	off        int64 // where Write writes, unless appendOnly
	closed     bool
}

func (f *memFile) checkLocked() error {
	if f.closed {
		return fs.ErrClosed
	}
	if f.gen != f.m.gen || f.m.down {
		return ErrCrashed
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("vfs: negative offset %d", off)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return 0, err
	}
	if !f.write {
		return 0, fmt.Errorf("vfs: %s opened read-only", f.name)
	}
	if f.appendOnly {
		f.off = int64(len(f.n.data))
	}
	f.n.change(memOp{off: f.off, data: bytes.Clone(p)})
	f.off += int64(len(p))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return 0, err
	}
	switch {
	case !f.write:
		return 0, fmt.Errorf("vfs: %s opened read-only", f.name)
	case f.appendOnly:
		return 0, fmt.Errorf("vfs: WriteAt on %s, opened for appending", f.name)
	case off < 0:
		return 0, fmt.Errorf("vfs: negative offset %d", off)
	}
	f.n.change(memOp{off: off, data: bytes.Clone(p)})
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return err
	}
	if f.m.syncErr != nil {
		return f.m.syncErr
	}
	f.n.synced, f.n.ops = bytes.Clone(f.n.data), nil
	f.m.syncs++
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return err
	}
	if !f.write {
		return fmt.Errorf("vfs: %s opened read-only", f.name)
	}
	if size < 0 {
		return fmt.Errorf("vfs: truncate %s to %d bytes", f.name, size)
	}
	f.n.change(memOp{trunc: true, size: size})
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return 0, err
	}
	return int64(len(f.n.data)), nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}
