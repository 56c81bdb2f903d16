package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zones work on machines without a zoneinfo database

	"github.com/sluicemq/sluice/internal/schedule"
	"github.com/sluicemq/sluice/internal/vfs"
)

// Schedules live in <data>/schedules/<name>.json: config and state, written
// atomically after every change.
const schedulesDir = "schedules"

// Headers every scheduled message carries.
const (
	HeaderSchedule     = "sluice-schedule"
	HeaderScheduleTick = "sluice-schedule-tick" // the tick, decimal unix ms
)

// MissedPolicy says what a schedule does about ticks that passed while the broker
// was down (or stalled for over a minute).
type MissedPolicy string

const (
	// MissedSkip drops missed ticks and waits for the next one. The default.
	MissedSkip MissedPolicy = "skip"
	// MissedCatchUpOnce fires once for all the missed ticks, then goes on.
	MissedCatchUpOnce MissedPolicy = "catch_up_once"
)

// Limits of schedules.
const (
	MaxSchedules = 10000
	// MissedGrace is how late a single tick may fire before it counts as missed.
	MissedGrace = time.Minute
)

// ScheduleConfig is a named schedule that publishes a message to a stream on a
// cron expression or a fixed interval.
type ScheduleConfig struct {
	// Name: 1..128 characters of [A-Za-z0-9._-]. Required.
	Name string `json:"name"`
	// Stream receives the messages. Required; it must exist when the schedule fires.
	Stream string `json:"stream"`
	// Message is published at every tick (Key, Headers, Body, Partition), with the
	// tick as its time and HeaderSchedule and HeaderScheduleTick added.
	Message Message `json:"message"`
	// Cron is a five-field cron expression (minute hour day-of-month month
	// day-of-week). Exactly one of Cron and Every is set.
	Cron string `json:"cron,omitempty"`
	// Every fires at fixed intervals from the schedule's creation. Limits [1 s, 366 d].
	Every time.Duration `json:"every,omitempty"`
	// TimeZone is the IANA zone Cron is read in. Default "UTC".
	TimeZone string `json:"time_zone,omitempty"`
	// Missed is the policy for ticks missed while the broker was down. Default
	// MissedSkip.
	Missed MissedPolicy `json:"missed,omitempty"`
	// Paused schedules do not fire; their missed ticks are skipped on resume.
	Paused bool `json:"paused,omitempty"`
}

// ScheduleInfo describes a schedule.
type ScheduleInfo struct {
	Config ScheduleConfig `json:"config"`
	// NextFire is the next tick (zero while paused); LastTick the last one fired or
	// skipped.
	NextFire time.Time `json:"next_fire"`
	LastTick time.Time `json:"last_tick"`
	Fired    int64     `json:"fired"`
}

// scheduleFile is a schedule's config and state on disk.
type scheduleFile struct {
	Version  int            `json:"version"`
	Config   ScheduleConfig `json:"config"`
	Anchor   int64          `json:"anchor"`    // unix ms: creation, the origin of Every
	LastTick int64          `json:"last_tick"` // unix ms
	Fired    int64          `json:"fired"`
	// Pending is set just before a publish and cleared after it: on open, the
	// stream is searched for the tick so that it is never published twice.
	Pending *pendingFire `json:"pending,omitempty"`
}

type pendingFire struct {
	Tick int64   `json:"tick"`
	From []int64 `json:"from"` // each partition's high watermark before the publish
}

type scheduleState struct {
	f    scheduleFile
	cron *schedule.Cron
	loc  *time.Location
	// After a failed fire: not before retryAt, and the next wait doubles.
	retryAt   time.Time
	retryWait time.Duration
}

// Bounds of the wait after a failed fire.
const (
	minFireRetry = 100 * time.Millisecond
	maxFireRetry = time.Minute
)

// scheduler owns the schedules. mu serializes firing and changes.
type scheduler struct {
	mu    sync.Mutex
	byKey map[string]*scheduleState
	wake  chan struct{}
	// afterPublish is a test hook run between a publish and the state write.
	afterPublish func()
}

func (c *ScheduleConfig) validate() (*scheduleState, error) {
	st := &scheduleState{loc: time.UTC}
	if c.TimeZone == "" {
		c.TimeZone = "UTC"
	}
	if c.Missed == "" {
		c.Missed = MissedSkip
	}
	switch {
	case !validName(c.Name):
		return nil, invalid("ScheduleConfig.Name", "%q must be 1..%d characters of [A-Za-z0-9._-] starting with a letter or digit", c.Name, MaxStreamNameLen)
	case !validName(c.Stream):
		return nil, invalid("ScheduleConfig.Stream", "%q is not a valid stream name", c.Stream)
	case (c.Cron == "") == (c.Every == 0):
		return nil, invalid("ScheduleConfig.Cron", "set exactly one of Cron and Every")
	case c.Every != 0 && (c.Every < schedule.MinInterval || c.Every > schedule.MaxInterval):
		return nil, invalid("ScheduleConfig.Every", "%v outside [%v, %v]", c.Every, schedule.MinInterval, schedule.MaxInterval)
	case c.Missed != MissedSkip && c.Missed != MissedCatchUpOnce:
		return nil, invalid("ScheduleConfig.Missed", "%q is not one of skip, catch_up_once", c.Missed)
	case !c.Message.DeliverAt.IsZero():
		return nil, invalid("ScheduleConfig.Message.DeliverAt", "not supported on scheduled messages")
	}
	if err := c.Message.validate("ScheduleConfig.Message", MaxMessageBytesCeiling, time.Now()); err != nil {
		return nil, err
	}
	for _, h := range c.Message.Headers {
		if h.Key == HeaderSchedule || h.Key == HeaderScheduleTick {
			return nil, invalid("ScheduleConfig.Message.Headers", "header %q is set by the schedule", h.Key)
		}
	}
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return nil, invalid("ScheduleConfig.TimeZone", "%q: %v", c.TimeZone, err)
	}
	st.loc = loc
	if c.Cron != "" {
		if st.cron, err = schedule.Parse(c.Cron); err != nil {
			return nil, invalid("ScheduleConfig.Cron", "%v", err)
		}
		if _, err := st.cron.Next(time.Now(), loc); err != nil {
			return nil, invalid("ScheduleConfig.Cron", "%v", err)
		}
	}
	return st, nil
}

// next returns the first tick strictly after t.
func (st *scheduleState) next(t time.Time) (time.Time, bool) {
	c := st.f.Config
	if c.Every != 0 {
		return schedule.NextEvery(time.UnixMilli(st.f.Anchor), c.Every, t), true
	}
	n, err := st.cron.Next(t, st.loc)
	return n, err == nil
}

func (st *scheduleState) info() ScheduleInfo {
	in := ScheduleInfo{Config: st.f.Config, LastTick: time.UnixMilli(st.f.LastTick), Fired: st.f.Fired}
	if !st.f.Config.Paused {
		in.NextFire, _ = st.next(time.UnixMilli(st.f.LastTick))
	}
	return in
}

func (b *Broker) schedulePath(name string) string {
	return filepath.Join(b.dir, schedulesDir, name+".json")
}

func (b *Broker) saveSchedule(st *scheduleState) error {
	data, err := json.MarshalIndent(st.f, "", "  ")
	if err != nil {
		return err
	}
	return vfs.WriteFileAtomic(b.fs, b.schedulePath(st.f.Config.Name), append(data, '\n'))
}

// openSchedules loads every schedule, settling a publish that a crash interrupted.
func (b *Broker) openSchedules() error {
	b.sched = &scheduler{byKey: map[string]*scheduleState{}, wake: make(chan struct{}, 1)}
	dir := filepath.Join(b.dir, schedulesDir)
	if err := b.fs.MkdirAll(dir); err != nil {
		return err
	}
	if err := b.fs.SyncDir(b.dir); err != nil {
		return err
	}
	names, err := b.fs.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		data, err := b.fs.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		var f scheduleFile
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("schedule %s: %w", n, err)
		}
		st, err := f.Config.validate()
		if err != nil {
			return fmt.Errorf("schedule %s: %w", n, err)
		}
		st.f = f
		if f.Pending != nil {
			if b.tickPublished(f.Config, f.Pending) {
				st.f.LastTick = f.Pending.Tick
				st.f.Fired++
			}
			st.f.Pending = nil
			if err := b.saveSchedule(st); err != nil {
				return err
			}
		}
		b.sched.byKey[f.Config.Name] = st
	}
	return nil
}

// tickPublished searches the stream, from where it ended before the interrupted
// publish, for the schedule's message of that tick.
func (b *Broker) tickPublished(c ScheduleConfig, p *pendingFire) bool {
	ctx := context.Background()
	want := strconv.FormatInt(p.Tick, 10)
	for part, from := range p.From {
		r, err := b.NewReader(ctx, c.Stream, ReaderConfig{Partition: part, Start: AtOffset(from)})
		if err != nil {
			return false
		}
		info, err := b.Stream(ctx, c.Stream)
		if err != nil || part >= len(info.Partitions) {
			r.Close()
			return false
		}
		for r.Offset() < info.Partitions[part].HighWatermark {
			rec, err := r.Next(ctx)
			if err != nil {
				break
			}
			var name, tick string
			for _, h := range rec.Headers {
				switch h.Key {
				case HeaderSchedule:
					name = string(h.Value)
				case HeaderScheduleTick:
					tick = string(h.Value)
				}
			}
			if name == c.Name && tick == want {
				r.Close()
				return true
			}
		}
		r.Close()
	}
	return false
}

// schedulerLoop fires due schedules until the broker stops.
func (b *Broker) schedulerLoop() {
	defer b.wg.Done()
	for {
		next := b.runSchedules()
		wait := time.Hour // a clock jump is caught within the hour
		if !next.IsZero() {
			wait = min(max(next.Sub(b.opts.now()), 10*time.Millisecond), wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-b.sched.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// runSchedules fires every due schedule once and returns the earliest next tick
// (zero when none).
func (b *Broker) runSchedules() time.Time {
	s := b.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	now := b.opts.now()
	var earliest time.Time
	for _, st := range s.byKey {
		if st.f.Config.Paused {
			continue
		}
		if now.Before(st.retryAt) {
			if earliest.IsZero() || st.retryAt.Before(earliest) {
				earliest = st.retryAt
			}
			continue
		}
		b.fireDue(st, now)
		n, ok := st.next(time.UnixMilli(st.f.LastTick))
		if now.Before(st.retryAt) {
			n, ok = st.retryAt, true
		}
		if ok && (earliest.IsZero() || n.Before(earliest)) {
			earliest = n
		}
	}
	return earliest
}

// fireDue fires st's due tick, or applies the missed policy when ticks were missed.
func (b *Broker) fireDue(st *scheduleState, now time.Time) {
	var due []time.Time // at most two kept: the first and the last
	n := 0
	jumped := false
	for t, ok := st.next(time.UnixMilli(st.f.LastTick)); ok && !t.After(now); t, ok = st.next(t) {
		if n < 2 {
			due = append(due, t)
		} else {
			due[1] = t
		}
		n++
		if n > 100000 && !jumped { // a long outage of a frequent schedule: skip ahead
			jumped = true
			t = now.Add(-MissedGrace)
		}
	}
	if n == 0 {
		return
	}
	last := due[len(due)-1]
	// The newest tick fires when it is on time (or, under MissedCatchUpOnce, in
	// any case); older ones were missed, and that one fire stands for them.
	if now.Sub(last) <= MissedGrace || st.f.Config.Missed == MissedCatchUpOnce {
		if n > 1 {
			b.opts.Logger.Warn("sluice: schedule missed ticks", "schedule", st.f.Config.Name, "missed", n-1)
		}
		b.fire(st, last)
		return
	}
	b.opts.Logger.Warn("sluice: schedule missed ticks; skipped", "schedule", st.f.Config.Name, "missed", n, "last", last)
	st.f.LastTick = last.UnixMilli()
	if err := b.saveSchedule(st); err != nil {
		b.opts.Logger.Error("sluice: saving schedule", "schedule", st.f.Config.Name, "error", err)
	}
}

// fire publishes st's message for tick exactly once: the tick is recorded as
// pending before the publish, so that after a crash the stream tells whether it
// went out.
func (b *Broker) fire(st *scheduleState, tick time.Time) {
	c := st.f.Config
	ctx := b.stopCtx // a publish stuck at Close ends with the broker
	info, err := b.Stream(ctx, c.Stream)
	if err != nil {
		b.opts.Logger.Warn("sluice: schedule cannot fire", "schedule", c.Name, "error", err)
		st.backoff(b.opts.now())
		return
	}
	p := &pendingFire{Tick: tick.UnixMilli()}
	for _, pi := range info.Partitions {
		p.From = append(p.From, pi.HighWatermark)
	}
	st.f.Pending = p
	if err := b.saveSchedule(st); err != nil {
		st.f.Pending = nil
		b.opts.Logger.Error("sluice: saving schedule", "schedule", c.Name, "error", err)
		return
	}
	msg := c.Message
	msg.Time = tick
	msg.Headers = append(append([]Header(nil), msg.Headers...),
		Header{Key: HeaderSchedule, Value: []byte(c.Name)},
		Header{Key: HeaderScheduleTick, Value: []byte(strconv.FormatInt(p.Tick, 10))})
	_, err = b.Publish(ctx, c.Stream, msg)
	if hook := b.sched.afterPublish; hook != nil {
		hook()
	}
	st.f.Pending = nil
	if err != nil {
		b.opts.Logger.Warn("sluice: schedule publish failed; will retry", "schedule", c.Name, "tick", tick, "error", err)
		st.backoff(b.opts.now())
	} else {
		st.f.LastTick, st.f.Fired = p.Tick, st.f.Fired+1
		st.retryAt, st.retryWait = time.Time{}, 0
	}
	if err := b.saveSchedule(st); err != nil {
		b.opts.Logger.Error("sluice: saving schedule", "schedule", c.Name, "error", err)
	}
}

// CreateSchedule creates a schedule. Its first tick is the first after now.
func (b *Broker) CreateSchedule(ctx context.Context, cfg ScheduleConfig) (ScheduleInfo, error) {
	st, err := cfg.validate()
	if err != nil {
		return ScheduleInfo{}, err
	}
	s := b.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byKey[cfg.Name]; ok {
		return ScheduleInfo{}, fmt.Errorf("%w: %q", ErrScheduleExists, cfg.Name)
	}
	if len(s.byKey) >= MaxSchedules {
		return ScheduleInfo{}, invalid("ScheduleConfig.Name", "%d schedules, limit MaxSchedules=%d", len(s.byKey), MaxSchedules)
	}
	now := b.opts.now().UnixMilli()
	st.f = scheduleFile{Version: 1, Config: cfg, Anchor: now, LastTick: now}
	if err := b.saveSchedule(st); err != nil {
		return ScheduleInfo{}, err
	}
	s.byKey[cfg.Name] = st
	b.wakeScheduler()
	return st.info(), nil
}

func (b *Broker) wakeScheduler() {
	select {
	case b.sched.wake <- struct{}{}:
	default:
	}
}

// Schedule errors. Test with errors.Is.
var (
	// ErrScheduleNotFound is returned for a schedule that does not exist.
	ErrScheduleNotFound = errors.New("sluice: schedule not found")
	// ErrScheduleExists is returned by CreateSchedule for a name in use.
	ErrScheduleExists = errors.New("sluice: schedule already exists")
)

// PauseSchedule pauses or resumes a schedule. Ticks that pass while it is paused
// are skipped.
func (b *Broker) PauseSchedule(ctx context.Context, name string, paused bool) (ScheduleInfo, error) {
	s := b.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byKey[name]
	if !ok {
		return ScheduleInfo{}, fmt.Errorf("%w: %q", ErrScheduleNotFound, name)
	}
	if st.f.Config.Paused == paused {
		return st.info(), nil
	}
	st.f.Config.Paused = paused
	if !paused {
		st.f.LastTick = b.opts.now().UnixMilli()
	}
	if err := b.saveSchedule(st); err != nil {
		return ScheduleInfo{}, err
	}
	b.wakeScheduler()
	return st.info(), nil
}

// DeleteSchedule removes a schedule.
func (b *Broker) DeleteSchedule(ctx context.Context, name string) error {
	s := b.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byKey[name]; !ok {
		return fmt.Errorf("%w: %q", ErrScheduleNotFound, name)
	}
	if err := b.fs.Remove(b.schedulePath(name)); err != nil {
		return err
	}
	if err := b.fs.SyncDir(filepath.Dir(b.schedulePath(name))); err != nil {
		return err
	}
	delete(s.byKey, name)
	return nil
}

// ListSchedules lists every schedule, sorted by name.
func (b *Broker) ListSchedules(ctx context.Context) ([]ScheduleInfo, error) {
	s := b.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ScheduleInfo, 0, len(s.byKey))
	for _, st := range s.byKey {
		out = append(out, st.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out, nil
}

// backoff delays the next attempt after a failed fire, doubling up to a minute.
func (st *scheduleState) backoff(now time.Time) {
	st.retryWait = min(max(2*st.retryWait, minFireRetry), maxFireRetry)
	st.retryAt = now.Add(st.retryWait)
}
