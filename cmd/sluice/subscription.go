package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicemq/sluice"
)

var subscriptionGroup = group{name: "subscription", help: `sluice subscription COMMAND STREAM [SUB] [flags]

Manages durable subscriptions: each sees every message of its stream, and
shares them among its consumers ('sluice sub').

  sluice subscription create STREAM SUB [--mode queue|key_ordered|partitioned] [--max-deliveries N] [--lease 30s] ...
  sluice subscription list STREAM [--json]
  sluice subscription info STREAM SUB [--json]
  sluice subscription seek STREAM SUB --to earliest|latest|OFFSET|TIME|-DURATION
  sluice subscription delete STREAM SUB

examples:
  sluice subscription create orders billing --mode key_ordered --max-deliveries 3
  sluice subscription info orders billing
  sluice subscription seek orders billing --to -1h`}

func init() {
	subscriptionGroup.subs = []verb{
		{"create", "create a subscription", runSubscriptionCreate},
		{"list", "list a stream's subscriptions", runSubscriptionList},
		{"info", "show a subscription's settings and progress", runSubscriptionInfo},
		{"seek", "move a subscription to a position", runSubscriptionSeek},
		{"delete", "delete a subscription", runSubscriptionDelete},
	}
}

// runSubscription manages subscriptions.
func runSubscription(args []string) error { return subscriptionGroup.run(args) }

const subscriptionCreateHelp = `sluice subscription create STREAM SUB [flags]

Creates a durable subscription on STREAM, and its dead-letter stream
(STREAM.SUB.dlq) unless --dead-letter-stream names another. It starts at the
earliest message, or with --start latest after those already stored.

examples:
  sluice subscription create orders billing
  sluice subscription create orders billing --mode key_ordered --max-deliveries 3 --lease 1m
  sluice subscription create ticks display --delivery at_most_once --start latest`

func runSubscriptionCreate(args []string) error {
	c := newCommand("subscription create", subscriptionCreateHelp)
	c.subscriptionFlag("the subscription `SUB`, instead of the second argument")
	mode := c.fs.String("mode", "", "`queue` (default; any consumer, any order), key_ordered (in order per key) or partitioned (whole partitions per consumer)")
	maxDeliveries := c.fs.Int("max-deliveries", 0, "deliveries of a message before it is dead-lettered, `N` (default 5)")
	lease := c.fs.Duration("lease", 0, "how long a consumer holds a message before it is redelivered, `DURATION` (default 30s)")
	backoff := c.fs.Duration("backoff", 0, "first retry delay after a failure, doubling up to --backoff-max, `DURATION` (default 1s)")
	backoffMax := c.fs.Duration("backoff-max", 0, "longest retry delay, `DURATION` (default 5m)")
	session := c.fs.Duration("session", 0, "partitioned: how long a consumer stays in the group without fetching, `DURATION` (default 10s)")
	delivery := c.fs.String("delivery", "", "`at_least_once` (default: consumed once acknowledged) or at_most_once (consumed once fetched)")
	start := c.fs.String("start", "", "`earliest` (default) or latest: where a new subscription starts")
	dlq := c.fs.String("dead-letter-stream", "", "`STREAM` for its dead letters (default STREAM.SUB.dlq)")
	pos, err := c.parseArgs(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	stream, sub := pos[0], pos[1]
	cfg := sluice.SubscriptionConfig{Name: sub, MaxDeliveries: *maxDeliveries, Lease: *lease,
		BackoffInitial: *backoff, BackoffMax: *backoffMax, Session: *session, DeadLetterStream: *dlq}
	if *mode != "" {
		m, err := enumValue("mode", *mode, "queue", "key_ordered", "partitioned")
		if err != nil {
			return err
		}
		cfg.Mode = sluice.SubscriptionMode(m)
	}
	if *delivery != "" {
		d, err := enumValue("delivery", *delivery, "at_least_once", "at_most_once")
		if err != nil {
			return err
		}
		cfg.Delivery = sluice.DeliveryGuarantee(d)
	}
	if *start != "" {
		s, err := enumValue("start", *start, "earliest", "latest")
		if err != nil {
			return err
		}
		cfg.StartLatest = s == "latest"
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.CreateSubscription(context.Background(), stream, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("created %s on %s: mode %s, max deliveries %d, dead letters to %s\n",
		info.Config.Name, stream, info.Config.Mode, info.Config.MaxDeliveries, info.Config.DeadLetterStream)
	return nil
}

const subscriptionListHelp = `sluice subscription list STREAM [--json]

Lists a stream's subscriptions, one a line: name, mode, backlog, in flight and
dead-lettered messages.

examples:
  sluice subscription list orders
  sluice subscription list orders --json`

func runSubscriptionList(args []string) error {
	c := newCommand("subscription list", subscriptionListHelp)
	asJSON := c.fs.Bool("json", false, "print the subscriptions as a JSON array")
	pos, cl, err := c.connect(args, "STREAM")
	if err != nil {
		return err
	}
	defer cl.Close()
	subs, err := cl.ListSubscriptions(context.Background(), pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, subs)
	}
	for _, s := range subs {
		fmt.Printf("%s\t%s\t%d backlog\t%d in flight\t%d dead-lettered\n", s.Config.Name, s.Config.Mode, s.Backlog, s.InFlight, s.DeadLettered)
	}
	return nil
}

const subscriptionInfoHelp = `sluice subscription info STREAM SUB [--json]

Shows a subscription's settings and progress: backlog and its age, messages in
flight, waiting for a retry, delayed, held and parked, dead letters, and each
partition's position.

examples:
  sluice subscription info orders billing
  sluice subscription info orders billing --json`

func runSubscriptionInfo(args []string) error {
	c := newCommand("subscription info", subscriptionInfoHelp)
	c.subscriptionFlag("the subscription `SUB`, instead of the second argument")
	asJSON := c.fs.Bool("json", false, "print the subscription as JSON")
	pos, cl, err := c.connect(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	defer cl.Close()
	stream, sub := pos[0], pos[1]
	info, err := cl.Subscription(context.Background(), stream, sub)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, info)
	}
	printSubscriptionInfo(os.Stdout, info, time.Now())
	return nil
}

func printSubscriptionInfo(w io.Writer, info sluice.SubscriptionInfo, now time.Time) {
	cfg := info.Config
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "subscription\t%s on %s\n", cfg.Name, info.Stream)
	fmt.Fprintf(tw, "mode\t%s, %s\n", cfg.Mode, cfg.Delivery)
	fmt.Fprintf(tw, "deliveries\tup to %d, lease %v, backoff %v to %v\n", cfg.MaxDeliveries, cfg.Lease, cfg.BackoffInitial, cfg.BackoffMax)
	fmt.Fprintf(tw, "dead letters\t%d, to %s\n", info.DeadLettered, cfg.DeadLetterStream)
	fmt.Fprintf(tw, "backlog\t%d, lag %s\n", info.Backlog, durationOrZero(lag(info, now)))
	fmt.Fprintf(tw, "in flight\t%d\n", info.InFlight)
	fmt.Fprintf(tw, "waiting\t%d to retry, %d delayed, %d held behind their key, %d keys parked\n", info.Waiting, info.Delayed, info.Held, info.Parked)
	fmt.Fprintf(tw, "redeliveries\t%d since the server started\n", info.Redeliveries)
	if cfg.Mode == sluice.PartitionedMode {
		fmt.Fprintf(tw, "group\tgeneration %d, %d members\n", info.Generation, len(info.Members))
		for _, m := range info.Members {
			fmt.Fprintf(tw, "  %s\tpartitions %v, seen %s ago\n", m.Name, m.Partitions, durationOrZero(now.Sub(m.LastSeen)))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PARTITION\tDONE BELOW\tNEXT\tBACKLOG\t")
	for _, p := range info.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t\n", p.ID, p.Floor, p.Next, p.Backlog)
	}
	tw.Flush()
}

// lag is the age of the oldest message the subscription has not settled.
func lag(info sluice.SubscriptionInfo, now time.Time) time.Duration {
	if info.OldestUnsettled.IsZero() {
		return 0
	}
	return max(now.Sub(info.OldestUnsettled), 0)
}

const subscriptionSeekHelp = `sluice subscription seek STREAM SUB --to POSITION

Moves the subscription in every partition: everything before the position
counts as done, everything from it is delivered anew, and deliveries in flight
lose their leases. POSITION is earliest, latest, an offset (the same in every
partition), a time (RFC 3339), or a duration back from now (-1h).

examples:
  sluice subscription seek orders billing --to earliest
  sluice subscription seek orders billing --to latest
  sluice subscription seek orders billing --to 1200
  sluice subscription seek orders billing --to 2026-03-01T12:00:00Z
  sluice subscription seek orders billing --to -30m`

func runSubscriptionSeek(args []string) error {
	c := newCommand("subscription seek", subscriptionSeekHelp)
	c.subscriptionFlag("the subscription `SUB`, instead of the second argument")
	to := c.fs.String("to", "", "the `POSITION`: earliest, latest, OFFSET, TIME or -DURATION (required)")
	pos, err := c.parseArgs(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	stream, sub := pos[0], pos[1]
	if *to == "" {
		return c.usageErr("missing --to POSITION")
	}
	at, err := parsePosition(*to, time.Now())
	if err != nil {
		return c.usageErr("--to: %v", err)
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.SeekSubscription(context.Background(), stream, sub, at); err != nil {
		return err
	}
	fmt.Printf("moved %s on %s to %s\n", sub, stream, *to)
	return nil
}

// parsePosition reads earliest, latest, an offset, an RFC 3339 time or a
// negative duration (that long before now).
func parsePosition(s string, now time.Time) (sluice.StartAt, error) {
	switch strings.ToLower(s) {
	case "earliest":
		return sluice.Earliest(), nil
	case "latest":
		return sluice.Latest(), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return sluice.StartAt{}, fmt.Errorf("offset %d is negative", n)
		}
		return sluice.AtOffset(n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return sluice.AtTime(t), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d > 0 {
			return sluice.StartAt{}, fmt.Errorf("%q is in the future: a duration back from now is negative, as in -%s", s, s)
		}
		return sluice.AtTime(now.Add(d)), nil
	}
	return sluice.StartAt{}, fmt.Errorf("%q is not earliest, latest, an offset, an RFC 3339 time or a duration such as -1h", s)
}

const subscriptionDeleteHelp = `sluice subscription delete STREAM SUB

Deletes a subscription and its progress. Its dead-letter stream stays.

examples:
  sluice subscription delete orders billing`

func runSubscriptionDelete(args []string) error {
	c := newCommand("subscription delete", subscriptionDeleteHelp)
	c.subscriptionFlag("the subscription `SUB`, instead of the second argument")
	pos, cl, err := c.connect(args, "STREAM", "SUB")
	if err != nil {
		return err
	}
	defer cl.Close()
	stream, sub := pos[0], pos[1]
	if err := cl.DeleteSubscription(context.Background(), stream, sub); err != nil {
		return err
	}
	fmt.Printf("deleted %s on %s\n", sub, stream)
	return nil
}
