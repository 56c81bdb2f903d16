// Command soak runs a sluice server under a steady load of network producers
// and consumers for a long time, samples its throughput, backlog, goroutines
// and RSS every interval, and judges whether the broker stays healthy: part
// of the reliability suite (issue 7).
//
//	go run ./test/soak --duration 10m --producers 100 --consumers 100
//
// By default the server is `sluice serve`, built from cmd/sluice and run as a
// child process, so the RSS sampled (VmRSS from /proc/PID/status) is the
// broker's alone; goroutines are read from its /metrics (go_goroutines).
// --inprocess serves from the harness's own process instead.
//
// It prints a table and a last line
//
//	SOAK duration=... published=... consumed=... rate_min/median/max=... goroutines_max=... rss_max_mib=... lost=0 PASS
//
// and exits 1 when a rule fails: the consume rate collapses (the last third's
// median below half the first third's), goroutines or RSS grow without bound
// (the last sample above twice the sample at a third of the run, and above
// 2000 goroutines or 512 MiB), or a message acknowledged to a producer was
// not consumed within --drain after publishing stopped.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg := config{}
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long to run the load")
	flag.DurationVar(&cfg.Interval, "interval", 10*time.Second, "time between samples")
	flag.IntVar(&cfg.Producers, "producers", 100, "producers, each publishing in turn")
	flag.IntVar(&cfg.Consumers, "consumers", 100, "consumers of one queue subscription")
	flag.IntVar(&cfg.Clients, "clients", 10, "network clients (connections) the producers and consumers share")
	flag.IntVar(&cfg.Rate, "rate", 50, "messages per second per producer (0: as fast as acknowledged)")
	flag.IntVar(&cfg.BodyBytes, "body", 256, "message body bytes")
	flag.DurationVar(&cfg.Drain, "drain", time.Minute, "how long the consumers get to consume the rest after publishing stops")
	inProcess := flag.Bool("inprocess", false, "serve from this process instead of a child `sluice serve`")
	flag.StringVar(&cfg.Bin, "bin", "", "the sluice binary to run (default: build cmd/sluice)")
	flag.Parse()
	cfg.Child = !*inProcess
	if cfg.Producers < 1 || cfg.Consumers < 1 || cfg.Clients < 1 || cfg.Rate < 0 || cfg.Interval <= 0 || cfg.Duration <= 0 {
		fmt.Fprintln(os.Stderr, "soak: --producers, --consumers and --clients must be at least 1, --rate at least 0, --interval and --duration positive")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "sluice-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg.Dir = dir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	v, err := run(ctx, cfg, os.Stdout)
	stop()
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(v)
	if !v.ok() {
		os.Exit(1)
	}
}
