package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sluicemq/sluice"
)

const streamUsage = `usage: sluice [--server HOST:PORT] stream <create|list|info|delete> [NAME] [flags]

  sluice stream create orders --partitions 4 --max-messages 100000 --overflow block --retention work
  sluice stream list
  sluice stream info orders
  sluice stream delete orders`

// runStream manages streams on the --server broker.
func runStream(args []string) error {
	if len(args) == 0 {
		return errors.New(streamUsage)
	}
	op, args := args[0], args[1:]
	fs := flag.NewFlagSet("stream "+op, flag.ContinueOnError)
	partitions := fs.Int("partitions", 0, "partitions (default 1)")
	maxMessages := fs.Int64("max-messages", 0, "bound on each partition's messages (default 10 million)")
	overflow := fs.String("overflow", "", "when full: reject (default), block or drop-oldest")
	retention := fs.String("retention", "", "limits (default) or work")
	fs.Usage = func() { fmt.Fprintln(os.Stderr, streamUsage); fs.PrintDefaults() }
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	name := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("stream %s takes one stream name\n%s", op, streamUsage)
		}
		return pos[0], nil
	}
	switch op {
	case "create":
		n, err := name()
		if err != nil {
			return err
		}
		cfg := sluice.StreamConfig{Name: n, Partitions: *partitions, MaxMessages: *maxMessages,
			Overflow:  sluice.OverflowPolicy(strings.ReplaceAll(*overflow, "-", "_")),
			Retention: sluice.Retention{Policy: sluice.RetentionPolicy(*retention)}}
		info, err := c.CreateStream(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Printf("created %s: %d partitions\n", info.Config.Name, len(info.Partitions))
	case "list":
		streams, err := c.ListStreams(ctx)
		if err != nil {
			return err
		}
		for _, s := range streams {
			fmt.Printf("%s\t%d partitions\t%d messages\t%d bytes\n", s.Config.Name, len(s.Partitions), s.Messages, s.Bytes)
		}
	case "info":
		n, err := name()
		if err != nil {
			return err
		}
		info, err := c.Stream(ctx, n)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	case "delete":
		n, err := name()
		if err != nil {
			return err
		}
		if err := c.DeleteStream(ctx, n); err != nil {
			return err
		}
		fmt.Printf("deleted %s\n", n)
	default:
		return fmt.Errorf("unknown stream command %q\n%s", op, streamUsage)
	}
	return nil
}
