package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice"
)

// Workload shape.
const (
	streamName    = "torture"
	partitions    = 4
	maxDeliveries = 5
	lease         = 3 * time.Second
	keysPerProd   = 8
	// poisonEvery: one message in poisonEvery is poison, up to poisonPerProd
	// per producer, so that the dead-letter stream stays small in long runs.
	poisonEvery   = 97
	poisonPerProd = 40
	// publishTimeout and settleTimeout bound one attempt; the driver retries.
	publishTimeout = 5 * time.Second
	settleTimeout  = 5 * time.Second
	fetchTimeout   = 2 * time.Second
	fetchMax       = 64
)

// subscriptions are the subscriptions of the stream, each with its consumer
// count.
var subscriptions = []struct {
	spec      subSpec
	mode      sluice.SubscriptionMode
	consumers int
}{
	{subSpec{"queue", kindQueue}, sluice.QueueMode, 2},
	{subSpec{"keyed", kindKeyed}, sluice.KeyOrderedMode, 2},
	{subSpec{"group", kindPartitioned}, sluice.PartitionedMode, 2},
	{subSpec{"fan-a", kindQueue}, sluice.QueueMode, 1},
	{subSpec{"fan-b", kindQueue}, sluice.QueueMode, 1},
}

func subSpecs() []subSpec {
	out := make([]subSpec, len(subscriptions))
	for i, s := range subscriptions {
		out[i] = s.spec
	}
	return out
}

// setupStream creates the stream and its subscriptions.
func setupStream(ctx context.Context, c sluice.Client) error {
	_, err := c.CreateStream(ctx, sluice.StreamConfig{Name: streamName, Partitions: partitions, DedupeWindow: 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("create stream: %w", err)
	}
	for _, s := range subscriptions {
		_, err := c.CreateSubscription(ctx, streamName, sluice.SubscriptionConfig{
			Name: s.spec.name, Mode: s.mode, Lease: lease, MaxDeliveries: maxDeliveries,
			BackoffInitial: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
			Session: 3 * time.Second,
		})
		if err != nil {
			return fmt.Errorf("create subscription %s: %w", s.spec.name, err)
		}
	}
	return nil
}

// counters are live figures for the progress lines.
type counters struct {
	published, acked, deliveries, publishErrors, fetchErrors atomic.Int64
}

// producer publishes until stop ends, then finishes the message in progress
// until hard ends. Each message is published until it succeeds, with the same
// IdempotencyKey, so that its outcome is known and it is stored once.
func producer(stop, hard context.Context, c sluice.Client, chk *Checker, n *counters, seed uint64, fatal func(error)) {
	rng := rand.New(rand.NewPCG(seed, 7))
	keys := make([]int32, keysPerProd)
	for i := range keys {
		keys[i] = chk.NewKey()
	}
	poison := 0
	for i := 0; stop.Err() == nil; i++ {
		key, isPoison := int32(-1), false
		switch {
		case i%poisonEvery == poisonEvery-1 && poison < poisonPerProd:
			key, isPoison = chk.NewKey(), true
			poison++
		case rng.IntN(4) == 0: // no key
		default:
			key = keys[rng.IntN(len(keys))]
		}
		id, _ := chk.NewMessage(key, isPoison)
		msg := sluice.Message{Body: body(id), IdempotencyKey: "t" + strconv.FormatInt(id, 10)}
		if key >= 0 {
			msg.Key = []byte("k" + strconv.Itoa(int(key)))
		}
		n.published.Add(1)
		backoff := 20 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(hard, publishTimeout)
			pos, err := c.Publish(ctx, streamName, msg)
			cancel()
			if err == nil {
				chk.Published(id, pos)
				n.acked.Add(1)
				break
			}
			var inv *sluice.InvalidError
			if errors.As(err, &inv) {
				fatal(fmt.Errorf("publish: %w", err))
				return
			}
			n.publishErrors.Add(1)
			if hard.Err() != nil {
				return // the message stays "maybe"
			}
			select {
			case <-time.After(backoff):
			case <-hard.Done():
				return
			}
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
}

// consume fetches from sub as its consumer k until ctx ends: poison messages are Nacked,
// the others acknowledged at once.
func consume(ctx context.Context, con sluice.Consumer, sub, k int, chk *Checker, n *counters) {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		ds, err := con.Fetch(fctx, fetchMax)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				n.fetchErrors.Add(1)
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			continue
		}
		n.deliveries.Add(int64(len(ds)))
		cds := make([]Delivery, len(ds))
		for i, d := range ds {
			cds[i] = Delivery{Partition: d.Partition, Offset: d.Offset, Deliveries: d.Deliveries, Body: d.Body,
				Lease: d.Lease, Deadline: d.Deadline}
		}
		ids, poison := chk.Delivered(sub, k, cds)
		var acks []sluice.Delivery
		var ackIDs []int64
		var ackDs []Delivery
		for i, d := range ds {
			if poison[i] {
				sctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
				_ = con.Nack(sctx, d, sluice.NackOptions{Reason: "poison"})
				cancel()
				continue
			}
			acks = append(acks, d)
			ackIDs = append(ackIDs, ids[i])
			ackDs = append(ackDs, cds[i])
		}
		if len(acks) == 0 {
			continue
		}
		// A bad body (id -1) is acknowledged without being tracked.
		var tracked []int64
		for _, id := range ackIDs {
			if id >= 0 {
				tracked = append(tracked, id)
			}
		}
		chk.AckStarted(sub, tracked)
		sent := time.Now()
		sctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		errs := con.AckMany(sctx, acks)
		cancel()
		for i, id := range ackIDs {
			if id >= 0 {
				chk.AckDone(sub, k, id, ackDs[i], sent.Before(acks[i].Deadline), errs[i])
			}
		}
	}
}
