package drill

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runResult is what one live run emitted.
type runResult struct {
	events  []Event
	figures map[string]Figure
	took    time.Duration
}

// fig returns the figure called name, failing the test without it.
func (r runResult) fig(t *testing.T, name string) float64 {
	t.Helper()
	f, ok := r.figures[name]
	if !ok {
		t.Fatalf("no figure %q; the run emitted:\n%s", name, r.transcript())
	}
	return f.Value
}

// transcript is every event, one a line, and its figures.
func (r runResult) transcript() string {
	var b strings.Builder
	for _, e := range r.events {
		b.WriteString(e.Kind + ": " + e.Text + "\n")
		for _, f := range e.Figures {
			b.WriteString("    " + f.Name + " = " + strconv.FormatFloat(f.Value, 'f', -1, 64) + " " + f.Unit + "\n")
		}
	}
	return b.String()
}

// liveRun runs drill n on a fresh embedded broker, checks the shape of what
// it emitted and that it left no stream behind, and returns the events.
func liveRun(t *testing.T, n int) runResult {
	t.Helper()
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	res := runResult{figures: map[string]Figure{}}
	start := time.Now()
	err = Run(ctx, b, n, Options{Prefix: "drill-test", Dir: dir}, func(e Event) { res.events = append(res.events, e) })
	res.took = time.Since(start)
	t.Logf("drill %d took %v", n, res.took.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, res.transcript())
	}
	t.Logf("drill %d:\n%s", n, res.transcript())
	if len(res.events) == 0 || res.events[len(res.events)-1].Kind != KindDone {
		t.Fatalf("the last event is not the conclusion:\n%s", res.transcript())
	}
	for i, e := range res.events {
		switch e.Kind {
		case KindStep, KindInfo:
		case KindFigures:
			if len(e.Figures) == 0 {
				t.Errorf("event %d: figures without figures", i)
			}
			for _, f := range e.Figures {
				if _, dup := res.figures[f.Name]; dup {
					t.Errorf("figure %q emitted twice", f.Name)
				}
				switch f.Unit {
				case "ms", "msg", "msg/s", "count", "s":
				default:
					t.Errorf("figure %q: unit %q", f.Name, f.Unit)
				}
				res.figures[f.Name] = f
			}
		case KindDone:
			if i != len(res.events)-1 {
				t.Errorf("event %d: a conclusion before the end", i)
			}
		default:
			t.Errorf("event %d: kind %q", i, e.Kind)
		}
		if e.Text == "" {
			t.Errorf("event %d (%s) has no text", i, e.Kind)
		}
	}
	assertNoStreams(t, b)
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("Options.Dir holds %d entries after the run (%v)", len(left), err)
	}
	return res
}

func assertNoStreams(t *testing.T, c sluice.Client) {
	t.Helper()
	streams, err := c.ListStreams(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		t.Errorf("stream %s left after the run", s.Config.Name)
	}
}

func TestDrillQueueOrNot(t *testing.T) {
	r := liveRun(t, 1)
	if inline, queued := r.fig(t, "caller p99 inline"), r.fig(t, "caller p99 behind the queue"); queued >= inline {
		t.Errorf("caller p99: %v ms behind the queue, %v ms inline; want the queue's lower", queued, inline)
	}
	if e := r.fig(t, "errors inline"); e == 0 {
		t.Error("no caller saw an error inline, though requests arrived during the slow spell")
	}
	if e := r.fig(t, "errors behind the queue"); e != 0 {
		t.Errorf("%v errors behind the queue, want 0", e)
	}
	if p := r.fig(t, "processed"); p != q1Requests {
		t.Errorf("the worker processed %v requests, want %d", p, q1Requests)
	}
	if p := r.fig(t, "backlog peak"); p < 1 {
		t.Errorf("backlog peak %v", p)
	}
	if q, i := r.fig(t, "answer p50 through the queue"), r.fig(t, "answer p50 inline"); q <= i {
		t.Errorf("the answer took %v ms at the median through the queue, %v ms inline", q, i)
	}
}

func TestDrillExactlyOnce(t *testing.T) {
	r := liveRun(t, 2)
	for name, want := range map[string]float64{
		"charges, naive handler":                      2,
		"charges, with ProcessedLog":                  1,
		"late acks rejected":                          1,
		"messages stored":                             1,
		"retries answered with the original position": 1,
		"repeats skipped":                             1,
	} {
		if got := r.fig(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"redelivery delay, naive", "redelivery delay, idempotent"} {
		if d := r.fig(t, name); d < ms(e2Lease) {
			t.Errorf("%s: %v ms, before the %v lease expired", name, d, e2Lease)
		}
	}
	for _, name := range []string{"deliveries, naive", "deliveries, idempotent"} {
		if d := r.fig(t, name); d != 2 {
			t.Errorf("%s = %v, want 2", name, d)
		}
	}
}

func TestDrillPoison(t *testing.T) {
	r := liveRun(t, 3)
	for name, want := range map[string]float64{
		"deliveries of the poisoned payment":     p3MaxDeliveries,
		"parked keys":                            1,
		"payments held behind it":                p3PerAccount - p3PoisonSeq,
		"dead letters":                           1,
		"attempts in its history":                p3MaxDeliveries,
		"acct-3 payments applied after it":       p3PerAccount - p3PoisonSeq,
		"redriven":                               1,
		"processed after redrive":                1,
		"delivery count of the redriven payment": 1,
		"payments applied":                       p3Payments,
		"backlog":                                0,
	} {
		if got := r.fig(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if h := r.fig(t, "payments held behind it"); h < 1 || h > p3PerAccount-p3PoisonSeq {
		t.Errorf("%v payments held behind the poisoned one, want 1 to %d", h, p3PerAccount-p3PoisonSeq)
	}
	if o := r.fig(t, "other accounts' deliveries while parked"); o <= 0 {
		t.Errorf("the other accounts made %v deliveries while acct-3 was parked", o)
	}
	// The backoff's lower bounds: half of 100 ms, then half of 200 ms.
	if g := r.fig(t, "gap before attempt 2"); g < 50 {
		t.Errorf("attempt 2 came %v ms after the first", g)
	}
	if g := r.fig(t, "gap before attempt 3"); g < 100 {
		t.Errorf("attempt 3 came %v ms after the second", g)
	}
}

func TestDrillTaskQueueOrLog(t *testing.T) {
	r := liveRun(t, 4)
	if v := r.fig(t, "order violations, partitioned"); v != 0 {
		t.Errorf("%v order violations in the partitioned subscription", v)
	}
	if v := r.fig(t, "order violations, key_ordered"); v != 0 {
		t.Errorf("%v order violations in the key_ordered subscription", v)
	}
	if v := r.fig(t, "order violations, replay"); v != 0 {
		t.Errorf("%v order violations in the replay", v)
	}
	if n := r.fig(t, "replayed"); n != o4Messages {
		t.Errorf("replayed %v messages, want %d", n, o4Messages)
	}
	for _, name := range []string{"processed, queue", "processed, key_ordered", "processed, partitioned"} {
		if n := r.fig(t, name); n != o4Messages {
			t.Errorf("%s = %v, want %d", name, n, o4Messages)
		}
	}
	// Not asserted: the queue's violations, which are likely, not certain.
	t.Logf("queue order violations: %v", r.fig(t, "order violations, queue"))
}

func TestDrills(t *testing.T) {
	all := All()
	if len(all) != 4 {
		t.Fatalf("%d drills", len(all))
	}
	slugs := map[string]bool{}
	for i, d := range all {
		if d.Number != i+1 {
			t.Errorf("drill %d has number %d", i+1, d.Number)
		}
		if d.Slug == "" || slugs[d.Slug] || d.Title == "" || d.Question == "" || d.Live == "" {
			t.Errorf("drill %d: %+v", d.Number, d)
		}
		slugs[d.Slug] = true
		if n := len(d.Checklist); n < 6 || n > 9 {
			t.Errorf("drill %d has %d checklist items, want 6 to 9", d.Number, n)
		}
		for _, item := range d.Checklist {
			if !strings.HasSuffix(item, ".") || strings.Count(item, ". ") > 0 {
				t.Errorf("drill %d: checklist item is not one sentence: %q", d.Number, item)
			}
		}
		got, err := Get(d.Number)
		if err != nil || got.Slug != d.Slug {
			t.Errorf("Get(%d) = %v, %v", d.Number, got.Slug, err)
		}
	}
	for _, want := range []string{"queue-or-not", "exactly-once", "poison", "task-queue-or-log"} {
		if !slugs[want] {
			t.Errorf("no drill %q", want)
		}
	}
	all[0].Checklist[0] = "changed"
	if d, _ := Get(1); d.Checklist[0] == "changed" {
		t.Error("a caller changed the drills through All")
	}
	for _, n := range []int{0, 5, -1, 7} {
		_, err := Get(n)
		if !errors.Is(err, ErrNoDrill) || !strings.Contains(err.Error(), "there are drills 1 to 4") {
			t.Errorf("Get(%d): %v", n, err)
		}
	}
	if _, err := Get(7); err.Error() != "drill 7: there are drills 1 to 4" {
		t.Errorf("Get(7): %q", err)
	}
	if MinTimer != 5*time.Minute || MaxTimer != 10*time.Minute {
		t.Errorf("timer limits %v, %v", MinTimer, MaxTimer)
	}
}

// TestRunRefuses checks the arguments Run refuses before it creates anything.
func TestRunRefuses(t *testing.T) {
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		n    int
		opts Options
		want error
	}{
		{0, Options{Prefix: "d"}, ErrNoDrill},
		{5, Options{Prefix: "d"}, ErrNoDrill},
		{1, Options{}, sluice.ErrInvalid},
		{1, Options{Prefix: "-d"}, sluice.ErrInvalid},
		{1, Options{Prefix: "d/x"}, sluice.ErrInvalid},
		{1, Options{Prefix: strings.Repeat("d", MaxPrefixLen+1)}, sluice.ErrInvalid},
		{2, Options{Prefix: "d"}, sluice.ErrInvalid}, // no Dir
	} {
		err := Run(ctx, b, tc.n, tc.opts, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("Run(%d, %+v): %v, want %v", tc.n, tc.opts, err, tc.want)
		}
	}
	assertNoStreams(t, b)
}

// TestRunCancelled cancels each drill 100 ms into a step where workers run
// and wait: Run returns the context's error, stops what it started and still
// deletes its streams and files.
func TestRunCancelled(t *testing.T) {
	// The step (counted from 1) during which each drill is cancelled.
	cancelAt := map[int]int{1: 3, 2: 3, 3: 2, 4: 3}
	for n := 1; n <= len(drills); n++ {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			steps := 0
			dir := t.TempDir()
			err = Run(ctx, b, n, Options{Prefix: "drill-cancel", Dir: dir}, func(e Event) {
				if e.Kind == KindStep {
					if steps++; steps == cancelAt[n] {
						time.AfterFunc(100*time.Millisecond, cancel)
					}
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run after cancel: %v", err)
			}
			assertNoStreams(t, b)
			if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
				t.Errorf("Options.Dir holds %d entries after the run (%v)", len(left), err)
			}
		})
	}
}
