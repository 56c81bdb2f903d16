package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/broker"
)

// The demo's settings are short so that it ends within seconds: a lease of
// half a second (a crashed worker's job comes back that soon) and three
// deliveries, retried after 100 ms, then 200 ms.
var demoSubscription = sluice.SubscriptionConfig{
	Name:           "senders",
	Lease:          500 * time.Millisecond,
	MaxDeliveries:  3,
	BackoffInitial: 100 * time.Millisecond,
	BackoffMax:     time.Second,
}

// report is what the demo did, for its test.
type report struct {
	Stream, Subscription string
	// Statuses are the HTTP statuses of the requests, in order.
	Statuses []int
	// Sent counts the sends of each job, by ID; Skipped counts the deliveries
	// of a job already sent.
	Sent    map[string]int
	Skipped int64
}

// demo runs the service and a worker against cli: four requests (one a retry
// of another, one for a bad address), a worker that dies after sending a job,
// the job sent once all the same, and the bad one dead-lettered. dir holds the
// record of sent jobs.
func demo(ctx context.Context, cli sluice.Client, dir string, out io.Writer) (report, error) {
	say := log.New(out, "", 0)
	q := queue{stream: broker.DemoName("emails"), sub: demoSubscription.Name}
	rep := report{Stream: q.stream, Subscription: q.sub}
	if err := q.create(ctx, cli, demoSubscription); err != nil {
		return rep, err
	}
	say.Printf("stream %s, subscription %s", q.stream, q.sub)

	// The service, on a port of its own.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rep, err
	}
	hs := &http.Server{Handler: newService(cli, q.stream, say), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	requests := []struct{ key, body string }{
		{"welcome-ada", `{"to": "ada@example.com", "subject": "Welcome"}`},
		{"welcome-grace", `{"to": "grace@example.com", "subject": "Welcome"}`},
		// The client retries: it never saw the answer to the first try.
		{"welcome-grace", `{"to": "grace@example.com", "subject": "Welcome"}`},
		// The key may come in the body too.
		{"", `{"id": "welcome-nobody", "to": "nobody@example.invalid", "subject": "Welcome"}`},
	}
	for _, r := range requests {
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+ln.Addr().String()+"/emails", strings.NewReader(r.body))
		if err != nil {
			return rep, err
		}
		if r.key != "" {
			req.Header.Set("Idempotency-Key", r.key)
		}
		res, err := hc.Do(req)
		if err != nil {
			return rep, err
		}
		answer, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return rep, err
		}
		rep.Statuses = append(rep.Statuses, res.StatusCode)
		say.Printf("POST /emails → %s %s", res.Status, strings.TrimSpace(string(answer)))
	}

	seen, err := sluice.OpenProcessedLog(dir, sluice.ProcessedLogConfig{})
	if err != nil {
		return rep, err
	}
	defer seen.Close()
	p := newProvider(say)
	s := &sender{p: p, seen: seen, say: say}

	// A first worker takes a job, sends it, and dies before acknowledging it.
	// The broker cannot tell this from a worker that died before sending: when
	// the lease runs out, it delivers the job again.
	crashed, err := cli.NewConsumer(ctx, q.stream, q.sub, sluice.ConsumerConfig{Name: "worker-0"})
	if err != nil {
		return rep, err
	}
	ds, err := crashed.Fetch(ctx, 1)
	if err != nil {
		return rep, err
	}
	if err := s.handle(ctx, ds[0]); err != nil {
		return rep, err
	}
	crashed.Close() // without an Ack
	say.Printf("worker-0 dies before acknowledging; its lease ends in %v", demoSubscription.Lease)

	// The worker that stays up.
	w, err := sluice.NewWorker(cli, q.stream, q.sub, s.handle, sluice.WorkerConfig{Name: "worker-1", Concurrency: 4})
	if err != nil {
		return rep, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	worked := make(chan error, 1)
	go func() { worked <- w.Run(wctx) }()
	err = broker.WaitSettled(ctx, cli, q.stream, q.sub, worked)
	stop()
	if werr := <-worked; err == nil {
		err = werr
	}
	if err != nil {
		return rep, err
	}
	rep.Sent, rep.Skipped = p.timesSent(), s.skipped.Load()
	ids := make([]string, 0, len(rep.Sent))
	for id, n := range rep.Sent {
		ids = append(ids, fmt.Sprintf("%s ×%d", id, n))
	}
	slices.Sort(ids)
	say.Printf("sent: %s", strings.Join(ids, ", "))
	return rep, listDeadLetters(ctx, cli, q, say)
}

// listDeadLetters prints q's dead letters with their attempts.
func listDeadLetters(ctx context.Context, cli sluice.Client, q queue, say *log.Logger) error {
	dls, _, err := cli.DeadLetters(ctx, q.stream, q.sub, sluice.DeadLetterQuery{})
	if err != nil {
		return err
	}
	say.Printf("dead letters: %d", len(dls))
	for _, dl := range dls {
		var e email
		if err := json.Unmarshal(dl.Message.Body, &e); err != nil {
			e.ID = string(dl.Message.Body) // a job that was not JSON
		}
		say.Printf("  %s to %s, after %d deliveries: %s", e.ID, e.To, dl.Deliveries, dl.Reason)
		for i, a := range dl.Attempts {
			say.Printf("    attempt %d at +%v by %s: %s", i+1, a.At.Sub(dl.Attempts[0].At), a.Consumer, a.Error)
		}
	}
	return nil
}
