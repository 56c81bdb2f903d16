package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
)

// A worker sends emails: ten at a time, each lease extended while its send runs,
// a failed send retried, a bad address dead-lettered at once.
func ExampleWorker() {
	dir, err := os.MkdirTemp("", "sluice-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b, err := sluice.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	b.CreateStream(ctx, sluice.StreamConfig{Name: "emails", Retention: sluice.Retention{Policy: sluice.RetainWork}})
	b.CreateSubscription(ctx, "emails", sluice.SubscriptionConfig{Name: "senders"})
	for _, to := range []string{"ada@example.com", "grace@example.com", "not-an-address"} {
		b.Publish(ctx, "emails", sluice.Message{Body: []byte(to), IdempotencyKey: "welcome/" + to})
	}

	var mu sync.Mutex
	var sent []string
	w, err := sluice.NewWorker(b, "emails", "senders", func(ctx context.Context, d sluice.Delivery) error {
		to := string(d.Body)
		if to == "not-an-address" {
			return sluice.Permanent(errors.New("no @ in address")) // straight to the dead letters
		}
		mu.Lock()
		sent = append(sent, to)
		mu.Unlock()
		return nil // acknowledged
	}, sluice.WorkerConfig{Concurrency: 10})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	for {
		info, _ := b.Subscription(ctx, "emails", "senders")
		if info.Backlog == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop() // finishes what runs, hands back what does not finish in StopTimeout
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	sort.Strings(sent)
	fmt.Println("sent:", sent)
	dls, _, _ := b.DeadLetters(ctx, "emails", "senders", sluice.DeadLetterQuery{})
	fmt.Printf("dead letter: %s (%s)\n", dls[0].Message.Body, dls[0].Attempts[0].Error)
	// Output:
	// sent: [ada@example.com grace@example.com]
	// dead letter: not-an-address (permanent: no @ in address)
}
