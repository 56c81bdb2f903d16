package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The memory workload starts this executable again as a broker
	// (startChild): here that is the test binary.
	if len(os.Args) == 5 && os.Args[1] == "--serve" && os.Args[3] == "--dir" {
		if err := runChild(os.Args[2], os.Args[4]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunEveryWorkload runs every workload with tiny counts against the
// in-process peers and checks what the report and the JSON hold: the
// harness's plumbing, not its figures.
func TestRunEveryWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers and a child process")
	}
	st := settings{runs: 2, w1For: 100 * time.Millisecond, drainMsgs: 300, fanoutMsgs: 50,
		w3For: 300 * time.Millisecond, memMsgs: 5000, memRuns: 2, runTimeout: time.Minute}
	out := filepath.Join(t.TempDir(), "results", "latest.json")
	var md, progress bytes.Buffer
	sel := selection{systems: "sluice-embedded,sluice,nats", sizes: "100", out: out}
	if err := run(st, sel, &md, &progress); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if strings.Contains(progress.String(), "error:") {
		t.Fatalf("a run failed:\n%s", progress.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rows []result
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Workload+" "+r.System)
		if r.MsgsPerSec <= 0 || r.Runs != st.runs || r.Min > r.MsgsPerSec || r.Max < r.MsgsPerSec || r.Size != 100 {
			t.Errorf("%s %s: rate %v in [%v, %v] over %d runs, size %d", r.Workload, r.System, r.MsgsPerSec, r.Min, r.Max, r.Runs, r.Size)
		}
		switch {
		case strings.HasPrefix(r.Workload, "W3"):
			if r.P99us == nil || r.AckP99us == nil || *r.P50us > *r.P99us || *r.P99us > *r.P999us {
				t.Errorf("%s %s: latencies %v %v %v, ack %v", r.Workload, r.System, r.P50us, r.P99us, r.P999us, r.AckP99us)
			}
		case r.Workload == "memory":
			if r.RSSBytes == nil || *r.RSSBytes < 1<<20 {
				t.Errorf("memory %s: RSS %v", r.System, r.RSSBytes)
			}
		}
	}
	var want []string
	for _, w := range []string{"W1", "W2-c1", "W2-c4", "W3-r1000", "W3-r5000", "W4", "W5", "W6", "memory"} {
		for _, s := range []string{"sluice-embedded", "sluice", "nats"} {
			switch {
			case s == "nats" && (w == "W5" || w == "W6"), s == "sluice-embedded" && w == "memory":
				continue
			}
			want = append(want, w+" "+s)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
	for _, s := range []string{
		"#### W1: durable publish",
		"| 100 B | nats | no fsync before ack |",
		"- nats: JetStream has no per-key ordering",
		"- sluice-embedded: the same broker as sluice",
	} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, md.String())
		}
	}
}

func TestPercentiles(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(1000 - i) // 1000..1, unsorted
	}
	p50, p99, p999 := percentiles(xs)
	if p50 != 500 || p99 != 990 || p999 != 999 {
		t.Errorf("percentiles of 1..1000 = %v %v %v, want 500 990 999", p50, p99, p999)
	}
	if a, b, c := percentiles(nil); a != 0 || b != 0 || c != 0 {
		t.Errorf("percentiles of nothing = %v %v %v", a, b, c)
	}
	if a, b, c := percentiles([]float64{7}); a != 7 || b != 7 || c != 7 {
		t.Errorf("percentiles of one = %v %v %v", a, b, c)
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want spread
	}{
		{nil, spread{}},
		{[]float64{3}, spread{3, 3, 3}},
		{[]float64{5, 1, 3}, spread{3, 1, 5}},
		{[]float64{4, 1, 2, 8}, spread{3, 1, 8}},
	} {
		if got := summarize(tc.in); got != tc.want {
			t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{rate(950), "950"},
		{rate(12_345), "12.3k"},
		{rate(123_456), "123k"},
		{rate(1_250_000), "1.25M"},
		{us(850), "850 µs"},
		{us(12_300), "12.3 ms"},
		{us(2_500_000), "2.50 s"},
		{count(10_000_000), "10,000,000"},
		{times(2.5), "2.50×"},
		{times(0.00062), "0.00062×"},
		{count(999), "999"},
		{size(1024), "1 KiB"},
		{size(100), "100 B"},
		{plural(1, "consumer"), "1 consumer"},
		{plural(4, "consumer"), "4 consumers"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestPick(t *testing.T) {
	valid := []string{"a", "b", "c"}
	if got, err := pick("", valid); err != nil || len(got) != 3 {
		t.Errorf("pick all = %v, %v", got, err)
	}
	if got, err := pick("a, c", valid); err != nil || !got["a"] || !got["c"] || got["b"] {
		t.Errorf("pick a,c = %v, %v", got, err)
	}
	if _, err := pick("a,d", valid); err == nil || !strings.Contains(err.Error(), `"d"`) {
		t.Errorf("pick a,d: error %v, want one naming d", err)
	}
}
