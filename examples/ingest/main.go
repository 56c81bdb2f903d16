// Command ingest takes in sensor readings through a partitioned stream and
// consumes them with a consumer group:
//
//   - The stream has 8 partitions; a reading's key is its device, so one
//     device's readings are in one partition, in the order they were sent.
//   - A partitioned subscription assigns the partitions to the members of its
//     group: each member reads its partitions in order, and when a member
//     leaves, its partitions move to the others, which resume where it stopped.
//   - The sink keeps each device's newest reading and skips one no newer than
//     it holds, so a reading delivered twice (around a move) is applied once.
//
// Run it:
//
//	go run ./examples/ingest --demo   # two batches, a member leaving in between, then exit
//	go run ./examples/ingest          # readings every second until Ctrl-C
//
// With --server 127.0.0.1:7070 (or SLUICE_SERVER) it runs against sluice serve
// instead of a broker embedded in the program.
package main

import (
	"context"
	"flag"
	"fmt"
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
	every := flag.Duration("every", time.Second, "how often each device sends a reading")
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

// live sends a reading from every device each period, with three members
// consuming, until ctx ends.
func live(ctx context.Context, cli sluice.Client, every time.Duration) error {
	p := pipeline{stream: "readings", sub: "indexer"}
	if err := p.create(ctx, cli); err != nil {
		return err
	}
	say := log.New(os.Stdout, "", log.Ltime)
	s := newSink(func(member string, d sluice.Delivery, r reading) {
		say.Printf("%s  partition %d offset %-5d %s %5.1f °C", member, d.Partition, d.Offset, r.Device, r.Celsius)
	})
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// A member returns nil when ctx ends, an error before.
	errc := make(chan error, 3)
	for i := range 3 {
		wg.Go(func() {
			if err := p.member(ctx, cli, fmt.Sprintf("member-%d", i+1), s); err != nil {
				errc <- err
			}
		})
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			// Seq is the time: it grows across runs too.
			seq := now.UnixMilli()
			msgs := make([]sluice.Message, 0, len(devices))
			for _, dev := range devices {
				msgs = append(msgs, reading{Device: dev, Seq: seq, Celsius: 18 + 6*rand.Float64()}.message())
			}
			if _, err := cli.PublishBatch(ctx, p.stream, msgs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}
