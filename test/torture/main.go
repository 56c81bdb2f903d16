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
	os.Exit(run(os.Args[1:]))
}

// run parses the flags, runs the torture and prints the report: 0 when every
// check passed, 1 when one failed, 2 when the run could not be carried out.
func run(args []string) int {
	fs := flag.NewFlagSet("torture", flag.ContinueOnError)
	var cfg Config
	fs.StringVar(&cfg.Root, "root", "", "module root to build cmd/sluice in (default: found from the working directory)")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "sluice binary to run instead of building one")
	fs.StringVar(&cfg.Data, "data", "", "data directory to use and keep (empty or absent; default a temporary one)")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "length of the kill phase; 0: until --kills (default 60s, or no limit when --kills is set)")
	fs.IntVar(&cfg.Kills, "kills", 0, "stop after this many kills (0: no limit)")
	fs.DurationVar(&cfg.KillMin, "kill-min", time.Second, "shortest time the server runs before a kill")
	fs.DurationVar(&cfg.KillMax, "kill-max", 10*time.Second, "longest time the server runs before a kill")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: the time)")
	fs.IntVar(&cfg.Producers, "producers", 4, "concurrent publishers")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 2*time.Minute, "how long the final drain may take")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if cfg.Kills > 0 && !durationSet {
		cfg.Duration = 0
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		if rep == nil {
			return 2
		}
	}
	for _, l := range rep.Details() {
		fmt.Println(l)
	}
	fmt.Println(rep.Summary())
	fmt.Println(rep.Line())
	if err != nil {
		return 2
	}
	if rep.Failed() {
		return 1
	}
	return 0
}
