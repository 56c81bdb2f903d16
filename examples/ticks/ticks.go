package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
)

// tick is one price: the body of a message, keyed by its symbol, so that one
// symbol's ticks stay in one partition, in order.
type tick struct {
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
}

// market names the stream of ticks and the alert evaluator's subscription.
type market struct{ stream, alerts string }

// create creates the stream and the subscription unless they exist.
func (m market) create(ctx context.Context, cli sluice.Client) error {
	// A log, not a work queue: ticks stay for an hour whoever has read them.
	_, err := cli.CreateStream(ctx, sluice.StreamConfig{
		Name:       m.stream,
		Partitions: 4,
		Retention:  sluice.Retention{MaxAge: time.Hour},
	})
	if err != nil && !errors.Is(err, sluice.ErrStreamExists) {
		return err
	}
	// KeyOrderedMode hands out one symbol's ticks one at a time, in order, so
	// that the evaluator sees a price cross its threshold in the order it did.
	_, err = cli.CreateSubscription(ctx, m.stream, sluice.SubscriptionConfig{Name: m.alerts, Mode: sluice.KeyOrderedMode})
	if err != nil && !errors.Is(err, sluice.ErrSubscriptionExists) {
		return err
	}
	return nil
}

func publish(ctx context.Context, cli sluice.Client, stream string, t tick) (sluice.Position, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return sluice.Position{}, err
	}
	return cli.Publish(ctx, stream, sluice.Message{Key: []byte(t.Symbol), Body: body})
}

// openScreen opens a live subscription to every partition of stream, from now
// on. It starts at the time it opens rather than at Latest(): over the network
// a live subscription attaches a moment after the call returns, and Latest()
// would be reckoned then, missing what was published in between. (A message's
// time is the broker's clock in milliseconds, so "now" is too; this assumes the
// two clocks agree.)
func openScreen(ctx context.Context, cli sluice.Client, stream string) (sluice.Reader, error) {
	from := sluice.AtTime(time.Now().Truncate(time.Millisecond))
	return cli.SubscribeLive(ctx, stream, sluice.LiveConfig{Start: &from})
}

// follow reads ticks from r and shows each, until it has shown n (n < 0: until
// ctx ends). It returns nil when ctx ends.
func follow(ctx context.Context, r sluice.Reader, n int, show func(tick)) error {
	for i := 0; n < 0 || i < n; i++ {
		rec, err := r.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var t tick
		if err := json.Unmarshal(rec.Body, &t); err != nil {
			return fmt.Errorf("partition %d offset %d: %w", rec.Partition, rec.Offset, err)
		}
		show(t)
	}
	return nil
}

// rule is an alert threshold.
type rule struct {
	Symbol string
	Above  float64
}

// rules are the thresholds the evaluator watches.
var rules = []rule{{"ACME", 100}, {"GLOBEX", 52}}

// alert is a price that crossed its rule's threshold.
type alert struct {
	Rule      rule
	From, To  float64
	Partition int
	Offset    int64
}

func (a alert) String() string {
	return fmt.Sprintf("%s rose above %.2f: %.2f → %.2f (partition %d, offset %d)",
		a.Rule.Symbol, a.Rule.Above, a.From, a.To, a.Partition, a.Offset)
}

// alerter evaluates the rules against each tick. It keeps the last price of
// each symbol in memory: after a restart it needs one tick per symbol before it
// can see a crossing again. (A real one would keep it with its alerts.)
type alerter struct {
	rules map[string]rule
	fire  func(alert)

	mu   sync.Mutex
	last map[string]float64
}

func newAlerter(rs []rule, fire func(alert)) *alerter {
	a := &alerter{rules: map[string]rule{}, fire: fire, last: map[string]float64{}}
	for _, r := range rs {
		a.rules[r.Symbol] = r
	}
	return a
}

// handle is the Worker's handler. A redelivered tick (its ack was lost) finds
// the last price already at its own and fires nothing again.
func (a *alerter) handle(ctx context.Context, d sluice.Delivery) error {
	var t tick
	if err := json.Unmarshal(d.Body, &t); err != nil {
		return sluice.Permanent(err)
	}
	a.mu.Lock()
	prev, known := a.last[t.Symbol]
	a.last[t.Symbol] = t.Price
	a.mu.Unlock()
	if r, ok := a.rules[t.Symbol]; ok && known && prev < r.Above && t.Price >= r.Above {
		a.fire(alert{Rule: r, From: prev, To: t.Price, Partition: d.Partition, Offset: d.Offset})
	}
	return nil
}
