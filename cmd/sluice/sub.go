package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/sluicemq/sluice"
)

const subHelp = `sluice sub NAME --subscription SUB [flags]

Consumes messages of a subscription of stream NAME, creating the subscription
if it does not exist (with --mode and --max-deliveries), and prints each body
on its own line, or with --json one JSON object per message. Each message is
acknowledged once printed, or with --nack reported as failed: it is retried
after the subscription's backoff, and dead-lettered after --max-deliveries.

sub ends after --count messages, or once no message has come for --timeout,
or on Ctrl-C; without either it follows the stream. It leases only what it
still needs: with --count 1 one message.

examples:
  sluice sub orders --subscription billing --count 10
  sluice sub orders --subscription billing --timeout 5s --json
  sluice sub orders --subscription audit --mode key_ordered
  sluice sub orders --subscription billing --max-deliveries 1 --nack --count 1   # dead-letter one message`

// subFetch is the most messages one fetch asks for.
const subFetch = 100

// settleTimeout bounds one ack or nack.
const settleTimeout = 30 * time.Second

// runSub consumes a subscription and prints what it gets.
func runSub(args []string) error {
	c := newCommand("sub", subHelp)
	subName := c.fs.String("subscription", "", "the subscription `SUB` (required); created if absent")
	mode := c.fs.String("mode", "", "for a new subscription: `queue` (default; any consumer, any order), key_ordered (in order per key) or partitioned (whole partitions per consumer)")
	maxDeliveries := c.fs.Int("max-deliveries", 0, "for a new subscription: deliveries of a message before it is dead-lettered, `N` (default 5)")
	count := c.fs.Int("count", 0, "end after `N` messages (default: no limit)")
	timeout := c.fs.Duration("timeout", 0, "end once no message has come for this `DURATION` (default: wait for ever)")
	nack := c.fs.Bool("nack", false, "report each message as failed instead of acknowledging it")
	asJSON := c.fs.Bool("json", false, "print one JSON object per message: partition, offset, key, headers, body, deliveries")
	consumer := c.fs.String("consumer", "", "consumer `NAME` in attempt histories and partitioned groups (default: the server's choice)")
	pos, err := c.parseArgs(args, "NAME")
	if err != nil {
		return err
	}
	if *subName == "" {
		return c.usageErr("missing --subscription SUB")
	}
	if *count < 0 || *timeout < 0 || *maxDeliveries < 0 {
		return c.usageErr("--count, --timeout and --max-deliveries cannot be negative")
	}
	cfg := sluice.SubscriptionConfig{Name: *subName, MaxDeliveries: *maxDeliveries}
	if *mode != "" {
		m, err := enumValue("mode", *mode, "queue", "key_ordered", "partitioned")
		if err != nil {
			return err
		}
		cfg.Mode = sluice.SubscriptionMode(m)
	}
	stream := pos[0]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := ensureSubscription(ctx, cl, stream, cfg); err != nil {
		return err
	}
	batch := subFetch
	if *count > 0 {
		batch = min(batch, *count)
	}
	cons, err := cl.NewConsumer(ctx, stream, *subName, sluice.ConsumerConfig{Name: *consumer, MaxInFlight: batch})
	if err != nil {
		return err
	}
	defer cons.Close()
	s := &subscriber{cons: cons, out: bufio.NewWriter(os.Stdout), json: *asJSON, nack: *nack}
	return s.run(ctx, *count, *timeout)
}

// ensureSubscription creates the subscription unless it exists; an existing
// one keeps its settings, and a flag that asked for others is warned about.
func ensureSubscription(ctx context.Context, cl sluice.Client, stream string, cfg sluice.SubscriptionConfig) error {
	info, err := cl.Subscription(ctx, stream, cfg.Name)
	if errors.Is(err, sluice.ErrSubscriptionNotFound) {
		_, err = cl.CreateSubscription(ctx, stream, cfg)
		if errors.Is(err, sluice.ErrSubscriptionExists) {
			return nil // created meanwhile by another consumer
		}
		if err != nil {
			return fmt.Errorf("create subscription %s: %w", cfg.Name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Mode != "" && cfg.Mode != info.Config.Mode {
		fmt.Fprintf(os.Stderr, "sluice sub: subscription %s exists with mode %s: --mode %s ignored\n", cfg.Name, info.Config.Mode, cfg.Mode)
	}
	if cfg.MaxDeliveries != 0 && cfg.MaxDeliveries != info.Config.MaxDeliveries {
		fmt.Fprintf(os.Stderr, "sluice sub: subscription %s exists with max deliveries %d: --max-deliveries %d ignored\n", cfg.Name, info.Config.MaxDeliveries, cfg.MaxDeliveries)
	}
	return nil
}

// subscriber prints and settles deliveries.
type subscriber struct {
	cons sluice.Consumer
	out  *bufio.Writer
	json bool
	nack bool
}

// run fetches until count messages were handled (0: no bound), no message came
// for timeout (0: no bound), or ctx ends. The last two are not errors.
func (s *subscriber) run(ctx context.Context, count int, timeout time.Duration) error {
	done := 0
	for count == 0 || done < count {
		want := subFetch
		if count > 0 {
			want = min(want, count-done) // lease no message it will not handle
		}
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			fctx, cancel = context.WithTimeout(ctx, timeout)
		}
		ds, err := s.cons.Fetch(fctx, want)
		timedOut := fctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			// Interrupted: what was fetched and not printed is redelivered once
			// its lease runs out.
			return nil
		}
		if err != nil && timedOut && len(ds) == 0 {
			return nil // nothing came for --timeout
		}
		if err != nil {
			return err
		}
		for _, d := range ds {
			if err := s.handle(ctx, d); err != nil {
				return err
			}
			done++
		}
	}
	return nil
}

// handle prints d, then settles it.
func (s *subscriber) handle(ctx context.Context, d sluice.Delivery) error {
	if s.json {
		if err := printJSONLine(s.out, jsonDelivery(d)); err != nil {
			return err
		}
	} else {
		s.out.Write(d.Body)
		s.out.WriteByte('\n')
	}
	if err := s.out.Flush(); err != nil {
		return fmt.Errorf("writing the message of partition %d offset %d: %w", d.Partition, d.Offset, err)
	}
	// Printed: settle it even if an interrupt came meanwhile.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var err error
	if s.nack {
		err = s.cons.Nack(sctx, d, sluice.NackOptions{Reason: "nacked with sluice sub --nack"})
	} else {
		err = s.cons.Ack(sctx, d)
	}
	if err != nil {
		return fmt.Errorf("settle partition %d offset %d: %w", d.Partition, d.Offset, err)
	}
	return nil
}

// deliveryJSON is a delivery as sub --json prints it.
type deliveryJSON struct {
	Stream    string `json:"stream"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	messageJSON
	Deliveries int `json:"deliveries"`
}

func jsonDelivery(d sluice.Delivery) deliveryJSON {
	return deliveryJSON{Stream: d.Stream, Partition: d.Partition, Offset: d.Offset,
		messageJSON: jsonMessage(d.Record), Deliveries: d.Deliveries}
}

// messageJSON is a message's time, key, headers and body as --json prints
// them, within a delivery or a dead letter. Key and body are strings when they
// are UTF-8, else base64 in key_base64 and body_base64.
type messageJSON struct {
	Time       time.Time         `json:"time"`
	Key        *string           `json:"key,omitempty"`
	KeyBase64  string            `json:"key_base64,omitempty"`
	Headers    map[string]string `json:"headers"`
	Body       *string           `json:"body,omitempty"`
	BodyBase64 string            `json:"body_base64,omitempty"`
}

func jsonMessage(r sluice.Record) messageJSON {
	out := messageJSON{Time: r.Time, Headers: map[string]string{}}
	if len(r.Key) > 0 {
		out.Key, out.KeyBase64 = textOrBase64(r.Key)
	}
	out.Body, out.BodyBase64 = textOrBase64(r.Body)
	for _, h := range r.Headers {
		out.Headers[h.Key] = string(h.Value)
	}
	return out
}

// textOrBase64 returns b as a string when it is valid UTF-8, else as base64.
func textOrBase64(b []byte) (*string, string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}
