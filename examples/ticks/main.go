// Command ticks publishes price ticks to a stream and consumes them two ways:
//
//   - Screens follow the stream live (SubscribeLive): every screen sees every
//     tick, the broker keeps no state for them, and a screen that was away has
//     simply missed what it did not see.
//   - An alert evaluator reads a durable subscription with a Worker: it sees
//     every tick even if it was down when the tick came, and fires an alert when
//     a price crosses a threshold.
//
// Run it:
//
//	go run ./examples/ticks --demo   # a fixed series of ticks once, then exit
//	go run ./examples/ticks          # random ticks until Ctrl-C
//
// With --server 127.0.0.1:7070 (or SLUICE_SERVER) it runs against sluice serve
// instead of a broker embedded in the program.
package main

import (
	"context"
	"flag"
	"log"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/broker"
)

func main() {
	bf := broker.AddFlags(flag.CommandLine)
	every := flag.Duration("every", 500*time.Millisecond, "how often each symbol ticks")
	flag.Parse()

	err := bf.Run(func(ctx context.Context, cli sluice.Client) error {
		if bf.Demo {
			_, err := demo(ctx, cli, os.Stdout)
			return err
		}
		return live(ctx, cli, *every)
	})
	if err != nil {
		log.Fatal(err)
	}
}

// live publishes random ticks until ctx ends, with two screens and the alert
// evaluator running.
func live(ctx context.Context, cli sluice.Client, every time.Duration) error {
	names := market{stream: "ticks", alerts: "alerts"}
	if err := names.create(ctx, cli); err != nil {
		return err
	}
	say := log.New(os.Stdout, "", log.Ltime)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // the worker settles what it handled before the client closes
	}()
	// The screens and the worker return nil when ctx ends, an error before.
	errc := make(chan error, 3)
	start := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				errc <- err
			}
		})
	}
	for _, name := range []string{"screen-1", "screen-2"} {
		r, err := openScreen(ctx, cli, names.stream)
		if err != nil {
			return err
		}
		start(func() error {
			defer r.Close()
			return follow(ctx, r, -1, func(t tick) { say.Printf("%s  %-8s %8.2f", name, t.Symbol, t.Price) })
		})
	}
	a := newAlerter(rules, func(al alert) { say.Printf("ALERT %s", al) })
	w, err := sluice.NewWorker(cli, names.stream, names.alerts, a.handle, sluice.WorkerConfig{Name: "alerter", Concurrency: 4})
	if err != nil {
		return err
	}
	start(func() error { return w.Run(ctx) })

	prices := map[string]float64{"ACME": 99, "GLOBEX": 51, "INITECH": 12}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for sym, p := range prices {
				p *= 1 + (rand.Float64()-0.5)/100 // a random walk, ±0.5 %
				prices[sym] = p
				if _, err := publish(ctx, cli, names.stream, tick{Symbol: sym, Price: p}); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}
