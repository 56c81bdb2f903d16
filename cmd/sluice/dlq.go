package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluicemq/sluice"
)

var dlqGroup = group{name: "dlq", help: `sluice dlq COMMAND STREAM --subscription SUB [flags]

Manages a subscription's dead letters: the messages it gave up on after
--max-deliveries failed deliveries, with the reason and every attempt.

  sluice dlq list STREAM --subscription SUB [--contains TEXT] [--all] [--json]
  sluice dlq show STREAM --subscription SUB OFFSET [--json]
  sluice dlq redrive STREAM --subscription SUB [--contains TEXT] [--rate N]
  sluice dlq purge STREAM --subscription SUB

examples:
  sluice dlq list orders --subscription billing
  sluice dlq show orders --subscription billing 12
  sluice dlq redrive orders --subscription billing --rate 50`}

func init() {
	dlqGroup.subs = []verb{
		{"list", "list the dead letters, one a line with its body", runDLQList},
		{"show", "show one dead letter with its attempts", runDLQShow},
		{"redrive", "put dead letters back into their subscription", runDLQRedrive},
		{"purge", "discard the dead letters", runDLQPurge},
	}
}

// runDLQ manages dead letters.
func runDLQ(args []string) error { return dlqGroup.run(args) }

// dlqPage is how many dead letters one call lists or redrives.
const dlqPage = sluice.MaxDeadLetterLimit

const dlqListHelp = `sluice dlq list STREAM --subscription SUB [flags]

Lists a subscription's dead letters not yet redriven, oldest first, one a line
of tab-separated fields: its offset in the dead-letter stream (for 'dlq show'),
source=PARTITION/OFFSET in STREAM, deliveries=N, reason="...", and the body
(quoted when it is not printable text).

examples:
  sluice dlq list orders --subscription billing
  sluice dlq list orders --subscription billing --contains timeout --json
  sluice dlq list orders --subscription billing --all | wc -l`

func runDLQList(args []string) error {
	c := newCommand("dlq list", dlqListHelp)
	c.subscriptionFlag("the subscription `SUB` (required)")
	contains := c.fs.String("contains", "", "only those whose reason or attempt errors contain `TEXT`")
	all := c.fs.Bool("all", false, "also those already redriven")
	limit := c.fs.Int("limit", 0, "list at most `N` (default: all)")
	asJSON := c.fs.Bool("json", false, "print one JSON object per dead letter")
	pos, err := c.parseArgs(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	stream, sub := pos[0], pos[1]
	if *limit < 0 {
		return c.usageErr("--limit %d is negative", *limit)
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	q := sluice.DeadLetterQuery{Limit: dlqPage, Contains: *contains, IncludeRedriven: *all}
	n := 0
	for *limit == 0 || n < *limit {
		if *limit > 0 {
			q.Limit = min(dlqPage, *limit-n)
		}
		dls, next, err := cl.DeadLetters(ctx, stream, sub, q)
		if err != nil {
			return err
		}
		for _, d := range dls {
			if *asJSON {
				err = printJSONLine(os.Stdout, jsonDeadLetter(d))
			} else {
				err = printDeadLetterLine(os.Stdout, d)
			}
			if err != nil {
				return err
			}
			n++
		}
		if next <= q.From {
			return nil // at the end of the dead-letter stream
		}
		q.From = next
	}
	return nil
}

func printDeadLetterLine(w io.Writer, d sluice.DeadLetter) error {
	redriven := ""
	if d.Redriven {
		redriven = "\tredriven"
	}
	_, err := fmt.Fprintf(w, "%d\tsource=%d/%d\tdeliveries=%d\treason=%q%s\t%s\n",
		d.Offset, d.Source.Partition, d.Source.Offset, d.Deliveries, d.Reason, redriven, printable(d.Message.Body))
	return err
}

// printable returns b as it is when it is printable text on one line, else
// quoted.
func printable(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

// deadLetterJSON is a dead letter as --json prints it.
type deadLetterJSON struct {
	Offset          int64  `json:"offset"`
	SourcePartition int    `json:"source_partition"`
	SourceOffset    int64  `json:"source_offset"`
	Deliveries      int    `json:"deliveries"`
	Reason          string `json:"reason"`
	Redriven        bool   `json:"redriven"`
	messageJSON
	Attempts []attemptJSON `json:"attempts"`
}

type attemptJSON struct {
	At       time.Time `json:"at"`
	Consumer string    `json:"consumer"`
	Error    string    `json:"error"`
}

func jsonDeadLetter(d sluice.DeadLetter) deadLetterJSON {
	out := deadLetterJSON{Offset: d.Offset, SourcePartition: d.Source.Partition, SourceOffset: d.Source.Offset,
		Deliveries: d.Deliveries, Reason: d.Reason, Redriven: d.Redriven,
		messageJSON: jsonMessage(d.Message), Attempts: []attemptJSON{}}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, attemptJSON(a))
	}
	return out
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

const dlqShowHelp = `sluice dlq show STREAM --subscription SUB OFFSET [--json]

Shows one dead letter, by its offset in the dead-letter stream ('dlq list'
prints it first): where it came from, why, every failed attempt, its key,
headers and body.

examples:
  sluice dlq show orders --subscription billing 12
  sluice dlq show orders --subscription billing 12 --json`

func runDLQShow(args []string) error {
	c := newCommand("dlq show", dlqShowHelp)
	sub := c.fs.String("subscription", "", "the subscription `SUB` (required)")
	asJSON := c.fs.Bool("json", false, "print the dead letter as JSON")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if *sub == "" {
		return c.usageErr("missing --subscription SUB")
	}
	if err := c.args(pos, "STREAM", "OFFSET"); err != nil {
		return err
	}
	off, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil || off < 0 {
		return c.usageErr("OFFSET %q is not an offset: 'sluice dlq list' prints them first on each line", pos[1])
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	d, err := cl.DeadLetter(context.Background(), pos[0], *sub, off)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, jsonDeadLetter(d))
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "dead letter\t%d of %s on %s\n", d.Offset, *sub, pos[0])
	fmt.Fprintf(tw, "source\tpartition %d offset %d, published %s\n", d.Source.Partition, d.Source.Offset, d.Message.Time.Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "deliveries\t%d\n", d.Deliveries)
	fmt.Fprintf(tw, "reason\t%s\n", d.Reason)
	fmt.Fprintf(tw, "redriven\t%v\n", d.Redriven)
	if len(d.Message.Key) > 0 {
		fmt.Fprintf(tw, "key\t%s\n", printable(d.Message.Key))
	}
	for _, h := range d.Message.Headers {
		fmt.Fprintf(tw, "header\t%s=%s\n", h.Key, printable(h.Value))
	}
	for i, a := range d.Attempts {
		fmt.Fprintf(tw, "attempt %d\t%s by %s: %s\n", i+1, a.At.Format(time.RFC3339Nano), a.Consumer, a.Error)
	}
	fmt.Fprintf(tw, "body\t%s\n", printable(d.Message.Body))
	return tw.Flush()
}

const dlqRedriveHelp = `sluice dlq redrive STREAM --subscription SUB [flags]

Puts the subscription's dead letters back into it (and no other subscription):
each becomes deliverable again with a fresh delivery count. Dead letters that
arrive while it runs wait for the next redrive. A long redrive shows progress
on a terminal.

examples:
  sluice dlq redrive orders --subscription billing
  sluice dlq redrive orders --subscription billing --contains 'card declined' --rate 50`

func runDLQRedrive(args []string) error {
	c := newCommand("dlq redrive", dlqRedriveHelp)
	c.subscriptionFlag("the subscription `SUB` (required)")
	contains := c.fs.String("contains", "", "only those whose reason or attempt errors contain `TEXT`")
	rate := c.fs.Float64("rate", 0, "at most `N` dead letters a second (default: no bound)")
	pos, err := c.parseArgs(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	stream, sub := pos[0], pos[1]
	if *rate < 0 {
		return c.usageErr("--rate %v is negative", *rate)
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	info, err := cl.Subscription(ctx, stream, sub)
	if err != nil {
		return err
	}
	dlq, err := cl.Stream(ctx, info.Config.DeadLetterStream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", info.Config.DeadLetterStream, err)
	}
	start, end := dlq.Partitions[0].StartOffset, dlq.Partitions[0].HighWatermark
	opts := sluice.RedriveOptions{Query: sluice.DeadLetterQuery{Limit: dlqPage, Contains: *contains}, PerSecond: *rate}
	if *rate > 0 {
		// A call of a few seconds at most: each is bounded by the client's timeout.
		opts.Query.Limit = max(1, min(dlqPage, int(*rate*5)))
	}
	prog := newProgress()
	total := 0
	for {
		n, next, err := cl.RedriveDeadLetters(ctx, stream, sub, opts)
		total += n
		if err != nil {
			prog.done(fmt.Sprintf("redrove %d dead letters before the error", total))
			return fmt.Errorf("after %d redriven: %w", total, err)
		}
		if end > start {
			prog.update(fmt.Sprintf("redrive %s/%s: %d redriven, %.0f%% of the dead-letter stream", stream, sub, total,
				100*float64(min(max(next-start, 0), end-start))/float64(end-start)))
		}
		if next <= opts.Query.From || next >= end {
			break
		}
		opts.Query.From = next
	}
	prog.done(fmt.Sprintf("redrove %d dead letters in %v", total, prog.elapsed().Round(time.Millisecond)))
	fmt.Printf("redriven %d dead letters of %s on %s\n", total, sub, stream)
	return nil
}

const dlqPurgeHelp = `sluice dlq purge STREAM --subscription SUB

Discards every dead letter the subscription has so far: they are no longer
listed or redriven. It cannot be undone.

examples:
  sluice dlq purge orders --subscription billing`

func runDLQPurge(args []string) error {
	c := newCommand("dlq purge", dlqPurgeHelp)
	c.subscriptionFlag("the subscription `SUB` (required)")
	pos, cl, err := c.connect(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	defer cl.Close()
	stream, sub := pos[0], pos[1]
	next, err := cl.PurgeDeadLetters(context.Background(), stream, sub)
	if err != nil {
		return err
	}
	fmt.Printf("purged the dead letters of %s on %s (later ones start at offset %d)\n", sub, stream, next)
	return nil
}
