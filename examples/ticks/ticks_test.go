package main

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDemo(t *testing.T) {
	testenv.Run(t, func(ctx context.Context, t *testing.T, cli sluice.Client) {
		rep, err := demo(ctx, cli, t.Output())
		if err != nil {
			t.Fatal(err)
		}
		// Each screen saw every tick once, and each symbol's ticks in the
		// order they were published (partitions interleave, symbols do not).
		for i, seen := range rep.Screens {
			if len(seen) != len(rep.Published) {
				t.Errorf("screen-%d saw %d ticks, want %d", i+1, len(seen), len(rep.Published))
			}
			for _, sym := range symbols {
				if got, want := pricesOf(seen, sym), series[sym]; !slices.Equal(got, want) {
					t.Errorf("screen-%d saw %s at %v, want %v", i+1, sym, got, want)
				}
			}
		}
		if len(rep.Alerts) != 1 {
			t.Fatalf("%d alerts, want 1: %v", len(rep.Alerts), rep.Alerts)
		}
		if a := rep.Alerts[0]; a.Rule.Symbol != "ACME" || a.From != 99.60 || a.To != 100.40 {
			t.Errorf("alert %v, want ACME rising from 99.60 to 100.40", a)
		}
		info, err := cli.Subscription(ctx, rep.Stream, rep.Subscription)
		if err != nil {
			t.Fatal(err)
		}
		if info.Backlog != 0 || info.DeadLettered != 0 {
			t.Errorf("alerts subscription: backlog %d, dead-lettered %d; want 0 and 0", info.Backlog, info.DeadLettered)
		}
	})
}

// TestAlerter checks the crossing rule on its own: only a rise from below the
// threshold to it or above fires, and a repeated tick fires nothing again.
func TestAlerter(t *testing.T) {
	var fired []float64
	a := newAlerter([]rule{{"ACME", 100}}, func(al alert) { fired = append(fired, al.To) })
	for i, p := range []float64{101, 99, 100, 100, 99.5, 102, 102, 98} {
		d := sluice.Delivery{Record: sluice.Record{Offset: int64(i), Body: []byte(fmt.Sprintf(`{"symbol": "ACME", "price": %v}`, p))}}
		if err := a.handle(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	// 101 is the first price seen: nothing to cross from.
	if want := []float64{100, 102}; !slices.Equal(fired, want) {
		t.Errorf("fired at %v, want %v", fired, want)
	}
}

func pricesOf(ts []tick, sym string) []float64 {
	var out []float64
	for _, t := range ts {
		if t.Symbol == sym {
			out = append(out, t.Price)
		}
	}
	return out
}
