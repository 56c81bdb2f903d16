package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluicemq/sluice"
)

var streamGroup = group{name: "stream", help: `sluice stream COMMAND [NAME] [flags]

Manages streams: named, partitioned, bounded logs of messages.

  sluice stream create NAME [--partitions N] [--max-messages N] [--overflow reject|block|drop-oldest] [--retention limits|work]
  sluice stream list [--json]
  sluice stream info NAME [--json]
  sluice stream update NAME [--partitions N] [--max-messages N] [--overflow ...] [--retention ...]
  sluice stream delete NAME

examples:
  sluice stream create orders --partitions 4 --max-messages 100000 --overflow block --retention work
  sluice stream update orders --partitions 8 --max-age 72h
  sluice stream info orders`}

func init() {
	streamGroup.subs = []verb{
		{"create", "create a stream", runStreamCreate},
		{"list", "list the streams", runStreamList},
		{"info", "show a stream's settings, partitions and counters", runStreamInfo},
		{"update", "change a stream's settings", runStreamUpdate},
		{"delete", "delete a stream and its messages", runStreamDelete},
	}
}

// runStream manages streams.
func runStream(args []string) error { return streamGroup.run(args) }

// streamFlags are the settings create and update share.
type streamFlags struct {
	partitions      int
	maxMessages     int64
	maxBytes        sizeFlag
	maxMessageBytes sizeFlag
	overflow        string
	blockTimeout    time.Duration
	retention       string
	maxAge          time.Duration
	dedupeWindow    time.Duration
	dedupeMaxKeys   int
}

func (s *streamFlags) define(fs *flag.FlagSet) {
	fs.IntVar(&s.partitions, "partitions", 0, "`N` partitions (default 1; update can only raise it)")
	fs.Int64Var(&s.maxMessages, "max-messages", 0, "bound on each partition's messages, `N` (default 10 million)")
	fs.Var(&s.maxBytes, "max-bytes", "bound on each partition's bytes, `SIZE` such as 512MiB (default 1GiB)")
	fs.Var(&s.maxMessageBytes, "max-message-bytes", "largest message, key and headers included, `SIZE` (default 1MiB)")
	fs.StringVar(&s.overflow, "overflow", "", "what a publish to a full partition does: `reject` (default), block or drop-oldest")
	fs.DurationVar(&s.blockTimeout, "block-timeout", 0, "how long a publish waits for room under --overflow block, `DURATION` (default 5s)")
	fs.StringVar(&s.retention, "retention", "", "`limits` (default: kept until a bound or --max-age removes them) or work (also removed once every subscription settled them)")
	fs.DurationVar(&s.maxAge, "max-age", 0, "remove messages older than `DURATION` (default: no age limit)")
	fs.DurationVar(&s.dedupeWindow, "dedupe-window", 0, "how long an idempotency key is remembered, `DURATION` (default 10m)")
	fs.IntVar(&s.dedupeMaxKeys, "dedupe-max-keys", 0, "most idempotency keys held, `N` (default 1 million)")
}

// apply sets the fields of cfg whose flag was given.
func (s *streamFlags) apply(fs *flag.FlagSet, cfg *sluice.StreamConfig) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		switch f.Name {
		case "partitions":
			cfg.Partitions = s.partitions
		case "max-messages":
			cfg.MaxMessages = s.maxMessages
		case "max-bytes":
			cfg.MaxBytes = int64(s.maxBytes)
		case "max-message-bytes":
			cfg.MaxMessageBytes = int(s.maxMessageBytes)
		case "overflow":
			var v string
			v, err = enumValue("overflow", s.overflow, "reject", "block", "drop_oldest")
			cfg.Overflow = sluice.OverflowPolicy(v)
		case "block-timeout":
			cfg.BlockTimeout = s.blockTimeout
		case "retention":
			var v string
			v, err = enumValue("retention", s.retention, "limits", "work")
			cfg.Retention.Policy = sluice.RetentionPolicy(v)
		case "max-age":
			cfg.Retention.MaxAge = s.maxAge
		case "dedupe-window":
			cfg.DedupeWindow = s.dedupeWindow
		case "dedupe-max-keys":
			cfg.DedupeMaxKeys = s.dedupeMaxKeys
		}
	})
	if ue, ok := err.(*usageError); ok {
		ue.cmd = current
	}
	return err
}

const streamCreateHelp = `sluice stream create NAME [flags]

Creates a stream. Unset settings take their defaults; 'sluice stream info NAME'
shows them all.

examples:
  sluice stream create orders
  sluice stream create orders --partitions 4 --max-messages 100000 --overflow block --retention work
  sluice stream create ticks --max-bytes 256MiB --overflow drop-oldest --sync never`

func runStreamCreate(args []string) error {
	c := newCommand("stream create", streamCreateHelp)
	var sf streamFlags
	sf.define(c.fs)
	syncPolicy := c.fs.String("sync", "", "when a publish is acknowledged: `always` after fdatasync (default), interval or never; fixed at creation")
	var segment sizeFlag
	c.fs.Var(&segment, "segment-bytes", "size at which a partition's segment file rolls, `SIZE` (default 128MiB, at most max-bytes/8); fixed at creation")
	pos, err := c.parseArgs(args, "NAME")
	if err != nil {
		return err
	}
	cfg := sluice.StreamConfig{Name: pos[0], SegmentBytes: int64(segment)}
	if err := sf.apply(c.fs, &cfg); err != nil {
		return err
	}
	if *syncPolicy != "" {
		v, err := enumValue("sync", *syncPolicy, "always", "interval", "never")
		if err != nil {
			return err
		}
		cfg.Sync = sluice.SyncPolicy(v)
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.CreateStream(context.Background(), cfg)
	if err != nil {
		return err
	}
	fmt.Printf("created %s: %d partitions\n", info.Config.Name, len(info.Partitions))
	return nil
}

const streamListHelp = `sluice stream list [--json]

Lists the streams, one a line: name, partitions, messages and bytes stored.

examples:
  sluice stream list
  sluice stream list --json`

func runStreamList(args []string) error {
	c := newCommand("stream list", streamListHelp)
	asJSON := c.fs.Bool("json", false, "print the streams as a JSON array")
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams, err := cl.ListStreams(context.Background())
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, streams)
	}
	for _, s := range streams {
		fmt.Printf("%s\t%d partitions\t%d messages\t%d bytes\n", s.Config.Name, len(s.Partitions), s.Messages, s.Bytes)
	}
	return nil
}

const streamInfoHelp = `sluice stream info NAME [--json]

Shows a stream's settings, its partitions (offsets, bytes, segments) and its
counters since the server started.

examples:
  sluice stream info orders
  sluice stream info orders --json`

func runStreamInfo(args []string) error {
	c := newCommand("stream info", streamInfoHelp)
	asJSON := c.fs.Bool("json", false, "print the stream as JSON")
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.Stream(context.Background(), pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, info)
	}
	printStreamInfo(os.Stdout, info)
	return nil
}

func printStreamInfo(w io.Writer, info sluice.StreamInfo) {
	cfg := info.Config
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	maxAge := "none"
	if cfg.Retention.MaxAge > 0 {
		maxAge = cfg.Retention.MaxAge.String()
	}
	fmt.Fprintf(tw, "stream\t%s\n", cfg.Name)
	fmt.Fprintf(tw, "messages\t%d (%s)\n", info.Messages, humanBytes(info.Bytes))
	fmt.Fprintf(tw, "partitions\t%d\n", cfg.Partitions)
	fmt.Fprintf(tw, "bounds\t%d messages and %s per partition; overflow %s (block timeout %v)\n",
		cfg.MaxMessages, humanBytes(cfg.MaxBytes), cfg.Overflow, cfg.BlockTimeout)
	fmt.Fprintf(tw, "retention\t%s, max age %s\n", cfg.Retention.Policy, maxAge)
	fmt.Fprintf(tw, "messages up to\t%s\n", humanBytes(int64(cfg.MaxMessageBytes)))
	fmt.Fprintf(tw, "dedupe\twindow %v, up to %d keys (%d held)\n", cfg.DedupeWindow, cfg.DedupeMaxKeys, info.Counters.DedupeKeys)
	fmt.Fprintf(tw, "sync\t%s, segments of %s\n", cfg.Sync, humanBytes(cfg.SegmentBytes))
	k := info.Counters
	fmt.Fprintf(tw, "since start\t%d duplicates, %d rejected, %d blocked (%v), %d dropped\n",
		k.Duplicates, k.Rejected, k.Blocked, k.BlockedTime.Round(time.Millisecond), k.Dropped)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PARTITION\tSTART\tNEXT OFFSET\tBYTES\tSEGMENTS\t")
	for _, p := range info.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\n", p.ID, p.StartOffset, p.HighWatermark, p.Bytes, p.Segments)
	}
	tw.Flush()
}

const streamUpdateHelp = `sluice stream update NAME [flags]

Changes the settings given, and only those. Partitions can be raised, never
lowered; --sync and --segment-bytes are fixed at creation.

examples:
  sluice stream update orders --partitions 8
  sluice stream update orders --max-messages 1000000 --overflow reject
  sluice stream update orders --retention work --max-age 72h`

func runStreamUpdate(args []string) error {
	c := newCommand("stream update", streamUpdateHelp)
	var sf streamFlags
	sf.define(c.fs)
	pos, err := c.parseArgs(args, "NAME")
	if err != nil {
		return err
	}
	if c.fs.NFlag() == 0 {
		return c.usageErr("nothing to change: give the settings to change, such as --partitions N")
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	cfg := sluice.StreamConfig{Name: pos[0]}
	// Retention is replaced as a whole: keep the half not given.
	cur, err := cl.Stream(ctx, pos[0])
	if err != nil {
		return err
	}
	cfg.Retention = cur.Config.Retention
	if err := sf.apply(c.fs, &cfg); err != nil {
		return err
	}
	info, err := cl.UpdateStream(ctx, cfg)
	if err != nil {
		return err
	}
	cfg = info.Config
	fmt.Printf("updated %s: %d partitions, %d messages and %s per partition, overflow %s, retention %s\n",
		cfg.Name, cfg.Partitions, cfg.MaxMessages, humanBytes(cfg.MaxBytes), cfg.Overflow, cfg.Retention.Policy)
	return nil
}

const streamDeleteHelp = `sluice stream delete NAME

Deletes a stream, its messages and its subscriptions. It cannot be undone.

examples:
  sluice stream delete orders`

func runStreamDelete(args []string) error {
	c := newCommand("stream delete", streamDeleteHelp)
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.DeleteStream(context.Background(), pos[0]); err != nil {
		return err
	}
	fmt.Printf("deleted %s\n", pos[0])
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
