package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"
)

const topHelp = `sluice top [STREAM...] [--interval 1s] [--iterations N]

Shows a table of every stream (or those named) and its subscriptions,
refreshed every --interval until Ctrl-C: messages published per second, each
subscription's messages settled per second, backlog, in flight, dead letters
and lag. Rates come from the difference between two successive stats. On a
terminal the table is redrawn in place; piped, successive tables are printed
one after the other.

examples:
  sluice top
  sluice top orders --interval 5s
  sluice top --iterations 3 > top.txt`

// minTopInterval bounds --interval: faster is load on the server for a table
// nobody can read.
const minTopInterval = 10 * time.Millisecond

func runTop(args []string) error {
	c := newCommand("top", topHelp)
	interval := c.fs.Duration("interval", time.Second, "time between two tables, `DURATION`")
	iterations := c.fs.Int("iterations", 0, "stop after `N` tables (default: until Ctrl-C)")
	names, err := c.parse(args)
	if err != nil {
		return err
	}
	if *interval < minTopInterval {
		return c.usageErr("--interval %v is below %v", *interval, minTopInterval)
	}
	if *iterations < 0 {
		return c.usageErr("--iterations %d is negative", *iterations)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	prev, err := collectStats(ctx, cl, names)
	if err != nil {
		return err
	}
	redraw := isTerminal(os.Stdout)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 0; *iterations == 0 || n < *iterations; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := collectStats(ctx, cl, names)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if redraw {
			fmt.Print("\x1b[H\x1b[2J") // home, clear the screen
		} else if n > 0 {
			fmt.Println()
		}
		if err := printTop(os.Stdout, prev, cur, *interval); err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// printTop writes one table: a row per subscription (a stream without any
// has one of its own), with the rates since prev.
func printTop(w io.Writer, prev, cur statsDoc, interval time.Duration) error {
	fmt.Fprintf(w, "sluice top  %s  %s  every %v\n", cur.Server, cur.Time.Local().Format("15:04:05"), interval)
	secs := cur.Time.Sub(prev.Time).Seconds()
	before := map[string]streamStats{}
	for _, s := range prev.Streams {
		before[s.Name] = s
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tPUB/S\tSUBSCRIPTION\tACK/S\tBACKLOG\tIN FLIGHT\tDEAD\tLAG")
	for _, s := range cur.Streams {
		p, had := before[s.Name]
		pubRate := "-"
		if had && secs > 0 && s.Appended >= p.Appended {
			pubRate = fmt.Sprintf("%.1f", float64(s.Appended-p.Appended)/secs)
		}
		if len(s.Subscriptions) == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t-\n", s.Name, s.Messages, pubRate)
			continue
		}
		for _, sub := range s.Subscriptions {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.Messages, pubRate, sub.Name,
				settleRate(p, had, s, sub, secs), sub.Backlog, sub.InFlight, sub.DeadLettered, durationOrZero(secondsDuration(sub.LagSeconds)))
		}
	}
	if len(cur.Streams) == 0 {
		fmt.Fprintln(tw, "(no streams)")
	}
	return tw.Flush()
}

// settleRate is the subscription's messages settled per second: what was
// appended to the stream less what the backlog grew by.
func settleRate(prev streamStats, had bool, cur streamStats, sub subscriptionStats, secs float64) string {
	if !had || secs <= 0 || cur.Appended < prev.Appended {
		return "-" // new, or the server's offsets went back (a recreated stream)
	}
	for _, ps := range prev.Subscriptions {
		if ps.Name == sub.Name {
			settled := (cur.Appended - prev.Appended) - (sub.Backlog - ps.Backlog)
			return fmt.Sprintf("%.1f", float64(max(settled, 0))/secs)
		}
	}
	return "-"
}
