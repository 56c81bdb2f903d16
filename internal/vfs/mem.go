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
	data   []byte // what a reader sees now
	synced []byte // what survives a crash
}

// Mem is an in-memory FS that models durability; see the package documentation.
// The zero value is not usable; call NewMem.
type Mem struct {
	mu      sync.Mutex
	gen     int
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

// Syncs reports how many Sync calls on files succeeded.
func (m *Mem) Syncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// Crash simulates a power failure: every handle opened before it fails with
// ErrCrashed from now on; names not made durable by SyncDir vanish; every file keeps
// its synced bytes plus a random prefix of what was appended after its last Sync.
// With rng nil, only synced bytes are kept.
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
		keep := n.synced
		if extra, ok := bytes.CutPrefix(n.data, n.synced); ok && len(extra) > 0 && rng != nil {
			keep = append(keep[:len(keep):len(keep)], extra[:rng.IntN(len(extra)+1)]...)
		}
		c := &memNode{data: bytes.Clone(keep), synced: bytes.Clone(keep)}
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
	if err := m.parentOKLocked(name); err != nil {
		return nil, err
	}
	n, ok := m.live[name]
	if ok && n.dir {
		return nil, &fs.PathError{Op: "create", Path: name, Err: errors.New("is a directory")}
	}
	if ok {
		n.data = n.data[:0:0]
	} else {
		n = &memNode{}
		m.live[name] = n
	}
	return &memFile{m: m, gen: m.gen, n: n, name: name, write: true}, nil
}

func (m *Mem) open(name string, write bool) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.live[name]
	if !ok || n.dir {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{m: m, gen: m.gen, n: n, name: name, write: write}, nil
}

// OpenAppend implements FS.
func (m *Mem) OpenAppend(name string) (File, error) { return m.open(name, true) }

// Open implements FS.
func (m *Mem) Open(name string) (File, error) { return m.open(name, false) }

// ReadFile implements FS.
func (m *Mem) ReadFile(name string) ([]byte, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
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
	return ok
}

type memFile struct {
	m      *Mem
	gen    int
	n      *memNode
	name   string
	write  bool
	closed bool
}

func (f *memFile) checkLocked() error {
	if f.closed {
		return fs.ErrClosed
	}
	if f.gen != f.m.gen {
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
	f.n.data = append(f.n.data, p...)
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
	f.n.synced = bytes.Clone(f.n.data)
	f.m.syncs++
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.checkLocked(); err != nil {
		return err
	}
	if size < 0 || size > int64(len(f.n.data)) {
		return fmt.Errorf("vfs: truncate %s to %d of %d bytes", f.name, size, len(f.n.data))
	}
	f.n.data = f.n.data[:size:size]
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
