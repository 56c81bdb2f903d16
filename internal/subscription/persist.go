package subscription

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

const (
	stateFile      = "state.json"
	journalPrefix  = "journal-"
	snapshotFormat = 1
	// journalSyncInterval bounds what a power failure can take back.
	journalSyncInterval = 50 * time.Millisecond
	journalSegmentBytes = 64 << 20
)

// snapshot is the on-disk state: what the journal generation Generation starts from.
type snapshot struct {
	Version      int            `json:"version"`
	Generation   int            `json:"generation"`
	DeadLettered int64          `json:"dead_lettered"`
	DLQStart     int64          `json:"dlq_start,omitempty"`
	Redriven     []int64        `json:"redriven,omitempty"`
	Partitions   []partSnapshot `json:"partitions"`
}

type partSnapshot struct {
	Floor   int64      `json:"floor"`
	Next    int64      `json:"next"`
	Pending []*pending `json:"pending,omitempty"`
}

func (s *Sub) journalDir(gen int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%d", journalPrefix, gen))
}

func (s *Sub) openJournal(gen int) (*logstore.Partition, error) {
	return logstore.Open(logstore.Config{
		Dir: s.journalDir(gen), FS: s.fs, Sync: logstore.SyncInterval,
		SyncInterval: journalSyncInterval, SegmentBytes: journalSegmentBytes, Logger: s.log,
	})
}

// recover loads the snapshot (or starts one at the configured start), replays the
// journal, removes stray journal generations and compacts.
func (s *Sub) recover() error {
	if err := s.fs.MkdirAll(s.dir); err != nil {
		return err
	}
	data, err := s.fs.ReadFile(filepath.Join(s.dir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for _, log := range s.parts() {
			start := log.StartOffset()
			if s.cfg.Start == StartLatest {
				start = log.HighWatermark()
			}
			s.state = append(s.state, newPartState(start))
		}
	case err != nil:
		return err
	default:
		snap, err := decodeSnapshot(data)
		if err != nil {
			return fmt.Errorf("%s: %w", stateFile, err)
		}
		s.gen, s.deadN, s.dlqStart = snap.Generation, snap.DeadLettered, snap.DLQStart
		for _, off := range snap.Redriven {
			s.redriven[off] = true
		}
		for _, p := range snap.Partitions {
			ps := newPartState(p.Floor)
			ps.next = p.Next
			for _, pd := range p.Pending { // sorted by offset: a key's first is its head
				ps.pend[pd.Offset] = pd
				s.enqueueKey(ps, len(s.state), pd, false)
			}
			s.state = append(s.state, ps)
		}
	}
	if err := s.removeStrayJournals(); err != nil {
		return err
	}
	if s.journal, err = s.openJournal(s.gen); err != nil {
		return err
	}
	if err := s.replay(); err != nil {
		return err
	}
	s.grp.owners = make([]string, len(s.parts()))
	// Every lease ended with the process: the eligible messages (all of them, or in
	// key_ordered mode each key's head) go back on the retry heap.
	for i, ps := range s.state {
		ps.retry = nil
		for _, pd := range ps.pend {
			if !s.keyed(pd.Key) || ps.keys[pd.Key].head == pd.Offset {
				ps.retry.push(timeItem{at: pd.NotBefore, partition: i, offset: pd.Offset})
			}
		}
	}
	return s.compactLocked()
}

func (s *Sub) removeStrayJournals() error {
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		g, ok := strings.CutPrefix(n, journalPrefix)
		if !ok {
			continue
		}
		if gen, err := strconv.Atoi(g); err != nil || gen != s.gen {
			if err := s.fs.RemoveAll(filepath.Join(s.dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// replay applies every event of the current journal generation.
func (s *Sub) replay() error {
	off := s.journal.StartOffset()
	for off < s.journal.HighWatermark() {
		data, next, err := s.journal.Read(off, 1<<20, nil)
		if err != nil {
			return fmt.Errorf("replay journal at %d: %w", off, err)
		}
		var derr error
		err = batch.Each(data, func(r *batch.Record) bool {
			if r.Offset < off {
				return true
			}
			e, err := decodeEvent(r.Value)
			if err != nil {
				derr = fmt.Errorf("journal record %d: %w", r.Offset, err)
				return false
			}
			s.apply(e)
			return true
		})
		if err != nil {
			return fmt.Errorf("replay journal at %d: %w", off, err)
		}
		if derr != nil {
			return derr
		}
		off = next
	}
	return nil
}

// compactLocked writes the whole state as a snapshot that starts a new, empty
// journal generation, then removes the old generation. A crash at any point leaves
// either the old snapshot and journal or the new ones.
func (s *Sub) compactLocked() error {
	next := s.gen + 1
	j, err := s.openJournal(next)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	snap := snapshot{Version: snapshotFormat, Generation: next, DeadLettered: s.deadN, DLQStart: s.dlqStart}
	for off := range s.redriven {
		snap.Redriven = append(snap.Redriven, off)
	}
	slices.Sort(snap.Redriven)
	for _, ps := range s.state {
		p := partSnapshot{Floor: ps.floor, Next: ps.next}
		for _, pd := range ps.pend {
			p.Pending = append(p.Pending, pd)
		}
		slices.SortFunc(p.Pending, func(a, b *pending) int { return int(a.Offset - b.Offset) })
		snap.Partitions = append(snap.Partitions, p)
	}
	data, err := json.Marshal(snap)
	if err != nil {
		j.Close()
		return fmt.Errorf("compact: %w", err)
	}
	if err := vfs.WriteFileAtomic(s.fs, filepath.Join(s.dir, stateFile), data); err != nil {
		j.Close()
		s.fs.RemoveAll(s.journalDir(next))
		return fmt.Errorf("compact: %w", err)
	}
	old := s.journal
	s.journal, s.gen, s.events = j, next, 0
	if err := old.Close(); err != nil {
		s.log.Warn("subscription: closing old journal", "subscription", s.cfg.Name, "error", err)
	}
	if err := s.fs.RemoveAll(s.journalDir(next - 1)); err != nil {
		return fmt.Errorf("compact: remove old journal: %w", err)
	}
	return s.fs.SyncDir(s.dir)
}

func decodeSnapshot(data []byte) (snapshot, error) {
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return snap, err
	}
	if snap.Version != snapshotFormat {
		return snap, fmt.Errorf("snapshot version %d, want %d", snap.Version, snapshotFormat)
	}
	if snap.Generation < 0 || len(snap.Partitions) > maxPartition {
		return snap, fmt.Errorf("snapshot generation %d, %d partitions: out of bounds", snap.Generation, len(snap.Partitions))
	}
	for i, p := range snap.Partitions {
		if p.Floor < 0 || p.Next < p.Floor {
			return snap, fmt.Errorf("snapshot partition %d: floor %d, next %d", i, p.Floor, p.Next)
		}
		for _, pd := range p.Pending {
			if pd == nil || pd.Offset < p.Floor || pd.Offset >= p.Next || pd.Deliveries < 0 {
				return snap, fmt.Errorf("snapshot partition %d: pending entry out of [floor, next)", i)
			}
		}
	}
	return snap, nil
}

// Close compacts the state and stops the subscription. Deliveries in flight are
// redelivered after the next open.
func (s *Sub) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	var err error
	if s.failure == nil {
		err = s.compactLocked()
	}
	s.closed = true
	close(s.stop)
	s.broadcastLocked()
	s.mu.Unlock()
	s.wg.Wait()
	if cerr := s.journal.Close(); err == nil {
		err = cerr
	}
	return err
}

// PartitionInfo is a subscription's position in one partition.
type PartitionInfo struct {
	Floor    int64 // every offset below is done
	Next     int64 // the next offset never delivered
	Backlog  int64 // messages not yet done: pending plus never delivered
	InFlight int
	Waiting  int // failed deliveries waiting for their retry
	Delayed  int // messages not yet delivered because their deliver-at time is ahead
	Held     int // key_ordered: messages waiting behind an earlier one of their key
	Parked   int // key_ordered: keys whose head failed and waits for its retry
}

// Info describes a subscription.
type Info struct {
	Config       Config
	Partitions   []PartitionInfo
	Backlog      int64
	InFlight     int
	Waiting      int
	Delayed      int
	Held         int
	Parked       int
	DeadLettered int64
	// Redeliveries counts deliveries after the first, since the subscription opened.
	Redeliveries int64
	// OldestUnsettled is the time (unix ms) of the oldest message not yet settled;
	// HasOldest is false when every message is settled.
	OldestUnsettled int64
	HasOldest       bool
	// NextDue is when the next waiting or delayed message becomes due (unix ms;
	// it may be past). HasNextDue is false when none waits.
	NextDue    int64
	HasNextDue bool
}

// Info returns the subscription's positions and counters.
func (s *Sub) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := Info{Config: s.cfg, DeadLettered: s.deadN, Redeliveries: s.redeliveries}
	parts := s.parts()
	for i, log := range parts {
		ps := s.partLocked(i)
		pi := PartitionInfo{Floor: ps.floor, Next: ps.next}
		pi.Backlog = max(0, log.HighWatermark()-ps.next) + int64(len(ps.pend))
		pi.Held = ps.held
		if ps.floor < log.HighWatermark() {
			if rec, err := s.readOne(i, ps.floor); err == nil && (!info.HasOldest || rec.Timestamp < info.OldestUnsettled) {
				info.OldestUnsettled, info.HasOldest = rec.Timestamp, true
			}
		}
		for _, ks := range ps.keys {
			if pd := ps.pend[ks.head]; pd != nil && pd.lease == 0 && pd.Deliveries > 0 {
				pi.Parked++
			}
		}
		for _, pd := range ps.pend {
			switch {
			case pd.lease != 0:
				pi.InFlight++
				continue
			case s.keyed(pd.Key) && ps.keys[pd.Key].head != pd.Offset:
				continue // held: counted in Held
			case pd.Deliveries == 0:
				pi.Delayed++
			default:
				pi.Waiting++
			}
			if !info.HasNextDue || pd.NotBefore < info.NextDue {
				info.NextDue, info.HasNextDue = pd.NotBefore, true
			}
		}
		info.Partitions = append(info.Partitions, pi)
		info.Backlog += pi.Backlog
		info.InFlight += pi.InFlight
		info.Waiting += pi.Waiting
		info.Delayed += pi.Delayed
		info.Held += pi.Held
		info.Parked += pi.Parked
	}
	return info
}

// ParkedKey is a key whose oldest pending message failed and waits for its retry;
// its later messages wait behind it.
type ParkedKey struct {
	Partition  int
	Key        string
	Offset     int64 // the failing message
	Deliveries int
	NotBefore  int64 // unix ms of the next attempt
	Held       int   // later messages of the key waiting
	LastError  string
}

// ParkedKeys returns up to limit parked keys, oldest failing offset first.
func (s *Sub) ParkedKeys(limit int) []ParkedKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ParkedKey
	for i, ps := range s.state {
		for k, ks := range ps.keys {
			pd := ps.pend[ks.head]
			if pd == nil || pd.lease != 0 || pd.Deliveries == 0 {
				continue
			}
			pk := ParkedKey{Partition: i, Key: k, Offset: pd.Offset, Deliveries: pd.Deliveries, NotBefore: pd.NotBefore, Held: len(ks.queue)}
			if n := len(pd.Attempts); n > 0 {
				pk.LastError = pd.Attempts[n-1].Error
			}
			out = append(out, pk)
		}
	}
	slices.SortFunc(out, func(a, b ParkedKey) int {
		if a.Partition != b.Partition {
			return a.Partition - b.Partition
		}
		return int(a.Offset - b.Offset)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
