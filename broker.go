package sluice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

// Data directory layout:
//
//	<dir>/LOCK                          advisory lock held by the running broker
//	<dir>/streams/<name>/stream.json    stream config, written atomically
//	<dir>/streams/<name>/<partition>/   one partition log (package logstore)
//	<dir>/streams/.deleted-<name>-<n>   a stream being deleted
const (
	streamsDir    = "streams"
	streamFile    = "stream.json"
	deletedPrefix = ".deleted-"
)

// Broker is the embedded broker. It is safe for concurrent use.
type Broker struct {
	dir    string
	opts   Options
	fs     vfs.FS
	unlock func() error

	mu       sync.RWMutex
	streams  map[string]*stream
	deleting map[string]bool // names whose deletion is in progress
	closed   bool
	delSeq   atomic.Int64

	sched *scheduler

	// stopCtx ends when the broker closes: background work publishes with it.
	stopCtx    context.Context
	stopCancel context.CancelFunc
	stop       chan struct{}
	wg         sync.WaitGroup
}

var _ Client = (*Broker)(nil)

// stream is one open stream.
type stream struct {
	dir string
	rr  atomic.Uint64 // round-robin counter for keyless messages

	mu    sync.RWMutex // guards cfg, parts, gone; held shared by publishes
	cfg   StreamConfig
	parts []logstore.Log
	gone  bool

	// partsV is a copy of parts that subscriptions read without s.mu (they call
	// back into the broker to dead-letter, so they must not wait on s.mu).
	partsV atomic.Pointer[[]logstore.Log]

	subMu      sync.Mutex // guards subs, subsClosed; taken before a subscription's own lock
	subs       map[string]*subState
	subsClosed bool

	gates  []*gate // per partition, guarded by mu like parts
	ctr    counters
	dedupe *dedupe
	roomMu sync.Mutex
	room   chan struct{} // closed when room may have been made
	log    *slog.Logger
}

// Open opens the broker on dir, creating it if needed, and recovers every stream.
// Only one process may open a directory at a time.
func Open(dir string, opts *Options) (*Broker, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	b := &Broker{dir: dir, opts: o, fs: o.fs, streams: map[string]*stream{}, deleting: map[string]bool{}, stop: make(chan struct{})}
	b.stopCtx, b.stopCancel = context.WithCancel(context.Background())
	if err := b.open(); err != nil {
		b.stopCancel()
		return nil, fmt.Errorf("sluice: open %s: %w", dir, err)
	}
	b.wg.Add(2)
	go b.retentionLoop()
	go b.schedulerLoop()
	return b, nil
}

// open locks the directory, recovers the streams and loads the schedules.
func (b *Broker) open() error {
	if err := b.fs.MkdirAll(filepath.Join(b.dir, streamsDir)); err != nil {
		return err
	}
	b.unlock = func() error { return nil }
	if _, isOS := b.fs.(vfs.OS); isOS {
		unlock, err := lockDir(filepath.Join(b.dir, "LOCK"))
		if err != nil {
			return err
		}
		b.unlock = unlock
	}
	err := b.recover()
	if err == nil {
		err = b.openSchedules()
	}
	if err != nil {
		b.closeStreams()
		b.unlock()
	}
	return err
}

func (b *Broker) streamsPath() string { return filepath.Join(b.dir, streamsDir) }

// recover opens every stream, finishing deletions and dropping creations that did
// not complete.
func (b *Broker) recover() error {
	// Make the directories Open may have just created durable.
	for _, d := range []string{filepath.Dir(filepath.Clean(b.dir)), b.dir} {
		if err := b.fs.SyncDir(d); err != nil {
			return err
		}
	}
	root := b.streamsPath()
	names, err := b.fs.ReadDir(root)
	if err != nil {
		return err
	}
	for _, n := range names {
		path := filepath.Join(root, n)
		if strings.HasPrefix(n, deletedPrefix) {
			if err := b.fs.RemoveAll(path); err != nil {
				return err
			}
			continue
		}
		data, err := b.fs.ReadFile(filepath.Join(path, streamFile))
		if err != nil {
			// Created but its config never became durable: the creation did not
			// complete and was never acknowledged.
			b.opts.Logger.Warn("sluice: removing incomplete stream directory", "dir", path, "reason", err)
			if err := b.fs.RemoveAll(path); err != nil {
				return err
			}
			continue
		}
		cfg, err := decodeStreamFile(data)
		if err != nil {
			return fmt.Errorf("stream %s: %w", n, err)
		}
		if cfg.Name != n {
			return fmt.Errorf("stream directory %s holds the config of stream %q", n, cfg.Name)
		}
		s, err := b.openStream(cfg)
		if err != nil {
			return err
		}
		b.streams[n] = s
	}
	return b.fs.SyncDir(root)
}

func (b *Broker) partitionConfig(s *stream, cfg StreamConfig, i int) logstore.Config {
	return logstore.Config{
		Dir:          filepath.Join(s.dir, strconv.Itoa(i)),
		FS:           b.fs,
		SegmentBytes: cfg.SegmentBytes,
		Sync:         cfg.syncPolicy(),
		SyncInterval: cfg.SyncInterval,
		Logger:       b.opts.Logger.With("stream", cfg.Name, "partition", i),
		OnSync:       b.opts.OnSync,
	}
}

func (b *Broker) openStream(cfg StreamConfig) (*stream, error) {
	s := &stream{dir: filepath.Join(b.streamsPath(), cfg.Name), cfg: cfg, subs: map[string]*subState{},
		room: make(chan struct{}), log: b.opts.Logger}
	for i := range cfg.Partitions {
		p, err := logstore.Open(b.partitionConfig(s, cfg, i))
		if err != nil {
			s.closeParts()
			return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		s.parts = append(s.parts, p)
		s.gates = append(s.gates, &gate{})
	}
	s.publishParts()
	if err := b.loadDedupe(s); err != nil {
		s.closeParts()
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if err := b.openSubscriptions(s); err != nil {
		s.closeSubs()
		s.closeParts()
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// publishParts makes the current partition list visible to subscriptions.
// Lock held: s.mu, or s is not shared yet.
func (s *stream) publishParts() {
	v := append([]logstore.Log(nil), s.parts...)
	s.partsV.Store(&v)
}

func (s *stream) closeParts() error {
	var errs []error
	for _, p := range s.parts {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lookup returns the open stream called name.
func (b *Broker) lookup(name string) (*stream, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, ErrClosed
	}
	s, ok := b.streams[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	return s, nil
}

// acquire returns the open stream called name, held shared (s.mu.RLock), so that
// it is not deleted or reconfigured under the caller, who must RUnlock it.
func (b *Broker) acquire(name string) (*stream, error) {
	s, err := b.lookup(name)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.gone {
		s.mu.RUnlock()
		return nil, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	return s, nil
}

// CreateStream creates a stream. Its config is on disk before it returns.
func (b *Broker) CreateStream(ctx context.Context, cfg StreamConfig) (StreamInfo, error) {
	if err := cfg.Validate(); err != nil {
		return StreamInfo{}, err
	}
	cfg = cfg.withDefaults()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return StreamInfo{}, ErrClosed
	}
	if _, ok := b.streams[cfg.Name]; ok || b.deleting[cfg.Name] {
		return StreamInfo{}, fmt.Errorf("%w: %q", ErrStreamExists, cfg.Name)
	}
	if len(b.streams) >= b.opts.MaxStreams {
		return StreamInfo{}, invalid("StreamConfig.Name", "cannot create stream %q: %d streams, limit Options.MaxStreams=%d", cfg.Name, len(b.streams), b.opts.MaxStreams)
	}
	dir := filepath.Join(b.streamsPath(), cfg.Name)
	if err := b.fs.MkdirAll(dir); err != nil {
		return StreamInfo{}, fmt.Errorf("sluice: create stream %s: %w", cfg.Name, err)
	}
	if err := vfs.WriteFileAtomic(b.fs, filepath.Join(dir, streamFile), encodeStreamFile(cfg)); err != nil {
		return StreamInfo{}, fmt.Errorf("sluice: create stream %s: %w", cfg.Name, err)
	}
	if err := b.fs.SyncDir(b.streamsPath()); err != nil {
		return StreamInfo{}, fmt.Errorf("sluice: create stream %s: %w", cfg.Name, err)
	}
	s, err := b.openStream(cfg)
	if err != nil {
		return StreamInfo{}, fmt.Errorf("sluice: create stream: %w", err)
	}
	b.streams[cfg.Name] = s
	return s.info(), nil
}

// UpdateStream changes the updatable fields of a stream's config: Partitions (only
// up), Retention, MaxMessageBytes, the bounds (MaxMessages, MaxBytes, Overflow,
// BlockTimeout) and the dedupe settings (DedupeWindow, DedupeMaxKeys). Zero fields
// keep their current values; any other change is an error naming the field. Lower
// bounds refuse new publishes until there is room; they remove nothing stored.
func (b *Broker) UpdateStream(ctx context.Context, cfg StreamConfig) (StreamInfo, error) {
	s, err := b.lookup(cfg.Name)
	if err != nil {
		return StreamInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return StreamInfo{}, fmt.Errorf("%w: %q", ErrStreamNotFound, cfg.Name)
	}
	cur := s.cfg
	next := cur
	if cfg.Partitions != 0 {
		if cfg.Partitions < cur.Partitions {
			return StreamInfo{}, invalid("StreamConfig.Partitions", "cannot lower partitions from %d to %d", cur.Partitions, cfg.Partitions)
		}
		next.Partitions = cfg.Partitions
	}
	if cfg.Retention != (Retention{}) {
		next.Retention = cfg.Retention
	}
	if cfg.MaxMessageBytes != 0 {
		next.MaxMessageBytes = cfg.MaxMessageBytes
	}
	if cfg.MaxMessages != 0 {
		next.MaxMessages = cfg.MaxMessages
	}
	if cfg.MaxBytes != 0 {
		next.MaxBytes = cfg.MaxBytes
	}
	if cfg.Overflow != "" {
		next.Overflow = cfg.Overflow
	}
	if cfg.BlockTimeout != 0 {
		next.BlockTimeout = cfg.BlockTimeout
	}
	if cfg.DedupeWindow != 0 {
		next.DedupeWindow = cfg.DedupeWindow
	}
	if cfg.DedupeMaxKeys != 0 {
		next.DedupeMaxKeys = cfg.DedupeMaxKeys
	}
	if cfg.Sync != "" && cfg.Sync != cur.Sync {
		return StreamInfo{}, invalid("StreamConfig.Sync", "fixed at creation (%s)", cur.Sync)
	}
	if cfg.SyncInterval != 0 && cfg.SyncInterval != cur.SyncInterval {
		return StreamInfo{}, invalid("StreamConfig.SyncInterval", "fixed at creation (%v)", cur.SyncInterval)
	}
	if cfg.SegmentBytes != 0 && cfg.SegmentBytes != cur.SegmentBytes {
		return StreamInfo{}, invalid("StreamConfig.SegmentBytes", "fixed at creation (%d)", cur.SegmentBytes)
	}
	if err := next.Validate(); err != nil {
		return StreamInfo{}, err
	}
	// New partitions first: a crash before the config is written leaves empty
	// directories that the next open of the larger config reuses.
	var added []logstore.Log
	for i := cur.Partitions; i < next.Partitions; i++ {
		p, err := logstore.Open(b.partitionConfig(s, next, i))
		if err != nil {
			for _, a := range added {
				a.Close()
			}
			return StreamInfo{}, fmt.Errorf("sluice: update stream %s: %w", cfg.Name, err)
		}
		added = append(added, p)
	}
	if err := vfs.WriteFileAtomic(b.fs, filepath.Join(s.dir, streamFile), encodeStreamFile(next)); err != nil {
		for _, a := range added {
			a.Close()
		}
		return StreamInfo{}, fmt.Errorf("sluice: update stream %s: %w", cfg.Name, err)
	}
	s.cfg = next
	s.parts = append(s.parts, added...)
	for range added {
		s.gates = append(s.gates, &gate{})
	}
	s.publishParts()
	s.dedupe.configure(next.DedupeWindow, next.DedupeMaxKeys)
	s.signalRoom() // the bounds may have grown
	return s.infoLocked(), nil
}

// DeleteStream deletes a stream, its subscriptions and all its messages. Publishes
// in flight finish first; readers get ErrStreamNotFound.
func (b *Broker) DeleteStream(ctx context.Context, name string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	s, ok := b.streams[name]
	if !ok {
		b.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	delete(b.streams, name)
	b.deleting[name] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.deleting, name)
		b.mu.Unlock()
	}()
	// Not under b.mu: a subscription that is dead-lettering calls back into the
	// broker, and closing it waits for that.
	err := s.closeSubs()
	s.mu.Lock()
	s.gone = true
	err = errors.Join(err, s.closeParts())
	s.mu.Unlock()
	if err != nil {
		b.opts.Logger.Warn("sluice: closing deleted stream", "stream", name, "error", err)
	}
	tomb := filepath.Join(b.streamsPath(), fmt.Sprintf("%s%s-%d", deletedPrefix, name, b.delSeq.Add(1)))
	if err := b.fs.Rename(s.dir, tomb); err != nil {
		return fmt.Errorf("sluice: delete stream %s: %w", name, err)
	}
	if err := b.fs.SyncDir(b.streamsPath()); err != nil {
		return fmt.Errorf("sluice: delete stream %s: %w", name, err)
	}
	if err := b.fs.RemoveAll(tomb); err != nil {
		return fmt.Errorf("sluice: delete stream %s: %w", name, err)
	}
	return nil
}

// ListStreams returns every stream, sorted by name.
func (b *Broker) ListStreams(ctx context.Context) ([]StreamInfo, error) {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, ErrClosed
	}
	ss := make([]*stream, 0, len(b.streams))
	for _, s := range b.streams {
		ss = append(ss, s)
	}
	b.mu.RUnlock()
	out := make([]StreamInfo, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out, nil
}

// Stream returns one stream's config and partition offsets.
func (b *Broker) Stream(ctx context.Context, name string) (StreamInfo, error) {
	s, err := b.lookup(name)
	if err != nil {
		return StreamInfo{}, err
	}
	return s.info(), nil
}

func (s *stream) info() StreamInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.infoLocked()
}

func (s *stream) infoLocked() StreamInfo {
	info := StreamInfo{Config: s.cfg, Partitions: make([]PartitionInfo, 0, len(s.parts)), Counters: s.counters()}
	if s.gone {
		return info
	}
	for i, p := range s.parts {
		st := p.Stats()
		info.Partitions = append(info.Partitions, PartitionInfo{
			ID: i, StartOffset: st.StartOffset, HighWatermark: st.HighWatermark, Bytes: st.Bytes, Segments: st.Segments,
		})
		info.Messages += st.HighWatermark - st.StartOffset
		info.Bytes += st.Bytes
	}
	return info
}

// Close stops the broker: publishes in flight finish, every partition is synced and
// closed, and the directory lock is released. Close may be called more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.stopCancel()
	b.wg.Wait()
	err := b.closeStreams()
	if uerr := b.unlock(); err == nil {
		err = uerr
	}
	return err
}

func (b *Broker) closeStreams() error {
	var errs []error
	for _, s := range b.streams {
		if err := s.closeSubs(); err != nil {
			errs = append(errs, err)
		}
		if err := b.saveDedupe(s, true); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		s.gone = true
		if err := s.closeParts(); err != nil {
			errs = append(errs, err)
		}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}
