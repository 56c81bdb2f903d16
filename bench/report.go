package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// report is everything one invocation measured, and how it is printed.
type report struct {
	settings    settings
	quick       bool
	args        []string
	started     time.Time
	elapsed     time.Duration
	systems     []peerFactory
	unreachable []string
	cells       []cell
	outcomes    []map[string]*outcome // by cell, then system name
}

// baseline is the system a row is compared with: sluice over the network
// with the row's durability class, so that a broker that acknowledges before
// fsync is compared with sluice doing the same.
func baseline(c cell, durability string) string {
	if c.workload == "memory" || durability == fsyncBeforeAck {
		return "sluice"
	}
	return "sluice-interval"
}

// figures are the medians and ranges of one outcome's samples.
type figures struct {
	rate, p50, p99, p999, ack50, ack99, ack999, rss spread
	runs                                            int
}

func (o *outcome) figures() figures {
	pick := func(f func(sample) float64) spread {
		xs := make([]float64, len(o.samples))
		for i, s := range o.samples {
			xs[i] = f(s)
		}
		return summarize(xs)
	}
	return figures{
		rate:   pick(func(s sample) float64 { return s.msgsPerSec }),
		p50:    pick(func(s sample) float64 { return s.p50 }),
		p99:    pick(func(s sample) float64 { return s.p99 }),
		p999:   pick(func(s sample) float64 { return s.p999 }),
		ack50:  pick(func(s sample) float64 { return s.ack50 }),
		ack99:  pick(func(s sample) float64 { return s.ack99 }),
		ack999: pick(func(s sample) float64 { return s.ack999 }),
		rss:    pick(func(s sample) float64 { return float64(s.rss) }),
		runs:   len(o.samples),
	}
}

// describe is one run's figures on one line, for the progress output.
func describe(c cell, s sample) string {
	switch c.workload {
	case "W3":
		return fmt.Sprintf("delivery p50 %s p99 %s p99.9 %s; ack p50 %s p99 %s", us(s.p50), us(s.p99), us(s.p999), us(s.ack50), us(s.ack99))
	case "memory":
		return fmt.Sprintf("RSS %s (filled at %s msg/s)", mib(float64(s.rss)), count(int(s.msgsPerSec)))
	case "W1":
		return fmt.Sprintf("%s msg/s, ack p50 %s p99 %s", rate(s.msgsPerSec), us(s.p50), us(s.p99))
	}
	return fmt.Sprintf("%s msg/s", rate(s.msgsPerSec))
}

func (r *report) markdown(w io.Writer) {
	fmt.Fprintf(w, "Command: `%s`\n\n", strings.Join(append([]string{"go run ./bench"}, r.args...), " "))
	fmt.Fprintf(w, "%s, %s/%s, %d CPUs, %s; each figure is the median of %d run(s), with the range (min–max) of the runs; the whole took %v.\n",
		r.started.Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), r.settings.runs, r.elapsed.Round(time.Second))
	if r.quick {
		fmt.Fprintf(w, "\n**--quick**: small counts and one run each, to check that the harness runs; not figures to quote (memory: %s messages, not 10 million).\n", count(r.settings.memMsgs))
	}
	fmt.Fprintf(w, "\nThe ratio column is sluice over the network divided by the row's system, in the row's durability class (`sluice` for %q, `sluice-interval` for %q): above 1, sluice is faster; for latency and memory, sluice's figure over the row's, so below 1, sluice is lower.\n", fsyncBeforeAck, noFsyncBeforeAck)

	for i := 0; i < len(r.cells); {
		j := i
		for j < len(r.cells) && r.cells[j].id == r.cells[i].id {
			j++
		}
		r.table(w, r.cells[i:j], r.outcomes[i:j])
		i = j
	}

	fmt.Fprintf(w, "\nSystems (every server reached over loopback TCP from a client in the harness's process):\n\n")
	for _, f := range r.systems {
		fmt.Fprintf(w, "- `%s` (%s): %s\n", f.Name, f.Durability, f.Note)
	}
	for _, line := range r.unreachable {
		fmt.Fprintf(w, "- %s\n", line)
	}
}

// table prints the cells of one workload variant (one per body size).
func (r *report) table(w io.Writer, cs []cell, outs []map[string]*outcome) {
	c0 := cs[0]
	fmt.Fprintf(w, "\n#### %s: %s\n\n", c0.id, c0.title)
	switch c0.workload {
	case "W3":
		fmt.Fprintln(w, "| body | system | durability | publish → delivery p50 / p99 / p99.9 | delivery p99 range | publish → ack p50 / p99 / p99.9 | sluice ÷ system (delivery p99) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	case "memory":
		fmt.Fprintln(w, "| body | system | durability | broker RSS | range | fill rate (msg/s) | sluice ÷ system (RSS) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	case "W1":
		fmt.Fprintln(w, "| body | system | durability | msg/s | range | publish → ack p50 / p99 | sluice ÷ system |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	default:
		fmt.Fprintln(w, "| body | system | durability | msg/s | range | sluice ÷ system |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
	}
	var notes []string
	for k, c := range cs {
		for _, f := range r.systems {
			o := outs[k][f.Name]
			if o == nil {
				continue
			}
			lead := fmt.Sprintf("| %s | %s | %s |", size(c.size), f.Name, f.Durability)
			if o.skipped != "" || (o.err != nil && len(o.samples) == 0) {
				why := o.skipped
				if why == "" {
					why = "error: " + o.err.Error()
				}
				note := fmt.Sprintf("%s: %s", f.Name, why)
				if !contains(notes, note) {
					notes = append(notes, note)
				}
				continue
			}
			fg := o.figures()
			ratio := "baseline"
			if base := baseline(c, f.Durability); base != f.Name {
				ratio = "–"
				if bo := outs[k][base]; bo != nil && len(bo.samples) > 0 {
					bf := bo.figures()
					switch c.workload {
					case "W3":
						ratio = times(bf.p99.Median / fg.p99.Median)
					case "memory":
						ratio = times(bf.rss.Median / fg.rss.Median)
					default:
						ratio = times(bf.rate.Median / fg.rate.Median)
					}
				}
			}
			switch c.workload {
			case "W3":
				fmt.Fprintf(w, "%s %s / %s / %s | %s–%s | %s / %s / %s | %s |\n", lead,
					us(fg.p50.Median), us(fg.p99.Median), us(fg.p999.Median), us(fg.p99.Min), us(fg.p99.Max),
					us(fg.ack50.Median), us(fg.ack99.Median), us(fg.ack999.Median), ratio)
			case "memory":
				fmt.Fprintf(w, "%s %s | %s–%s | %s | %s |\n", lead, mib(fg.rss.Median), mib(fg.rss.Min), mib(fg.rss.Max), rate(fg.rate.Median), ratio)
			case "W1":
				fmt.Fprintf(w, "%s %s | %s–%s | %s / %s | %s |\n", lead, rate(fg.rate.Median), rate(fg.rate.Min), rate(fg.rate.Max), us(fg.p50.Median), us(fg.p99.Median), ratio)
			default:
				fmt.Fprintf(w, "%s %s | %s–%s | %s |\n", lead, rate(fg.rate.Median), rate(fg.rate.Min), rate(fg.rate.Max), ratio)
			}
			if o.err != nil {
				notes = append(notes, fmt.Sprintf("%s, %s: %d run(s) failed: %v", f.Name, size(c.size), r.settings.runs-len(o.samples), o.err))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// result is one row of latest.json: one cell on one system.
type result struct {
	Workload    string   `json:"workload"`
	Description string   `json:"description"`
	System      string   `json:"system"`
	Durability  string   `json:"durability"`
	Size        int      `json:"size"`
	MsgsPerSec  float64  `json:"msgs_per_sec"`
	P50us       *float64 `json:"p50_us"`
	P99us       *float64 `json:"p99_us"`
	P999us      *float64 `json:"p999_us"`
	AckP50us    *float64 `json:"ack_p50_us,omitempty"`
	AckP99us    *float64 `json:"ack_p99_us,omitempty"`
	AckP999us   *float64 `json:"ack_p999_us,omitempty"`
	RSSBytes    *float64 `json:"rss_bytes,omitempty"`
	Runs        int      `json:"runs"`
	Min         float64  `json:"min"`
	Max         float64  `json:"max"`
	Quick       bool     `json:"quick"`
}

func (r *report) writeJSON(path string) error {
	rows := []result{}
	for k, c := range r.cells {
		for _, f := range r.systems {
			o := r.outcomes[k][f.Name]
			if o == nil || len(o.samples) == 0 {
				continue
			}
			fg := o.figures()
			row := result{
				Workload: c.id, Description: c.title, System: f.Name, Durability: f.Durability, Size: c.size,
				MsgsPerSec: fg.rate.Median, Runs: fg.runs, Min: fg.rate.Min, Max: fg.rate.Max, Quick: r.quick,
			}
			opt := func(s spread) *float64 {
				if s.Median == 0 {
					return nil
				}
				return &s.Median
			}
			row.P50us, row.P99us, row.P999us = opt(fg.p50), opt(fg.p99), opt(fg.p999)
			row.AckP50us, row.AckP99us, row.AckP999us = opt(fg.ack50), opt(fg.ack99), opt(fg.ack999)
			row.RSSBytes = opt(fg.rss)
			rows = append(rows, row)
		}
	}
	data, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// rate formats a rate with three significant digits: 950, 12.3k, 1.25M.
func rate(x float64) string {
	switch {
	case x >= 1e6:
		return sig(x/1e6) + "M"
	case x >= 1e3:
		return sig(x/1e3) + "k"
	}
	return fmt.Sprintf("%.0f", x)
}

// sig formats x (at least 1) with three significant digits.
func sig(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// us formats a latency given in microseconds.
func us(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2f s", x/1e6)
	case x >= 1e3:
		return sig(x/1e3) + " ms"
	}
	return fmt.Sprintf("%.0f µs", x)
}

func mib(bytes float64) string { return fmt.Sprintf("%.0f MiB", bytes/(1<<20)) }

// times formats a ratio: two decimals, or two significant digits below 0.1.
func times(x float64) string {
	if x > 0 && x < 0.1 {
		return fmt.Sprintf("%.2g×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

func size(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// count formats a count with thousands separators: 10,000,000.
func count(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

// plural is "1 consumer", "4 consumers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
