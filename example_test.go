package sluice_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/sluicemq/sluice"
)

// A producer publishes, the broker restarts, and a reader reads everything back.
func Example() {
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
	if _, err := b.CreateStream(ctx, sluice.StreamConfig{Name: "emails"}); err != nil {
		log.Fatal(err)
	}
	for _, to := range []string{"ada@example.com", "grace@example.com"} {
		// Publish returns once the message is on disk (fdatasync).
		pos, err := b.Publish(ctx, "emails", sluice.Message{Key: []byte(to), Body: []byte("welcome")})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("stored at partition %d offset %d\n", pos.Partition, pos.Offset)
	}
	b.Close()

	// After a restart (or a crash) every acknowledged message is still there.
	b, err = sluice.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	r, err := b.NewReader(ctx, "emails", sluice.ReaderConfig{Start: sluice.Earliest()})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for range 2 {
		rec, err := r.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d: %s -> %s\n", rec.Offset, rec.Key, rec.Body)
	}
	// Output:
	// stored at partition 0 offset 0
	// stored at partition 0 offset 1
	// 0: ada@example.com -> welcome
	// 1: grace@example.com -> welcome
}
