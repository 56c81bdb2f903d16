package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluicemq/sluice"
)

const statsHelp = `sluice stats [STREAM...] [--json]

Shows every stream (or those named): partitions, messages and bytes stored,
the messages ever appended (the sum of the partitions' next offsets), the
counters since the server started (published messages and bytes, duplicates,
rejected, blocked, dropped), and each subscription: backlog, in flight, waiting for a retry,
delayed, parked keys, redeliveries, dead letters and lag (the age of the
oldest message not yet settled). --json prints one JSON document.

examples:
  sluice stats
  sluice stats orders
  sluice stats --json | jq '.streams[] | {name, messages}'`

// statsDoc is what stats --json prints.
type statsDoc struct {
	Time    time.Time     `json:"time"`
	Server  string        `json:"server"`
	Streams []streamStats `json:"streams"`
}

type streamStats struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	// Messages and Bytes are stored now; Appended is the sum of the partitions'
	// next offsets: every message ever stored, which rates are computed from.
	Messages      int64               `json:"messages"`
	Bytes         int64               `json:"bytes"`
	Appended      int64               `json:"appended"`
	Counters      streamCounters      `json:"counters"`
	Subscriptions []subscriptionStats `json:"subscriptions"`
}

// streamCounters are the counters the network API carries, since the server
// started.
type streamCounters struct {
	Published      int64   `json:"published"`
	PublishedBytes int64   `json:"published_bytes"`
	Rejected       int64   `json:"rejected"`
	Blocked        int64   `json:"blocked"`
	BlockedSeconds float64 `json:"blocked_seconds"`
	Dropped        int64   `json:"dropped"`
	Duplicates     int64   `json:"duplicates"`
	DedupeKeys     int     `json:"dedupe_keys"`
	DedupeEvicted  int64   `json:"dedupe_evicted"`
}

type subscriptionStats struct {
	Name         string `json:"name"`
	Mode         string `json:"mode"`
	Backlog      int64  `json:"backlog"`
	InFlight     int    `json:"in_flight"`
	Waiting      int    `json:"waiting"`
	Delayed      int    `json:"delayed"`
	Held         int    `json:"held"`
	Parked       int    `json:"parked"`
	Redeliveries int64  `json:"redeliveries"`
	DeadLettered int64  `json:"dead_lettered"`
	// LagSeconds is the age of the oldest message not yet settled, 0 without a
	// backlog; OldestUnsettled is that message's time.
	LagSeconds      float64    `json:"lag_seconds"`
	OldestUnsettled *time.Time `json:"oldest_unsettled,omitempty"`
}

// collectStats reads every stream (or those named) and its subscriptions. A
// stream deleted meanwhile is left out.
func collectStats(ctx context.Context, cl sluice.Client, names []string) (statsDoc, error) {
	doc := statsDoc{Server: global.server, Streams: []streamStats{}}
	var streams []sluice.StreamInfo
	if len(names) == 0 {
		var err error
		if streams, err = cl.ListStreams(ctx); err != nil {
			return doc, err
		}
	}
	for _, n := range names {
		s, err := cl.Stream(ctx, n)
		if err != nil {
			return doc, err
		}
		streams = append(streams, s)
	}
	for _, s := range streams {
		subs, err := cl.ListSubscriptions(ctx, s.Config.Name)
		if errors.Is(err, sluice.ErrStreamNotFound) && len(names) == 0 {
			continue
		}
		if err != nil {
			return doc, err
		}
		doc.Streams = append(doc.Streams, streamStatsOf(s, subs, time.Now()))
	}
	doc.Time = time.Now().UTC()
	return doc, nil
}

func streamStatsOf(s sluice.StreamInfo, subs []sluice.SubscriptionInfo, now time.Time) streamStats {
	k := s.Counters
	out := streamStats{Name: s.Config.Name, Partitions: len(s.Partitions), Messages: s.Messages, Bytes: s.Bytes,
		Counters: streamCounters{Published: k.Published, PublishedBytes: k.PublishedBytes, Rejected: k.Rejected,
			Blocked: k.Blocked, BlockedSeconds: k.BlockedTime.Seconds(), Dropped: k.Dropped, Duplicates: k.Duplicates,
			DedupeKeys: k.DedupeKeys, DedupeEvicted: k.DedupeEvicted},
		Subscriptions: []subscriptionStats{}}
	for _, p := range s.Partitions {
		out.Appended += p.HighWatermark
	}
	for _, sub := range subs {
		ss := subscriptionStats{Name: sub.Config.Name, Mode: string(sub.Config.Mode), Backlog: sub.Backlog,
			InFlight: sub.InFlight, Waiting: sub.Waiting, Delayed: sub.Delayed, Held: sub.Held, Parked: sub.Parked,
			Redeliveries: sub.Redeliveries, DeadLettered: sub.DeadLettered, LagSeconds: lag(sub, now).Seconds()}
		if !sub.OldestUnsettled.IsZero() {
			t := sub.OldestUnsettled.UTC()
			ss.OldestUnsettled = &t
		}
		out.Subscriptions = append(out.Subscriptions, ss)
	}
	return out
}

func runStats(args []string) error {
	c := newCommand("stats", statsHelp)
	asJSON := c.fs.Bool("json", false, "print one JSON document")
	names, err := c.parse(args)
	if err != nil {
		return err
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	doc, err := collectStats(context.Background(), cl, names)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, doc)
	}
	return printStats(os.Stdout, doc)
}

// printStats writes the streams' table, then the subscriptions'.
func printStats(w io.Writer, doc statsDoc) error {
	if len(doc.Streams) == 0 {
		_, err := fmt.Fprintln(w, "no streams: 'sluice stream create NAME' creates one")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tPARTITIONS\tMESSAGES\tBYTES\tAPPENDED\tDUPLICATES\tREJECTED\tBLOCKED\tDROPPED")
	nsubs := 0
	for _, s := range doc.Streams {
		k := s.Counters
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Partitions, s.Messages, humanBytes(s.Bytes),
			s.Appended, k.Duplicates, k.Rejected, k.Blocked, k.Dropped)
		nsubs += len(s.Subscriptions)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if nsubs == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "STREAM\tSUBSCRIPTION\tMODE\tBACKLOG\tIN FLIGHT\tWAITING\tDELAYED\tPARKED\tREDELIVERED\tDEAD\tLAG")
	for _, s := range doc.Streams {
		for _, sub := range s.Subscriptions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, sub.Name, sub.Mode, sub.Backlog, sub.InFlight,
				sub.Waiting, sub.Delayed, sub.Parked, sub.Redeliveries, sub.DeadLettered, durationOrZero(secondsDuration(sub.LagSeconds)))
		}
	}
	return tw.Flush()
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
