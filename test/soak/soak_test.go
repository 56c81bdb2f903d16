package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestSoakShort runs the soak for a few seconds with a few clients, the
// server in process (no build), and checks the verdict without the rate rule
// (a timing; it belongs to the long run on a quiet machine): nothing lost,
// goroutines and RSS bounded; goleak then checks that the harness and the
// server it ran left no goroutine behind.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	defer goleak.VerifyNone(t)
	var out strings.Builder
	v, err := run(context.Background(), config{Duration: 16 * time.Second, Interval: 2 * time.Second,
		Producers: 10, Consumers: 10, Clients: 3, Rate: 100, BodyBytes: 256, Dir: t.TempDir(), Drain: 30 * time.Second, NoRateRule: true}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(v)
	if !v.ok() || v.published == 0 || v.consumed < v.published {
		t.Fatalf("soak failed: %v", v)
	}
}

// TestJudge checks the rules on made-up samples: a steady run passes, a
// collapsing rate, growing goroutines and growing RSS each fail.
func TestJudge(t *testing.T) {
	steady := func() []sample {
		var s []sample
		for i := range 9 {
			s = append(s, sample{at: time.Duration(i) * time.Second, conRate: 1000, goroutines: 300, rss: 100 << 20})
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		bend  func(s []sample)
		fails string
	}{
		{"steady", func([]sample) {}, ""},
		{"collapse", func(s []sample) {
			for i := 6; i < 9; i++ {
				s[i].conRate = 400
			}
		}, "consume rate collapsed"},
		{"goroutines", func(s []sample) { s[8].goroutines = 5000 }, "goroutines grew"},
		{"goroutines below floor", func(s []sample) { s[8].goroutines = 900 }, ""},
		{"rss", func(s []sample) { s[8].rss = 1 << 30 }, "RSS grew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := steady()
			tc.bend(s)
			v := judge(s, 9*time.Second, true)
			got := strings.Join(v.failures, "; ")
			if tc.fails == "" && got != "" || tc.fails != "" && !strings.Contains(got, tc.fails) {
				t.Fatalf("failures %q; want %q", got, tc.fails)
			}
		})
	}
}
