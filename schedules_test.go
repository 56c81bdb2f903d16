package sluice

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// scheduled reads every message of stream's partition 0 and returns their ticks.
func scheduled(t *testing.T, b *Broker, stream string) []string {
	t.Helper()
	ctx := context.Background()
	info, err := b.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.NewReader(ctx, stream, ReaderConfig{})
	defer r.Close()
	var ticks []string
	for r.Offset() < info.Partitions[0].HighWatermark {
		rec, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range rec.Headers {
			if h.Key == HeaderScheduleTick {
				ticks = append(ticks, time.UnixMilli(mustInt(t, string(h.Value))).UTC().Format("15:04"))
			}
		}
	}
	return ticks
}

func mustInt(t *testing.T, s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestScheduleFiresOncePerTickAcrossRestarts(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 5, 1, 9, 59, 30, 0, time.UTC)}
	dir := t.TempDir()
	ctx := context.Background()
	b := openWithClock(t, dir, clk)
	defer func() { b.Close() }()
	b.CreateStream(ctx, StreamConfig{Name: "alerts"})
	if _, err := b.CreateSchedule(ctx, ScheduleConfig{Name: "evaluate", Stream: "alerts", Cron: "* * * * *",
		Message: Message{Body: []byte("evaluate price alerts")}}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // 10:00, 10:01, 10:02, each run twice
		clk.advance(time.Minute)
		b.runSchedules()
		b.runSchedules()
	}
	b.Close()
	b = openWithClock(t, dir, clk)
	b.runSchedules() // nothing is due again after a restart
	clk.advance(time.Minute)
	b.runSchedules()
	got := scheduled(t, b, "alerts")
	if want := []string{"10:00", "10:01", "10:02", "10:03"}; !equalStrings(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	list, _ := b.ListSchedules(ctx)
	if len(list) != 1 || list[0].Fired != 4 || !list[0].NextFire.Equal(time.Date(2026, 5, 1, 10, 4, 0, 0, time.UTC)) {
		t.Fatalf("schedule: %+v", list)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestScheduleMissedTicks(t *testing.T) {
	for _, c := range []struct {
		policy MissedPolicy
		want   []string
	}{
		{MissedSkip, []string{"10:00", "11:10"}},
		{MissedCatchUpOnce, []string{"10:00", "11:00", "11:10"}},
	} {
		t.Run(string(c.policy), func(t *testing.T) {
			clk := &testClock{t: time.Date(2026, 5, 1, 9, 50, 0, 0, time.UTC)}
			dir := t.TempDir()
			ctx := context.Background()
			b := openWithClock(t, dir, clk)
			b.CreateStream(ctx, StreamConfig{Name: "s"})
			b.CreateSchedule(ctx, ScheduleConfig{Name: "x", Stream: "s", Every: 10 * time.Minute, Missed: c.policy})
			clk.advance(10 * time.Minute) // 10:00
			b.runSchedules()
			b.Close()
			clk.advance(65 * time.Minute) // down until 11:05: 10:10 to 11:00 missed
			b = openWithClock(t, dir, clk)
			defer b.Close()
			b.runSchedules()
			clk.advance(5 * time.Minute)
			b.runSchedules()
			if got := scheduled(t, b, "s"); !equalStrings(got, c.want) {
				t.Fatalf("fired %v, want %v", got, c.want)
			}
		})
	}
}

// A tick a little late (within MissedGrace) still fires, even after an outage.
func TestScheduleLateTickWithinGraceFires(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 5, 1, 9, 59, 0, 0, time.UTC)}
	b := openWithClock(t, t.TempDir(), clk)
	defer b.Close()
	ctx := context.Background()
	b.CreateStream(ctx, StreamConfig{Name: "s"})
	b.CreateSchedule(ctx, ScheduleConfig{Name: "x", Stream: "s", Every: time.Second})
	clk.advance(61500 * time.Millisecond) // a stall of a minute and a half second
	b.runSchedules()
	if got := scheduled(t, b, "s"); len(got) != 1 {
		t.Fatalf("after a stall: fired %v, want the newest tick once", got)
	}
}

// TestScheduleCrashBetweenPublishAndStateWrite: a power failure right after the
// publish (before the schedule's state is written) must not fire the tick again.
func TestScheduleCrashBetweenPublishAndStateWrite(t *testing.T) {
	fs := vfs.NewMem()
	clk := &testClock{t: time.Date(2026, 5, 1, 9, 59, 30, 0, time.UTC)}
	open := func() *Broker {
		b, err := Open("/data", &Options{fs: fs, now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx := context.Background()
	b := open()
	b.CreateStream(ctx, StreamConfig{Name: "s"})
	b.CreateSchedule(ctx, ScheduleConfig{Name: "x", Stream: "s", Cron: "0 * * * *"})
	b.sched.afterPublish = func() { fs.Crash(rand.New(rand.NewPCG(1, 2))) }
	clk.advance(time.Minute) // 10:00
	b.runSchedules()
	b.Close()
	b = open()
	defer b.Close()
	b.runSchedules()
	clk.advance(time.Minute)
	b.runSchedules()
	if got := scheduled(t, b, "s"); !equalStrings(got, []string{"10:00"}) {
		t.Fatalf("after a crash between publish and state write: fired %v", got)
	}
	list, _ := b.ListSchedules(ctx)
	if list[0].Fired != 1 || !list[0].LastTick.Equal(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("schedule: %+v", list[0])
	}
}

func TestScheduleValidationAndPause(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 5, 1, 9, 59, 30, 0, time.UTC)}
	b := openWithClock(t, t.TempDir(), clk)
	defer b.Close()
	ctx := context.Background()
	b.CreateStream(ctx, StreamConfig{Name: "s"})
	for _, bad := range []ScheduleConfig{
		{Name: "a", Stream: "s"},
		{Name: "a", Stream: "s", Cron: "* * * * *", Every: time.Minute},
		{Name: "a", Stream: "s", Cron: "61 * * * *"},
		{Name: "a", Stream: "s", Cron: "0 0 30 2 *"},
		{Name: "a", Stream: "s", Every: time.Millisecond},
		{Name: "a", Stream: "s", Every: time.Minute, TimeZone: "Mars/Olympus"},
		{Name: "a", Stream: "s", Every: time.Minute, Missed: "sometimes"},
	} {
		if _, err := b.CreateSchedule(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	info, err := b.CreateSchedule(ctx, ScheduleConfig{Name: "ny", Stream: "s", Cron: "0 9 * * *", TimeZone: "America/New_York"})
	if err != nil || !info.NextFire.Equal(time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC)) {
		t.Fatalf("New York 9:00: %+v %v", info, err)
	}
	if info, _ := b.PauseSchedule(ctx, "ny", true); !info.NextFire.IsZero() {
		t.Fatalf("paused schedule has a next fire: %v", info.NextFire)
	}
	clk.advance(24 * time.Hour)
	b.runSchedules()
	if got := scheduled(t, b, "s"); len(got) != 0 {
		t.Fatalf("a paused schedule fired: %v", got)
	}
	if err := b.DeleteSchedule(ctx, "ny"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSchedule(ctx, "ny"); !errors.Is(err, ErrScheduleNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
