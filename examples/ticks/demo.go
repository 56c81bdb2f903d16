package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/broker"
)

// series are the demo's ticks, five per symbol: ACME crosses 100 once, GLOBEX
// never reaches 52.
var series = map[string][]float64{
	"ACME":    {99.20, 99.60, 100.40, 100.10, 100.90},
	"GLOBEX":  {51.00, 50.60, 50.90, 51.30, 51.10},
	"INITECH": {12.10, 12.05, 12.20, 12.35, 12.30},
}

var symbols = []string{"ACME", "GLOBEX", "INITECH"}

// report is what the demo did, for its test.
type report struct {
	Stream, Subscription string
	// Published are the ticks in the order they were published; Screens what
	// each screen saw, in the order it saw them.
	Published []tick
	Screens   [][]tick
	Alerts    []alert
}

// demo publishes the series with two screens and the alert evaluator running,
// and waits until every screen has seen every tick and the evaluator has
// evaluated each.
func demo(ctx context.Context, cli sluice.Client, out io.Writer) (report, error) {
	say := log.New(out, "", 0)
	m := market{stream: broker.DemoName("ticks"), alerts: "alerts"}
	rep := report{Stream: m.stream, Subscription: m.alerts}
	if err := m.create(ctx, cli); err != nil {
		return rep, err
	}
	for round := range series[symbols[0]] {
		for _, sym := range symbols {
			rep.Published = append(rep.Published, tick{Symbol: sym, Price: series[sym][round]})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Two screens, each reading until it has shown every tick.
	rep.Screens = make([][]tick, 2)
	screens := make(chan error, len(rep.Screens))
	for i := range rep.Screens {
		r, err := openScreen(ctx, cli, m.stream)
		if err != nil {
			return rep, err
		}
		go func() {
			defer r.Close()
			screens <- follow(ctx, r, len(rep.Published), func(t tick) { rep.Screens[i] = append(rep.Screens[i], t) })
		}()
	}

	// The alert evaluator.
	var mu sync.Mutex
	a := newAlerter(rules, func(al alert) {
		mu.Lock()
		rep.Alerts = append(rep.Alerts, al)
		mu.Unlock()
		say.Printf("ALERT %s", al)
	})
	w, err := sluice.NewWorker(cli, m.stream, m.alerts, a.handle, sluice.WorkerConfig{Name: "alerter", Concurrency: 4})
	if err != nil {
		return rep, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	worked := make(chan error, 1)
	go func() { worked <- w.Run(wctx) }()

	say.Printf("publishing %d ticks to %s (4 partitions, keyed by symbol):", len(rep.Published), m.stream)
	for _, sym := range symbols {
		say.Printf("  %-8s %s", sym, prices(series[sym]))
	}
	for _, t := range rep.Published {
		if _, err := publish(ctx, cli, m.stream, t); err != nil {
			return rep, err
		}
	}

	for range rep.Screens {
		if err := <-screens; err != nil {
			return rep, fmt.Errorf("screen: %w", err)
		}
	}
	for i, seen := range rep.Screens {
		last := map[string]float64{}
		for _, t := range seen {
			last[t.Symbol] = t.Price
		}
		say.Printf("screen-%d saw %d ticks; last prices %s", i+1, len(seen), lastPrices(last))
	}
	err = broker.WaitSettled(ctx, cli, m.stream, m.alerts, worked)
	stop()
	if werr := <-worked; err == nil {
		err = werr
	}
	mu.Lock()
	defer mu.Unlock()
	say.Printf("alerter evaluated every tick: %d alert(s)", len(rep.Alerts))
	return rep, err
}

func prices(ps []float64) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprintf("%.2f", p)
	}
	return strings.Join(s, " ")
}

func lastPrices(last map[string]float64) string {
	s := make([]string, 0, len(symbols))
	for _, sym := range symbols {
		s = append(s, fmt.Sprintf("%s %.2f", sym, last[sym]))
	}
	return strings.Join(s, ", ")
}
