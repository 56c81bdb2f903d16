// Command bench runs the same workloads against sluice and its peers, every
// broker served on 127.0.0.1 and reached over loopback, and prints a markdown
// table of the results; bench/results/latest.json keeps them.
//
//	go run ./bench                                   # the full run (about an hour)
//	go run ./bench --quick                           # smaller counts, one run each
//	go run ./bench --workloads W1,W3 --systems sluice,nats
//
// The workloads, each with 100 B and 1 KiB bodies:
//
//	W1      durable publish throughput: 4 producers × 64 publishes in flight
//	W2      queue drain: a backlog consumed and acked by 1, then 4 consumers
//	W3      end-to-end latency at 1,000 and 5,000 msg/s
//	W4      fan-out: one backlog drained by 10 subscriptions
//	W5      key_ordered: 1,000 keys, 4 consumers
//	W6      consumer group: 8 partitions, 4 members
//	memory  the broker's resident set with 10 million 100 B messages backlogged
//
// See BENCHMARKS.md ("Against the peers") for what each row means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// settings are the counts and durations of one invocation.
type settings struct {
	runs       int
	w1For      time.Duration
	drainMsgs  int // W2, W5, W6
	fanoutMsgs int // W4, per subscription
	w3For      time.Duration
	memMsgs    int
	memRuns    int // the memory workload's runs: filling 10 million takes minutes
	// memExternal measures the memory of the external brokers too (filling
	// even a million messages takes them 10 to 25 s here).
	memExternal bool
	runTimeout  time.Duration
}

var (
	fullSettings = settings{
		runs: 3, w1For: 5 * time.Second, drainMsgs: 50_000, fanoutMsgs: 10_000,
		w3For: 10 * time.Second, memMsgs: 10_000_000, memRuns: 1, memExternal: true, runTimeout: 5 * time.Minute,
	}
	quickSettings = settings{
		runs: 1, w1For: 300 * time.Millisecond, drainMsgs: 2_000, fanoutMsgs: 500,
		w3For: 300 * time.Millisecond, memMsgs: 1_000_000, memRuns: 1, runTimeout: time.Minute,
	}
)

// memTimeout bounds one run of the memory workload, which fills 10 million
// messages.
const memTimeout = 15 * time.Minute

var workloadIDs = []string{"W1", "W2", "W3", "W4", "W5", "W6", "memory"}

// cell is one workload variant at one body size: a row of each system in
// the table.
type cell struct {
	workload string // W1..W6, memory
	id       string // the JSON workload name: "W2-c4", "W3-r1000"...
	title    string
	size     int
	mode     mode
	rate     int  // W3
	process  bool // the broker in a process of its own
	// skip returns why system f does not run this cell, or "".
	skip func(f peerFactory) string
	run  func(ctx context.Context, p peer) (sample, error)
}

func cells(st settings, sizes []int) []cell {
	var out []cell
	for _, size := range sizes {
		out = append(out, cell{
			workload: "W1", id: "W1", size: size, mode: modeQueue,
			title: fmt.Sprintf("durable publish, %d producers × %d in flight, %v", w1Producers, w1Window, st.w1For),
			run:   func(ctx context.Context, p peer) (sample, error) { return runW1(ctx, p, size, st.w1For) },
		})
	}
	for _, consumers := range []int{1, 4} {
		for _, size := range sizes {
			spec := drainSpec{topo: topology{Partitions: 1, Mode: modeQueue, Subscriptions: []string{"queue"}}, n: st.drainMsgs, consumersPerSub: consumers}
			out = append(out, cell{
				workload: "W2", id: fmt.Sprintf("W2-c%d", consumers), size: size, mode: modeQueue,
				title: fmt.Sprintf("queue drain, %s, backlog %s", plural(consumers, "consumer"), count(st.drainMsgs)),
				run:   func(ctx context.Context, p peer) (sample, error) { return runDrain(ctx, p, size, spec) },
			})
		}
	}
	for _, rate := range []int{1000, 5000} {
		for _, size := range sizes {
			out = append(out, cell{
				workload: "W3", id: fmt.Sprintf("W3-r%d", rate), size: size, mode: modeQueue, rate: rate,
				title: fmt.Sprintf("latency at %s msg/s for %v, one producer, one consumer", count(rate), st.w3For),
				run:   func(ctx context.Context, p peer) (sample, error) { return runW3(ctx, p, size, rate, st.w3For) },
			})
		}
	}
	subs := make([]string, w4Subs)
	for i := range subs {
		subs[i] = fmt.Sprintf("fan-%d", i)
	}
	for _, size := range sizes {
		spec := drainSpec{topo: topology{Partitions: 1, Mode: modeQueue, Subscriptions: subs}, n: st.fanoutMsgs, consumersPerSub: 1}
		out = append(out, cell{
			workload: "W4", id: "W4", size: size, mode: modeQueue,
			title: fmt.Sprintf("fan-out, %d subscriptions × %s messages, 1 consumer each", w4Subs, count(st.fanoutMsgs)),
			run:   func(ctx context.Context, p peer) (sample, error) { return runDrain(ctx, p, size, spec) },
		})
	}
	for _, size := range sizes {
		spec := drainSpec{topo: topology{Partitions: w5Partitions, Mode: modeKeyOrdered, Subscriptions: []string{"ordered"}}, n: st.drainMsgs, consumersPerSub: w5Consumers, keyed: true}
		out = append(out, cell{
			workload: "W5", id: "W5", size: size, mode: modeKeyOrdered,
			title: fmt.Sprintf("key_ordered drain, %s keys, %d partitions, %d consumers, backlog %s", count(keyCount), w5Partitions, w5Consumers, count(st.drainMsgs)),
			run:   func(ctx context.Context, p peer) (sample, error) { return runDrain(ctx, p, size, spec) },
		})
	}
	for _, size := range sizes {
		spec := drainSpec{topo: topology{Partitions: w6Partitions, Mode: modePartitioned, Subscriptions: []string{"group"}}, n: st.drainMsgs, consumersPerSub: w6Members, keyed: true}
		out = append(out, cell{
			workload: "W6", id: "W6", size: size, mode: modePartitioned,
			title: fmt.Sprintf("consumer group drain, %d partitions, %d members, %s keys, backlog %s", w6Partitions, w6Members, count(keyCount), count(st.drainMsgs)),
			run:   func(ctx context.Context, p peer) (sample, error) { return runDrain(ctx, p, size, spec) },
		})
	}
	out = append(out, cell{
		workload: "memory", id: "memory", size: memBodySize, mode: modeQueue, process: true,
		title: fmt.Sprintf("broker RSS with %s messages of %d B backlogged in one subscription (%d partitions), each broker in a process of its own; %s", count(st.memMsgs), memBodySize, memPartitions, plural(min(st.runs, st.memRuns), "run")),
		skip: func(f peerFactory) string {
			if !st.memExternal && !startedByHarness(f) {
				return "--quick measures only the brokers the harness starts itself; the full run measures this one"
			}
			return memorySkip(f)
		},
		run: func(ctx context.Context, p peer) (sample, error) { return runMemory(ctx, p, st.memMsgs) },
	})
	return out
}

// startedByHarness tells the brokers the harness runs itself from the
// external ones.
func startedByHarness(f peerFactory) bool {
	for _, g := range append(sluiceFactories(), natsFactories()...) {
		if g.Name == f.Name {
			return true
		}
	}
	return false
}

// memorySkip measures each broker once: the variants that differ only in
// their sync policy (or in the client) keep the same structures in memory.
func memorySkip(f peerFactory) string {
	switch f.Name {
	case "sluice-embedded", "sluice-interval":
		return "the same broker as sluice: measured once, in its own process"
	case "nats-always":
		return "the same store as nats: measured once (and 10 million fsyncs would take hours)"
	}
	return ""
}

// outcome is every run of one cell on one system.
type outcome struct {
	samples []sample
	skipped string
	err     error
}

func main() {
	var (
		quick     = flag.Bool("quick", false, "smaller counts, one run each (a check that the harness runs, not figures to quote)")
		runs      = flag.Int("runs", 0, "runs of each cell (default 3, or 1 with --quick)")
		workloads = flag.String("workloads", "", "comma-separated workloads to run, of "+strings.Join(workloadIDs, ",")+" (default all)")
		systems   = flag.String("systems", "", "comma-separated systems to run (default all); --list names them")
		sizesFlag = flag.String("sizes", "100,1024", "comma-separated body sizes in bytes")
		out       = flag.String("out", "bench/results/latest.json", "where to write the results as JSON; empty: nowhere")
		list      = flag.Bool("list", false, "list the systems and workloads, and exit")
		serve     = flag.String("serve", "", "internal: serve this broker in this process (the memory workload's child)")
		dir       = flag.String("dir", "", "internal: with --serve, the data directory")
		cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the whole run (harness, clients and in-process brokers) to this file")
	)
	flag.Parse()
	if *serve != "" {
		if err := runChild(*serve, *dir); err != nil {
			fmt.Fprintln(os.Stderr, "bench --serve:", err)
			os.Exit(1)
		}
		return
	}
	if *list {
		for _, f := range peers {
			fmt.Printf("%-16s %-20s %s\n", f.Name, f.Durability, f.Note)
		}
		fmt.Println("workloads:", strings.Join(workloadIDs, ", "))
		return
	}
	st := fullSettings
	if *quick {
		st = quickSettings
	}
	if *runs > 0 {
		st.runs, st.memRuns = *runs, *runs
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: --cpuprofile:", err)
			os.Exit(2)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	sel := selection{quick: *quick, workloads: *workloads, systems: *systems, sizes: *sizesFlag, out: *out}
	if err := run(st, sel, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// selection is what the flags chose: the workloads, systems and sizes to
// run, and where the JSON goes.
type selection struct {
	quick                     bool
	workloads, systems, sizes string // comma-separated; empty workloads or systems: all
	out                       string // empty: no JSON
}

// run runs the selection, prints progress on progress and the markdown report
// on stdout, and writes the JSON.
func run(st settings, sel selection, stdout, progress io.Writer) error {
	wantW, err := pick(sel.workloads, workloadIDs)
	if err != nil {
		return fmt.Errorf("--workloads: %w", err)
	}
	var names []string
	for _, f := range peers {
		names = append(names, f.Name)
	}
	wantS, err := pick(sel.systems, names)
	if err != nil {
		return fmt.Errorf("--systems: %w", err)
	}
	var sizes []int
	for s := range strings.SplitSeq(sel.sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 16 || n > 1<<20 {
			return fmt.Errorf("--sizes: %q is not a size in [16, 1 MiB]", s)
		}
		sizes = append(sizes, n)
	}

	rep := &report{settings: st, quick: sel.quick, args: os.Args[1:], started: time.Now()}
	var systems []peerFactory
	for _, f := range peers {
		if !wantS[f.Name] {
			continue
		}
		if f.Probe != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := f.Probe(ctx)
			cancel()
			if err != nil {
				line := fmt.Sprintf("%s: skipped, %v", f.Name, err)
				fmt.Fprintln(progress, line)
				rep.unreachable = append(rep.unreachable, line)
				continue
			}
		}
		systems = append(systems, f)
	}
	rep.systems = systems

	var todo []cell
	for _, c := range cells(st, sizes) {
		if wantW[c.workload] {
			todo = append(todo, c)
		}
	}
	rep.cells = todo
	rep.outcomes = make([]map[string]*outcome, len(todo))
	gone := map[string]error{} // systems that became unreachable mid-run
	for ci, c := range todo {
		rep.outcomes[ci] = map[string]*outcome{}
		runs := st.runs
		if c.process {
			runs = min(runs, st.memRuns)
		}
		for r := range runs {
			for _, f := range systems {
				o := rep.outcomes[ci][f.Name]
				if o == nil {
					o = &outcome{}
					rep.outcomes[ci][f.Name] = o
				}
				if o.skipped != "" || o.err != nil {
					continue
				}
				if err := gone[f.Name]; err != nil {
					o.err = err
					continue
				}
				if f.Skip != nil {
					o.skipped = f.Skip(c.id)
				}
				if o.skipped == "" && c.skip != nil {
					o.skipped = c.skip(f)
				}
				if o.skipped != "" {
					continue
				}
				began := time.Now()
				s, skipped, err := runOnce(st, c, f)
				label := fmt.Sprintf("%-8s %5d B  %-16s run %d/%d (%4.1fs):", c.id, c.size, f.Name, r+1, runs, time.Since(began).Seconds())
				switch {
				case skipped != "":
					o.skipped = skipped
					fmt.Fprintln(progress, label, "skipped,", skipped)
				case err != nil:
					o.err = err
					if errors.Is(err, errUnreachable) {
						gone[f.Name] = err
					}
					fmt.Fprintln(progress, label, "error:", err)
				default:
					o.samples = append(o.samples, s)
					fmt.Fprintln(progress, label, describe(c, s))
				}
			}
		}
	}
	rep.elapsed = time.Since(rep.started)
	rep.markdown(stdout)
	kafkaSummary(stdout, rep)
	if sel.out != "" {
		if err := rep.writeJSON(sel.out); err != nil {
			return err
		}
	}
	return nil
}

// runOnce opens a fresh peer in a fresh directory, runs the cell on it and
// closes it.
func runOnce(st settings, c cell, f peerFactory) (s sample, skipped string, err error) {
	timeout := st.runTimeout
	if c.process {
		timeout = memTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "sluice-bench-*")
	if err != nil {
		return sample{}, "", err
	}
	defer os.RemoveAll(dir)
	p, err := f.Open(ctx, dir, openOptions{Process: c.process})
	if err != nil {
		return sample{}, "", fmt.Errorf("open: %w", err)
	}
	defer func() {
		if cerr := p.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		runtime.GC() // the next run starts without this one's garbage
	}()
	if why := p.Unsupported(c.mode); why != "" {
		return sample{}, why, nil
	}
	s, err = c.run(ctx, p)
	return s, "", err
}

// pick parses a comma-separated selection of valid names; empty means all.
func pick(flagValue string, valid []string) (map[string]bool, error) {
	want := map[string]bool{}
	if flagValue == "" {
		for _, v := range valid {
			want[v] = true
		}
		return want, nil
	}
	for v := range strings.SplitSeq(flagValue, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(valid, v) {
			return nil, fmt.Errorf("%q is none of %s", v, strings.Join(valid, ", "))
		}
		want[v] = true
	}
	return want, nil
}
