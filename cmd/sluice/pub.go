package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

const pubHelp = `sluice pub NAME [flags] [BODY...]

Publishes one message per BODY; without any, one per line of --file or, without
it, of standard input, sent in batches. Prints "PARTITION OFFSET" for each
message once the server acknowledged it (it is on disk), in input order. A
message whose idempotency key the stream already has prints the original's
position. With --id and several messages, each gets its own key, ID-1, ID-2,
..., in input order, so the whole command can be repeated safely. Publishing a
file shows progress on a terminal.

examples:
  sluice pub emails --key user-42 '{"template":"welcome"}'
  sluice pub emails --id order-7f3a 'charge 42'        # a repeat prints the same position
  sluice pub emails --header source=web --header trace=4bf9 'hello'
  sluice pub reminders --delay 15m 'call back'          # delivered to subscriptions in 15 minutes
  seq 1000 | sluice pub numbers                         # one message per line
  sluice pub events --file events.jsonl                 # one message per line of the file`

// Batches of lines: at most pubBatch messages and about pubBatchBytes.
const (
	pubBatch      = 1000
	pubBatchBytes = 8 << 20
)

// maxPubLine bounds one line (a message).
const maxPubLine = sluice.MaxMessageBytesCeiling

// pubReadBuffer is the read buffer of lines: a batch is sent once the lines
// already read run out, so a slow producer's lines go out at once.
const pubReadBuffer = 1 << 20

// pubOptions are pub's message flags.
type pubOptions struct {
	key       string
	id        string
	delay     time.Duration
	headers   headerFlag
	partition int
}

// message builds the n-th message (from 1) of a publish of several, or the
// only one when n is 0.
func (o *pubOptions) message(body []byte, n int) sluice.Message {
	m := sluice.Message{Body: body, Headers: o.headers}
	if o.key != "" {
		m.Key = []byte(o.key)
	}
	if o.id != "" {
		m.IdempotencyKey = o.id
		if n > 0 { // several messages: each its own key
			m.IdempotencyKey = fmt.Sprintf("%s-%d", o.id, n)
		}
	}
	if o.delay > 0 {
		m.DeliverAt = time.Now().Add(o.delay)
	}
	if o.partition >= 0 {
		m.Partition = sluice.ToPartition(o.partition)
	}
	return m
}

// runPub publishes messages to a stream.
func runPub(args []string) error {
	c := newCommand("pub", pubHelp)
	var o pubOptions
	c.fs.StringVar(&o.key, "key", "", "message `KEY`: the same key goes to the same partition, in order")
	c.fs.StringVar(&o.id, "id", "", "idempotency `KEY`: a repeat within the stream's dedupe window stores nothing; with several BODYs, or lines, the n-th gets KEY-n")
	c.fs.DurationVar(&o.delay, "delay", 0, "keep the messages from subscriptions for this `DURATION` (readers see them at once)")
	c.fs.Var(&o.headers, "header", "a header `KEY=VALUE`; repeat for more")
	c.fs.IntVar(&o.partition, "partition", -1, "publish to partition `N` instead of the one the key chooses")
	file := c.fs.String("file", "", "publish one message per line of `FILE` (- for standard input)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return c.usageErr("missing the stream name")
	}
	stream, bodies := pos[0], pos[1:]
	if len(bodies) > 0 && *file != "" {
		return c.usageErr("give BODY arguments or --file, not both")
	}
	if o.delay < 0 {
		return c.usageErr("--delay %v is negative", o.delay)
	}
	in, label := os.Stdin, "standard input"
	if *file != "" && *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		in, label = f, *file
	}
	var size int64 // known for a file, for a percentage
	if fi, err := in.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	p := &publisher{c: cl, stream: stream, out: bufio.NewWriter(os.Stdout), clear: isTerminal(os.Stdout)}
	defer p.out.Flush()
	ctx := context.Background()
	if len(bodies) > 0 {
		msgs := make([]sluice.Message, len(bodies))
		for i, b := range bodies {
			n := i + 1
			if len(bodies) == 1 {
				n = 0
			}
			msgs[i] = o.message([]byte(b), n)
		}
		for len(msgs) > 0 {
			n := min(len(msgs), pubBatch)
			if err := p.publish(ctx, msgs[:n]); err != nil {
				return err
			}
			msgs = msgs[n:]
		}
		return nil
	}
	if in == os.Stdin && isTerminal(os.Stdin) {
		fmt.Fprintln(os.Stderr, "sluice pub: one message per line of standard input; Ctrl-D ends")
	}
	p.prog = newProgress()
	err = p.lines(ctx, in, size, &o)
	summary := fmt.Sprintf("published %d messages from %s in %v (%s)", p.acked, label, p.prog.elapsed().Round(time.Millisecond), p.prog.rate(p.acked))
	if err != nil {
		summary = fmt.Sprintf("published %d messages from %s before the error", p.acked, label)
	}
	p.prog.done(summary)
	return err
}

// publisher sends batches and prints their positions in order.
type publisher struct {
	c      sluice.Client
	stream string
	out    *bufio.Writer
	clear  bool      // standard output is a terminal: erase the progress line before writing
	prog   *progress // nil for BODY arguments
	read   int64     // bytes of input read
	acked  int64     // messages acknowledged
}

// publish sends one batch and prints the positions of the messages stored. A
// batch over a request limit of the server (which stored none of it) is sent
// again in halves.
func (p *publisher) publish(ctx context.Context, msgs []sluice.Message) error {
	ps, err := p.c.PublishBatch(ctx, p.stream, msgs)
	if errors.Is(err, client.ErrLimit) && len(ps) == 0 && len(msgs) > 1 {
		h := len(msgs) / 2
		if err := p.publish(ctx, msgs[:h]); err != nil {
			return err
		}
		return p.publish(ctx, msgs[h:])
	}
	for _, pos := range ps {
		if pos.Offset < 0 {
			break // in input order: none after the first not stored
		}
		fmt.Fprintf(p.out, "%d %d\n", pos.Partition, pos.Offset)
		p.acked++
	}
	if p.clear && p.prog != nil {
		p.prog.clear()
	}
	if ferr := p.out.Flush(); err == nil {
		err = ferr
	}
	if err != nil && p.acked > 0 {
		return fmt.Errorf("after %d messages published: %w", p.acked, err)
	}
	return err
}

// lines publishes each line of r (of size bytes, 0 when unknown) as a message,
// in batches.
func (p *publisher) lines(ctx context.Context, r io.Reader, size int64, o *pubOptions) error {
	br := bufio.NewReaderSize(r, pubReadBuffer)
	var batch []sluice.Message
	batchBytes, n := 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := p.publish(ctx, batch)
		batch, batchBytes = batch[:0], 0
		p.showProgress(size)
		return err
	}
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return errors.Join(flush(), err)
		}
		n++
		p.read += int64(len(line)) + 1
		batch = append(batch, o.message(line, n))
		batchBytes += len(line)
		// Send once the batch is full, or once the lines already read run out:
		// the next read may wait for a producer that is slow to write.
		if len(batch) == pubBatch || batchBytes >= pubBatchBytes || br.Buffered() == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

func (p *publisher) showProgress(size int64) {
	if size > 0 {
		p.prog.update(fmt.Sprintf("pub %s: %.0f%% of %s, %d messages, %s", p.stream,
			100*float64(min(p.read, size))/float64(size), humanBytes(size), p.acked, p.prog.rate(p.acked)))
		return
	}
	p.prog.update(fmt.Sprintf("pub %s: %d messages, %s", p.stream, p.acked, p.prog.rate(p.acked)))
}

// errLineTooLong is returned for a line longer than maxPubLine.
var errLineTooLong = fmt.Errorf("a line is longer than %d bytes, the largest message", maxPubLine)

// readLine returns the next line of br without its "\n" (or "\r\n"); the last
// line need not end with "\n". It returns io.EOF when no line is left.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxPubLine+2 {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		case err != nil:
			return nil, err
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		return line, nil
	}
}
