package sluice

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDeliveryGuaranteeConfig: the default is at_least_once, shown in the info
// and kept across a reopen, as an explicit at_most_once is; a config written
// before the field existed opens as at_least_once; an unknown value is refused,
// naming the field.
func TestDeliveryGuaranteeConfig(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s"})
	for _, tc := range []struct {
		name string
		set  DeliveryGuarantee
		want DeliveryGuarantee
	}{
		{"plain", "", AtLeastOnce},
		{"least", AtLeastOnce, AtLeastOnce},
		{"most", AtMostOnce, AtMostOnce},
	} {
		info, err := f.b.CreateSubscription(f.ctx, "s", SubscriptionConfig{Name: tc.name, Delivery: tc.set})
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Delivery != tc.want {
			t.Errorf("%s: created with delivery %q, want %q", tc.name, info.Config.Delivery, tc.want)
		}
	}
	_, err := f.b.CreateSubscription(f.ctx, "s", SubscriptionConfig{Name: "bad", Delivery: "exactly_once"})
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Field != "SubscriptionConfig.Delivery" {
		t.Fatalf("delivery exactly_once: %v, want an *InvalidError naming SubscriptionConfig.Delivery", err)
	}

	// "plain" as an older version wrote it: no delivery field at all.
	path := filepath.Join(f.dir, "streams", "s", subsDir, "plain", subFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "delivery")
	if data, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	for name, want := range map[string]DeliveryGuarantee{"plain": AtLeastOnce, "least": AtLeastOnce, "most": AtMostOnce} {
		info, err := f.b.Subscription(f.ctx, "s", name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Delivery != want {
			t.Errorf("%s after reopen: delivery %q, want %q", name, info.Config.Delivery, want)
		}
	}
}

// TestAtMostOnceConsumer: deliveries come without a lease; Ack is a no-op that
// returns nil, Nack, Term and Extend fail with an *InvalidError naming
// SubscriptionConfig.Delivery; none of them brings a message back, and neither
// does a lease's worth of time or a reopen.
func TestAtMostOnceConsumer(t *testing.T) {
	dir := t.TempDir()
	clk := &testClock{t: time.UnixMilli(1_700_000_000_000)}
	b := openWithClock(t, dir, clk)
	defer func() { b.Close() }()
	ctx := t.Context()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "s", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "s", SubscriptionConfig{Name: "amo", Delivery: AtMostOnce, Lease: time.Second}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	for i := range n {
		if _, err := b.Publish(ctx, "s", Message{Key: []byte(fmt.Sprint(i)), Body: []byte(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, "s", "amo", ConsumerConfig{MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	var held []Delivery
	// MaxInFlight 1 bounds each Fetch, not the total: nothing stays in flight.
	for len(held) < n/2 {
		ds := fetchSoon(t, c, n/2-len(held))
		if len(ds) == 0 {
			t.Fatalf("nothing to fetch after %d", len(held))
		}
		held = append(held, ds...)
	}
	for _, d := range held {
		got[string(d.Body)]++
		if d.Lease != 0 || !d.Deadline.IsZero() || d.Deliveries != 1 {
			t.Fatalf("at_most_once delivery %s: lease %d, deadline %v, deliveries %d", d.Body, d.Lease, d.Deadline, d.Deliveries)
		}
	}
	if info, _ := b.Subscription(ctx, "s", "amo"); info.InFlight != 0 {
		t.Fatalf("in flight %d after at_most_once fetches", info.InFlight)
	}
	for _, d := range held {
		for _, op := range []struct {
			name string
			do   func() error
		}{
			{"nack", func() error { return c.Nack(ctx, d, NackOptions{Reason: "x"}) }},
			{"term", func() error { return c.Term(ctx, d, "x") }},
			{"extend", func() error { _, err := c.Extend(ctx, d, time.Minute); return err }},
		} {
			err := op.do()
			var ie *InvalidError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &ie) || ie.Field != "SubscriptionConfig.Delivery" {
				t.Fatalf("%s of an at_most_once delivery: %v, want an *InvalidError naming SubscriptionConfig.Delivery", op.name, err)
			}
		}
		if err := c.Ack(ctx, d); err != nil {
			t.Fatalf("ack of an at_most_once delivery: %v, want nil", err)
		}
	}
	clk.advance(time.Minute) // many leases' worth
	for _, d := range fetchSoon(t, c, n) {
		got[string(d.Body)]++
	}
	b.Close()
	b = openWithClock(t, dir, clk)
	c, err = b.NewConsumer(ctx, "s", "amo", ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fetchSoon(t, c, n) {
		got[string(d.Body)]++
	}
	for i := range n {
		if k := got[fmt.Sprint("m", i)]; k != 1 {
			t.Errorf("m%d handed out %d times, want once", i, k)
		}
	}
	info, err := b.Subscription(ctx, "s", "amo")
	if err != nil || info.Backlog != 0 || info.DeadLettered != 0 {
		t.Fatalf("after handing out everything: %+v, %v", info, err)
	}
}
