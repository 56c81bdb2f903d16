// Command email is a web service that queues emails, and a worker that sends
// them, on one sluice stream:
//
//   - POST /emails stores the job and answers 202 Accepted at once, before the
//     email is sent. An Idempotency-Key header (or an "id" field) makes a
//     retried request store nothing new.
//   - A Worker sends each job through a ProcessedLog, so that a job delivered
//     again after it was sent (its worker died before acknowledging it) is not
//     sent twice.
//   - A job that keeps failing is retried with backoff, then moved to the
//     subscription's dead-letter stream with the history of its attempts.
//
// Run it:
//
//	go run ./examples/email --demo   # the whole story once, then exit
//	go run ./examples/email          # serve on 127.0.0.1:8080 until Ctrl-C
//
//	curl -i -H 'Idempotency-Key: welcome-ada' \
//	  -d '{"to": "ada@example.com", "subject": "Welcome"}' http://127.0.0.1:8080/emails
//
// With --server 127.0.0.1:7070 (or SLUICE_SERVER) it runs against sluice serve
// instead of a broker embedded in the program.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/broker"
)

func main() {
	bf := broker.AddFlags(flag.CommandLine)
	listen := flag.String("listen", "127.0.0.1:8080", "the HTTP address of the service")
	processed := flag.String("processed", "", "the directory of the record of sent emails (default: a temporary one)")
	flag.Parse()

	err := bf.Run(func(ctx context.Context, cli sluice.Client) error {
		dir, removeDir, err := processedDir(*processed)
		if err != nil {
			return err
		}
		if bf.Demo {
			_, err = demo(ctx, cli, dir, os.Stdout)
		} else {
			err = serve(ctx, cli, *listen, dir)
		}
		return errors.Join(err, removeDir())
	})
	if err != nil {
		log.Fatal(err)
	}
}

// processedDir returns dir, or a temporary directory and the function that
// removes it.
func processedDir(dir string) (string, func() error, error) {
	if dir != "" {
		return dir, func() error { return nil }, nil
	}
	dir, err := os.MkdirTemp("", "sluice-email-processed-")
	return dir, func() error { return os.RemoveAll(dir) }, err
}

// serve runs the service on listen and a worker until ctx ends.
func serve(ctx context.Context, cli sluice.Client, listen, dir string) error {
	q := queue{stream: "emails", sub: "senders"}
	// The defaults: a 30 s lease (the worker extends it while it sends), 5
	// deliveries, a backoff from 1 s to 5 min.
	if err := q.create(ctx, cli, sluice.SubscriptionConfig{Name: q.sub}); err != nil {
		return err
	}
	seen, err := sluice.OpenProcessedLog(dir, sluice.ProcessedLogConfig{})
	if err != nil {
		return err
	}
	defer seen.Close()
	say := log.New(os.Stdout, "", log.Ltime)
	s := &sender{p: newProvider(say), seen: seen, say: say}
	w, err := sluice.NewWorker(cli, q.stream, q.sub, s.handle, sluice.WorkerConfig{Concurrency: 10})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	worked := make(chan error, 1)
	go func() { worked <- w.Run(ctx) }()
	hs := &http.Server{Addr: listen, Handler: newService(cli, q.stream, say), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.ListenAndServe() }()
	say.Printf("POST http://%s/emails; Ctrl-C stops", listen)

	var werr error
	select {
	case err = <-served:
	case werr = <-worked: // a worker stops before ctx ends only when it fails
		worked = nil
	case <-ctx.Done():
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if serr := hs.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if worked != nil {
		werr = <-worked
	}
	if werr != nil {
		werr = fmt.Errorf("worker: %w", werr)
	}
	return errors.Join(err, werr)
}
