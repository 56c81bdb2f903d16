package sluice_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sluicemq/sluice"
)

// A consumer sends an email, then crashes before it acknowledges. The message
// comes back when its lease expires, and the ProcessedLog keeps the email from
// going out twice.
func ExampleProcessedLog() {
	dir, err := os.MkdirTemp("", "sluice-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	b, err := sluice.Open(filepath.Join(dir, "broker"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateStream(ctx, sluice.StreamConfig{Name: "emails"}); err != nil {
		log.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "emails", sluice.SubscriptionConfig{Name: "senders", Lease: 100 * time.Millisecond}); err != nil {
		log.Fatal(err)
	}
	_, err = b.Publish(ctx, "emails", sluice.Message{Key: []byte("user-42"), Body: []byte("welcome"), IdempotencyKey: "welcome/user-42"})
	if err != nil {
		log.Fatal(err)
	}

	// One ProcessedLog per handler, in a directory of its own.
	processed, err := sluice.OpenProcessedLog(filepath.Join(dir, "senders-processed"), sluice.ProcessedLogConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer processed.Close()
	c, err := b.NewConsumer(ctx, "emails", "senders", sluice.ConsumerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for attempt := 1; attempt <= 2; attempt++ {
		ds, err := c.Fetch(ctx, 1) // the second Fetch waits for the lease to expire
		if err != nil {
			log.Fatal(err)
		}
		d := ds[0]
		ran, err := processed.Process(ctx, sluice.MessageID(d.Record), func(ctx context.Context) error {
			fmt.Printf("delivery %d: sending %s to %s\n", d.Deliveries, d.Body, d.Key)
			return nil
		})
		if err != nil {
			c.Nack(ctx, d, sluice.NackOptions{Reason: err.Error()})
			continue
		}
		if !ran {
			fmt.Printf("delivery %d: %s already processed\n", d.Deliveries, sluice.MessageID(d.Record))
		}
		if attempt == 1 {
			fmt.Println("crash before the ack")
			continue
		}
		if err := c.Ack(ctx, d); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("delivery %d: acknowledged\n", d.Deliveries)
	}
	// Output:
	// delivery 1: sending welcome to user-42
	// crash before the ack
	// delivery 2: key:emails/welcome/user-42 already processed
	// delivery 2: acknowledged
}

// The effect and the record of the message commit in one transaction, so a crash
// anywhere leaves both or neither: exactly one effect per message. The table is
//
//	CREATE TABLE processed (id VARCHAR(512) PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)
//
// and db a *sql.DB opened with a PostgreSQL driver (pgx, lib/pq).
func ExampleSQLTxStore() {
	var db *sql.DB // sql.Open("pgx", os.Getenv("DATABASE_URL"))
	var c sluice.Consumer
	ctx := context.Background()

	store := sluice.SQLTxStore(db, `INSERT INTO processed (id) VALUES ($1) ON CONFLICT DO NOTHING`)
	for {
		ds, err := c.Fetch(ctx, 10)
		if err != nil {
			log.Fatal(err)
		}
		for _, d := range ds {
			_, err := store.Process(ctx, sluice.MessageID(d.Record), func(ctx context.Context, tx *sql.Tx) error {
				// The effect, in the same transaction as the claim.
				_, err := tx.ExecContext(ctx, `INSERT INTO invoices (customer, body) VALUES ($1, $2)`, string(d.Key), d.Body)
				return err
			})
			if err != nil {
				c.Nack(ctx, d, sluice.NackOptions{Reason: err.Error()})
				continue
			}
			c.Ack(ctx, d) // processed now or before: either way done
		}
	}
}

// A handler that is naturally idempotent needs no store: it sets a value (here,
// a customer's email address) instead of changing one, and only if the message
// carries a newer version than the one applied. A redelivered or late message
// then changes nothing, and applying a message twice equals applying it once.
func Example_naturallyIdempotent() {
	type profile struct {
		version int64
		email   string
	}
	profiles := map[string]profile{} // a table keyed by customer, in a real handler

	apply := func(d sluice.Delivery) {
		var version int64
		for _, h := range d.Headers {
			if h.Key == "version" {
				version, _ = strconv.ParseInt(string(h.Value), 10, 64)
			}
		}
		// UPDATE profiles SET email = $2, version = $3 WHERE id = $1 AND version < $3
		if cur, ok := profiles[string(d.Key)]; ok && cur.version >= version {
			fmt.Printf("version %d: not newer than %d, nothing to do\n", version, cur.version)
			return
		}
		profiles[string(d.Key)] = profile{version: version, email: string(d.Body)}
		fmt.Printf("version %d: email is %s\n", version, d.Body)
	}

	delivery := func(version int, email string, deliveries int) sluice.Delivery {
		return sluice.Delivery{
			Record: sluice.Record{Stream: "profiles", Key: []byte("customer-7"), Body: []byte(email),
				Headers: []sluice.Header{{Key: "version", Value: []byte(strconv.Itoa(version))}}},
			Deliveries: deliveries,
		}
	}
	apply(delivery(1, "ada@old.example", 1))
	apply(delivery(2, "ada@new.example", 1))
	apply(delivery(2, "ada@new.example", 2)) // redelivered: its ack was lost
	apply(delivery(1, "ada@old.example", 2)) // redelivered late, after version 2
	fmt.Println("final:", profiles["customer-7"].email)
	// Output:
	// version 1: email is ada@old.example
	// version 2: email is ada@new.example
	// version 2: not newer than 2, nothing to do
	// version 1: not newer than 2, nothing to do
	// final: ada@new.example
}
