package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicemq/sluice"
)

const pubUsage = `usage: sluice [--server HOST:PORT] pub NAME [--key K] [--id IDEMPOTENCY_KEY] [--delay 5s] [BODY...]

One message per BODY; without any, one per line of standard input, published in
batches. Prints "partition offset" for each message once it is acknowledged, in
input order.

  sluice pub emails --key user-42 '{"template":"welcome"}'
  sluice pub emails --id order-7f3a 'charge 42'
  seq 1000 | sluice pub numbers`

// pubBatch is how many stdin lines go in one PublishBatch.
const pubBatch = 1000

// maxPubLine bounds one stdin line (a message).
const maxPubLine = sluice.MaxMessageBytesCeiling

// runPub publishes messages to a stream on the --server broker.
func runPub(args []string) error {
	fs := flag.NewFlagSet("pub", flag.ContinueOnError)
	key := fs.String("key", "", "message key (partition and order)")
	id := fs.String("id", "", "idempotency key: a repeat within the stream's dedupe window stores nothing")
	delay := fs.Duration("delay", 0, "deliver to subscriptions after this delay")
	fs.Usage = func() { fmt.Fprintln(os.Stderr, pubUsage); fs.PrintDefaults() }
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New(pubUsage)
	}
	stream, bodies := pos[0], pos[1:]
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	message := func(body string, n int) sluice.Message {
		m := sluice.Message{Body: []byte(body)}
		if *key != "" {
			m.Key = []byte(*key)
		}
		if *id != "" {
			m.IdempotencyKey = *id
			if n > 0 { // several messages: each its own key
				m.IdempotencyKey = fmt.Sprintf("%s-%d", *id, n)
			}
		}
		if *delay > 0 {
			m.DeliverAt = time.Now().Add(*delay)
		}
		return m
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	publish := func(msgs []sluice.Message) error {
		ps, err := c.PublishBatch(ctx, stream, msgs)
		for _, p := range ps {
			if p.Offset < 0 {
				break // in input order: none after the first not stored
			}
			fmt.Fprintf(out, "%d %d\n", p.Partition, p.Offset)
		}
		if ferr := out.Flush(); err == nil {
			err = ferr
		}
		return err
	}
	if len(bodies) > 0 {
		msgs := make([]sluice.Message, len(bodies))
		for i, b := range bodies {
			msgs[i] = message(b, (i+1)*boolInt(len(bodies) > 1))
		}
		for len(msgs) > 0 {
			n := min(len(msgs), pubBatch)
			if err := publish(msgs[:n]); err != nil {
				return err
			}
			msgs = msgs[n:]
		}
		return nil
	}
	return pubLines(os.Stdin, message, publish)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pubLines publishes each line of r as a message, in batches.
func pubLines(r io.Reader, message func(string, int) sluice.Message, publish func([]sluice.Message) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxPubLine)
	var batch []sluice.Message
	n := 0
	for sc.Scan() {
		n++
		batch = append(batch, message(sc.Text(), n))
		if len(batch) == pubBatch {
			if err := publish(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading standard input: %w (a line is at most %d bytes)", err, maxPubLine)
	}
	if len(batch) > 0 {
		return publish(batch)
	}
	return nil
}
