package sluice

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/idset"
	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

// The consumer half of "effectively once". sluice delivers at least once: a
// consumer that crashes before it acknowledges, or whose lease expires, sees the
// message again. A handler that must have one effect per message remembers which
// messages it has processed and skips the repeats: MessageID names a message, a
// ProcessedStore remembers the names. ProcessedLog is the embedded store; TxStore
// records the name inside the caller's own database transaction, so that the
// effect and the record commit together.
//
// Give every handler (every subscription) a store of its own: a message recorded
// by one handler is skipped by any other handler that shares the store.

// MessageID names the message r for a ProcessedStore.
//
// When r carries a producer's idempotency key (Message.IdempotencyKey, stored in
// IdempotencyKeyHeader), the name is "key:<stream>/<key>". It recognises
// redeliveries of the stored message and also a producer's duplicate publish that
// the stream did not catch (one that arrived after the stream's DedupeWindow, or
// after the key was evicted by DedupeMaxKeys), which is stored as a second
// message at another offset.
//
// Otherwise the name is "<stream>/<partition>/<offset>". It recognises only
// redeliveries of the same stored message: a message published twice is two
// messages to it.
//
// The two forms cannot collide: stream names have no ':', so only the key form
// starts with "key:"; and no stream name has '/', so the stream in the key form
// ends at the first '/' after the prefix.
func MessageID(r Record) string {
	for _, h := range r.Headers {
		if h.Key == IdempotencyKeyHeader {
			return "key:" + r.Stream + "/" + string(h.Value)
		}
	}
	return r.Stream + "/" + strconv.Itoa(r.Partition) + "/" + strconv.FormatInt(r.Offset, 10)
}

// ProcessedStore remembers which messages a handler has processed.
type ProcessedStore interface {
	// Process runs fn unless id is recorded as processed, and records id once fn
	// succeeds. For a repeat it returns ran=false and a nil error without running
	// fn. When fn fails, Process returns fn's error (ran=true) and id is not
	// recorded, so the next delivery runs fn again. Concurrent calls with the same
	// id do not both run fn: the later one waits for the earlier, then skips (it
	// succeeded) or runs fn itself (it failed).
	Process(ctx context.Context, id string, fn func(ctx context.Context) error) (ran bool, err error)
}

// Limits and defaults of ProcessedLogConfig, and the longest id.
const (
	DefaultProcessedWindow       = 7 * 24 * time.Hour
	MinProcessedWindow           = time.Second
	MaxProcessedWindow           = 365 * 24 * time.Hour
	DefaultProcessedMaxIDs       = 1_000_000
	MaxProcessedMaxIDs           = 100_000_000
	DefaultProcessedSegmentBytes = 8 << 20
	MinProcessedSegmentBytes     = logstore.MinSegmentBytes
	MaxProcessedSegmentBytes     = logstore.MaxSegmentBytes
	// MaxProcessedIDBytes bounds an id given to ProcessedLog.Process. MessageID's
	// names are at most about 400 bytes.
	MaxProcessedIDBytes = 1024
)

// processedRetentionInterval is how often Process removes the segments that hold
// only forgotten ids.
const processedRetentionInterval = time.Minute

// ProcessedLogConfig configures a ProcessedLog. Zero fields take their defaults.
type ProcessedLogConfig struct {
	// Window is how long an id is remembered after it was recorded; older ids are
	// forgotten (up to 2 s late, never early), and the log segments that hold
	// only forgotten ids are removed. Make it longer than a message can take to
	// come back: the subscription's Lease times MaxDeliveries plus its backoff,
	// and the longest a dead letter may wait before it is redriven. Default 7
	// days; limits [MinProcessedWindow = 1 s, MaxProcessedWindow = 365 days].
	Window time.Duration
	// MaxIDs bounds the ids held in memory. When it is full, recording an id
	// forgets the oldest before its window ended, and Stats().ForgottenEarly
	// counts it. Default 1,000,000; limits [1, MaxProcessedMaxIDs = 100,000,000].
	MaxIDs int
	// SegmentBytes is the size at which a log segment rolls; retention removes
	// whole segments. Default 8 MiB; limits [MinProcessedSegmentBytes = 4 KiB,
	// MaxProcessedSegmentBytes = 1 GiB].
	SegmentBytes int64
	// Logger receives recovery and retention reports. Default slog.Default().
	Logger *slog.Logger

	// now and fs are replaced by tests.
	now func() time.Time
	fs  vfs.FS
}

func (c ProcessedLogConfig) withDefaults() ProcessedLogConfig {
	if c.Window == 0 {
		c.Window = DefaultProcessedWindow
	}
	if c.MaxIDs == 0 {
		c.MaxIDs = DefaultProcessedMaxIDs
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultProcessedSegmentBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.fs == nil {
		c.fs = vfs.OS{}
	}
	return c
}

// Validate checks every field against its limits.
func (c ProcessedLogConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case d.Window < MinProcessedWindow || d.Window > MaxProcessedWindow:
		return invalid("ProcessedLogConfig.Window", "%v outside [MinProcessedWindow=%v, MaxProcessedWindow=%v]", d.Window, MinProcessedWindow, MaxProcessedWindow)
	case d.MaxIDs < 1 || d.MaxIDs > MaxProcessedMaxIDs:
		return invalid("ProcessedLogConfig.MaxIDs", "%d outside [1, MaxProcessedMaxIDs=%d]", d.MaxIDs, MaxProcessedMaxIDs)
	case d.SegmentBytes < MinProcessedSegmentBytes || d.SegmentBytes > MaxProcessedSegmentBytes:
		return invalid("ProcessedLogConfig.SegmentBytes", "%d outside [MinProcessedSegmentBytes=%d, MaxProcessedSegmentBytes=%d]", d.SegmentBytes, MinProcessedSegmentBytes, MaxProcessedSegmentBytes)
	}
	return nil
}

// ProcessedLogStats describes a ProcessedLog.
type ProcessedLogStats struct {
	// IDs is how many ids are remembered.
	IDs int
	// ForgottenEarly counts, since Open, the ids forgotten before their Window
	// ended because MaxIDs were held. Anything but zero means a late redelivery
	// of such a message runs its handler again: raise MaxIDs.
	ForgottenEarly int64
	// LogBytes is the size of the log on disk.
	LogBytes int64
}

// ProcessedLog is the embedded ProcessedStore: a durable log of processed ids in a
// directory of its own, and the ids of the last Window in memory. It is safe for
// concurrent use; one process at a time may open a directory.
//
// An id is recorded once fn returned nil and before Process returns: the record
// is synced to disk (fdatasync) first, so an id recorded before Process returned
// survives kill -9, a power failure and a restart. Open reads the log back.
//
// What it cannot do: fn's effects and the record of its id are not one
// transaction. A crash after fn took effect and before the record was synced
// loses the record, and the redelivery runs fn again. For exactly one effect,
// record the id inside the transaction that makes the effect (TxStore,
// SQLTxStore), or make fn naturally idempotent (setting a value rather than
// adding to it, an upsert keyed by the message, a conditional write on a version),
// so that running it twice equals running it once. What ProcessedLog does give:
// fn runs again only when a crash (or a failed write) falls between fn's return
// and the record's sync, not on every redelivery.
//
// Memory: an id is held as a 128-bit hash (two 64-bit hashes with independent
// keys, chosen afresh by each Open) in a compact set (package internal/idset):
// 30 to 40 bytes per id, measured as 30 at 1 million ids and 39 at 100,000 with
//
//	go test -run '^$' -bench ProcessedLogMemory -benchtime 1x .
//
// so the default MaxIDs of 1 million takes about 30 MiB. The chance that two
// distinct ids of a million are taken for one is below 10^-26. On disk an id
// costs 67 bytes plus its length.
//
// Layout: dir/LOCK, held while open, and dir/log/, a partition log (package
// internal/logstore, under SyncAlways) with one record batch per id: key = the
// id, no value, timestamp = the time it was recorded.
type ProcessedLog struct {
	cfg    ProcessedLogConfig
	log    *logstore.Partition
	unlock func() error
	seeds  [2]maphash.Seed

	mu             sync.Mutex
	ids            idset.Set
	running        map[idset.Hash]chan struct{} // closed when that id's fn and record end
	forgottenEarly int64
	failure        error // the failed record that stopped the log
	closed         bool

	lastRetention atomic.Int64 // unix ms of the last ApplyRetention
	closeOnce     sync.Once
	closeErr      error
}

var _ ProcessedStore = (*ProcessedLog)(nil)

// OpenProcessedLog opens (recovering after a crash) or creates the ProcessedLog in
// dir, and reads back the ids of the last cfg.Window.
func OpenProcessedLog(dir string, cfg ProcessedLogConfig) (*ProcessedLog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	l := &ProcessedLog{
		cfg:     c,
		seeds:   [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		running: map[idset.Hash]chan struct{}{},
	}
	if err := l.open(dir); err != nil {
		return nil, fmt.Errorf("sluice: open processed log %s: %w", dir, err)
	}
	return l, nil
}

func (l *ProcessedLog) open(dir string) error {
	fsys := l.cfg.fs
	if err := fsys.MkdirAll(dir); err != nil {
		return err
	}
	unlock := func() error { return nil }
	if _, isOS := fsys.(vfs.OS); isOS {
		var err error
		if unlock, err = lockDir(filepath.Join(dir, "LOCK")); err != nil {
			return err
		}
	}
	// Make the directory durable if MkdirAll just created it.
	for _, d := range []string{filepath.Dir(filepath.Clean(dir)), dir} {
		if err := fsys.SyncDir(d); err != nil {
			unlock()
			return err
		}
	}
	p, err := logstore.Open(logstore.Config{
		Dir:          filepath.Join(dir, "log"),
		FS:           fsys,
		SegmentBytes: l.cfg.SegmentBytes,
		Sync:         logstore.SyncAlways,
		Logger:       l.cfg.Logger,
	})
	if err != nil {
		unlock()
		return err
	}
	l.log, l.unlock = p, unlock
	now := l.cfg.now()
	l.lastRetention.Store(now.UnixMilli())
	if err := l.retain(now); err == nil {
		err = l.replay(now)
	}
	if err != nil {
		p.Close()
		unlock()
		return err
	}
	return nil
}

// replay reads the log and remembers the ids recorded within the window, the
// newest MaxIDs of them.
func (l *ProcessedLog) replay(now time.Time) error {
	cut := expiryCut(now, l.cfg.Window)
	var (
		it      batch.Iter
		buf     []byte
		corrupt int
	)
	off, hw := l.log.StartOffset(), l.log.HighWatermark()
	for off < hw {
		data, next, err := l.log.Read(off, 1<<20, buf)
		switch {
		case errors.Is(err, logstore.ErrCorrupt) && corrupt < 16:
			// A damaged sealed segment is quarantined and its offsets skipped
			// (the log reports it); its ids are forgotten. Read on.
			corrupt++
			continue
		case errors.Is(err, logstore.ErrOutOfRange) && off < l.log.StartOffset():
			off = l.log.StartOffset() // the first segment was quarantined
			continue
		case err != nil:
			return fmt.Errorf("replay at offset %d: %w", off, err)
		case next <= off:
			return fmt.Errorf("replay: read at offset %d made no progress (high watermark %d)", off, hw)
		case len(data) == 0:
			off = next // a quarantined range at the end
			continue
		}
		buf = data[:0]
		for len(data) > 0 {
			size, err := batch.PeekSize(data)
			if err == nil {
				err = it.Reset(data[:size])
			}
			if err != nil {
				return fmt.Errorf("replay at offset %d: %w: %w", off, ErrCorrupt, err)
			}
			for it.Next() {
				r := it.Record()
				if r.Offset < off {
					continue
				}
				if sec := ceilSec(r.Timestamp); sec >= cut {
					l.ids.Add(idset.Hash{maphash.Bytes(l.seeds[0], r.Key), maphash.Bytes(l.seeds[1], r.Key)}, sec)
					// Not counted in ForgottenEarly, which counts what this Open
					// forgets while it runs.
					l.ids.EvictOver(l.cfg.MaxIDs)
				}
			}
			if err := it.Err(); err != nil {
				return fmt.Errorf("replay at offset %d: %w: %w", off, ErrCorrupt, err)
			}
			data = data[size:]
		}
		off = next
	}
	return nil
}

// Process implements ProcessedStore. The id is 1..MaxProcessedIDBytes bytes
// (MessageID's names fit). Once fn has returned nil, the record is written even
// if ctx ends meanwhile, so that the result says what happened: ran=true and a
// nil error means fn ran and its id is durable; ran=true and an error other than
// fn's means fn ran but its id may not be recorded (the disk failed, or the log
// was closed), and a redelivery may run it again. After a failed write or sync
// the log stops, as its partition does: Process runs nothing more and returns an
// error matching ErrPartitionFailed until the log is reopened (which recovers
// what is on disk).
func (l *ProcessedLog) Process(ctx context.Context, id string, fn func(ctx context.Context) error) (ran bool, err error) {
	if id == "" || len(id) > MaxProcessedIDBytes {
		return false, invalid("id", "%d bytes, must be 1..MaxProcessedIDBytes=%d", len(id), MaxProcessedIDBytes)
	}
	h := l.hash(id)
	l.mu.Lock()
	for {
		if l.closed {
			l.mu.Unlock()
			return false, fmt.Errorf("sluice: processed log: %w", ErrClosed)
		}
		if l.failure != nil {
			// Running fn now would leave an effect that cannot be recorded.
			l.mu.Unlock()
			return false, fmt.Errorf("sluice: processed log stopped after a failed write, reopen it: %w", l.failure)
		}
		l.ids.Expire(expiryCut(l.cfg.now(), l.cfg.Window))
		if l.ids.Has(h) {
			l.mu.Unlock()
			return false, nil
		}
		wait, busy := l.running[h]
		if !busy {
			break
		}
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		l.mu.Lock()
	}
	done := make(chan struct{})
	l.running[h] = done
	l.mu.Unlock()

	at, err := l.run(ctx, h, done, id, fn)
	if err != nil {
		return true, err
	}
	l.maybeRetain(at)
	return true, nil
}

// run runs fn for id and records it; done is closed (and the id remembered, if
// recorded) however fn returns, panics included.
func (l *ProcessedLog) run(ctx context.Context, h idset.Hash, done chan struct{}, id string, fn func(ctx context.Context) error) (at time.Time, err error) {
	recorded := false
	var failure error
	defer func() {
		l.mu.Lock()
		delete(l.running, h)
		if recorded {
			l.ids.Add(h, ceilSec(at.UnixMilli()))
			l.forgottenEarly += int64(l.ids.EvictOver(l.cfg.MaxIDs))
		}
		if failure != nil && l.failure == nil {
			l.failure = failure
		}
		close(done)
		l.mu.Unlock()
	}()
	if err := fn(ctx); err != nil {
		return at, err
	}
	at = l.cfg.now()
	b := batch.Append(nil, []batch.Record{{Timestamp: at.UnixMilli(), Key: []byte(id)}})
	// The effect has happened: wait for the record's outcome even if ctx ends, so
	// that a nil error always means durable.
	if _, err := l.log.Append(context.WithoutCancel(ctx), b); err != nil {
		if errors.Is(err, logstore.ErrFailed) {
			failure = err
		}
		return at, fmt.Errorf("sluice: processed log: record %q: %w", id, err)
	}
	recorded = true
	return at, nil
}

// maybeRetain applies retention if processedRetentionInterval has passed since
// the last time; one caller does it, the others go on.
func (l *ProcessedLog) maybeRetain(now time.Time) {
	last := l.lastRetention.Load()
	if now.UnixMilli()-last < processedRetentionInterval.Milliseconds() ||
		!l.lastRetention.CompareAndSwap(last, now.UnixMilli()) {
		return
	}
	if err := l.retain(now); err != nil && !errors.Is(err, logstore.ErrClosed) {
		l.cfg.Logger.Warn("sluice: processed log retention failed; tried again later", "error", err)
	}
}

// retain removes the segments whose ids are all forgotten: older than the window,
// or older than the newest MaxIDs records. (With an id recorded twice, which
// happens only after it was forgotten, the newest MaxIDs records hold fewer
// distinct ids than memory does, and a restart may forget a few of the oldest
// ids early.)
func (l *ProcessedLog) retain(now time.Time) error {
	_, err := l.log.ApplyRetention(logstore.Retention{MaxAge: l.cfg.Window, MaxMessages: int64(l.cfg.MaxIDs)}, now)
	return err
}

// Stats returns the log's counters.
func (l *ProcessedLog) Stats() ProcessedLogStats {
	l.mu.Lock()
	if !l.closed {
		l.ids.Expire(expiryCut(l.cfg.now(), l.cfg.Window))
	}
	st := ProcessedLogStats{IDs: l.ids.Len(), ForgottenEarly: l.forgottenEarly}
	l.mu.Unlock()
	st.LogBytes = l.log.Stats().Bytes
	return st
}

// Close closes the log and releases the directory. A Process still running gets
// an error from its record (fn may have run; see Process). Close may be called
// more than once.
func (l *ProcessedLog) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		err := l.log.Close()
		if uerr := l.unlock(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		if err != nil {
			l.closeErr = fmt.Errorf("sluice: close processed log: %w", err)
		}
	})
	return l.closeErr
}

// hash is the id's 128-bit hash: two 64-bit hashes with independent random keys.
func (l *ProcessedLog) hash(id string) idset.Hash {
	return idset.Hash{maphash.String(l.seeds[0], id), maphash.String(l.seeds[1], id)}
}

// ceilSec rounds a time in unix milliseconds up to whole seconds, clamped to the
// range of uint32 (an id is then forgotten late, never early).
func ceilSec(ms int64) uint32 {
	s := (ms + 999) / 1000
	if ms < 0 {
		s = 0
	}
	return uint32(min(s, 1<<32-1))
}

// expiryCut is the first second an id may have been recorded in and still be
// remembered at now.
func expiryCut(now time.Time, window time.Duration) uint32 {
	s := now.Add(-window).Unix()
	return uint32(max(0, min(s, 1<<32-1)))
}

// TxStore is a ProcessedStore over the caller's own transactions: Process records
// the id in the same transaction as fn's effects, so both commit or neither does.
// That gives exactly one effect per message, crashes included, where ProcessedLog
// gives one unless a crash falls between fn and the record. Tx is the
// transaction type (for database/sql, *sql.Tx: see SQLTxStore).
//
// All four functions are required.
type TxStore[Tx any] struct {
	// Begin starts a transaction.
	Begin func(ctx context.Context) (Tx, error)
	// Claim records id in tx and reports whether it was new (fresh). It must
	// block while another transaction holds a claim on the same id, until that
	// one commits (then fresh is false) or rolls back (then fresh is true): a
	// unique key in a table does exactly that.
	Claim func(ctx context.Context, tx Tx, id string) (fresh bool, err error)
	// Commit commits tx.
	Commit func(tx Tx) error
	// Rollback rolls tx back.
	Rollback func(tx Tx) error
}

// Process begins a transaction, claims id in it, runs fn with it and commits.
// When the claim finds id already processed it rolls back and returns ran=false,
// err=nil. When fn fails it rolls back, returns fn's error (with the rollback's,
// if that failed too) and a redelivery runs fn again. When Commit fails the
// outcome is unknown to the database's client, but not to the next delivery:
// if the transaction committed, its Claim is not fresh.
func (s TxStore[Tx]) Process(ctx context.Context, id string, fn func(ctx context.Context, tx Tx) error) (ran bool, err error) {
	if s.Begin == nil || s.Claim == nil || s.Commit == nil || s.Rollback == nil {
		return false, invalid("TxStore", "Begin, Claim, Commit and Rollback are all required")
	}
	tx, err := s.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("sluice: processed: begin: %w", err)
	}
	finished := false
	defer func() {
		if !finished { // fn or Claim panicked
			s.Rollback(tx)
		}
	}()
	fresh, err := s.Claim(ctx, tx, id)
	if err != nil {
		err = fmt.Errorf("sluice: processed: claim %q: %w", id, err)
	}
	if err != nil || !fresh {
		finished = true
		if rerr := s.Rollback(tx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("sluice: processed: rollback: %w", rerr))
		}
		return false, err
	}
	if err := fn(ctx, tx); err != nil {
		finished = true
		if rerr := s.Rollback(tx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("sluice: processed: rollback: %w", rerr))
		}
		return true, err
	}
	finished = true
	if err := s.Commit(tx); err != nil {
		return true, fmt.Errorf("sluice: processed: commit %q: %w", id, err)
	}
	return true, nil
}

// SQLTxStore is a TxStore over database/sql. claim is a statement that inserts
// its one argument, the id, into a table where it is a unique key, and inserts
// nothing when the id is there already, so that RowsAffected is 1 for a new id
// and 0 for a repeat. For a table
//
//	CREATE TABLE processed (id VARCHAR(512) PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)
//
// the statement is, in
//
//	PostgreSQL: INSERT INTO processed (id) VALUES ($1) ON CONFLICT DO NOTHING
//	MySQL:      INSERT INTO processed (id) VALUES (?) ON DUPLICATE KEY UPDATE id = id
//	SQLite:     INSERT INTO processed (id) VALUES (?) ON CONFLICT DO NOTHING
//
// (MySQL's ON DUPLICATE KEY UPDATE reports 0 rows for an unchanged row unless the
// connection sets CLIENT_FOUND_ROWS; INSERT IGNORE works too but also turns other
// errors into warnings.) A second transaction inserting the same id waits on the
// unique key until the first ends, as TxStore.Claim requires. Deleting old rows
// (WHERE at < now - the longest a message may take to come back) is up to the
// caller. Transactions use the driver's default isolation.
func SQLTxStore(db *sql.DB, claim string) TxStore[*sql.Tx] {
	return TxStore[*sql.Tx]{
		Begin: func(ctx context.Context) (*sql.Tx, error) { return db.BeginTx(ctx, nil) },
		Claim: func(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
			res, err := tx.ExecContext(ctx, claim, id)
			if err != nil {
				return false, err
			}
			n, err := res.RowsAffected()
			switch {
			case err != nil:
				return false, err
			case n != 0 && n != 1:
				return false, fmt.Errorf("claim statement affected %d rows, want 0 or 1", n)
			}
			return n == 1, nil
		},
		Commit:   func(tx *sql.Tx) error { return tx.Commit() },
		Rollback: func(tx *sql.Tx) error { return tx.Rollback() },
	}
}
