package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"math"
	"net/http"
	"strconv"

	"github.com/sluicemq/sluice"
)

// email is a send-email job: the body of a message on the stream.
type email struct {
	ID      string `json:"id"`
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body,omitempty"`
}

// queue names the stream of jobs and the subscription its workers share.
type queue struct{ stream, sub string }

// create creates the stream and the subscription unless they exist.
func (q queue) create(ctx context.Context, cli sluice.Client, sub sluice.SubscriptionConfig) error {
	// Bounded, and a work queue: room frees as jobs are acknowledged. A full
	// queue refuses new jobs at once, and the service answers 503.
	_, err := cli.CreateStream(ctx, sluice.StreamConfig{
		Name:        q.stream,
		MaxMessages: 100_000,
		Overflow:    sluice.OverflowReject,
		Retention:   sluice.Retention{Policy: sluice.RetainWork},
	})
	if err != nil && !errors.Is(err, sluice.ErrStreamExists) {
		return err
	}
	_, err = cli.CreateSubscription(ctx, q.stream, sub)
	if err != nil && !errors.Is(err, sluice.ErrSubscriptionExists) {
		return err
	}
	return nil
}

// maxRequestBytes bounds a request's body.
const maxRequestBytes = 64 << 10

// accepted is the answer to a queued job.
type accepted struct {
	ID string `json:"id"`
	// Duplicate says the job was queued by an earlier request with its key.
	Duplicate bool `json:"duplicate"`
}

// newService returns the HTTP service: POST /emails queues a job.
func newService(cli sluice.Client, stream string, say *log.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /emails", func(w http.ResponseWriter, r *http.Request) {
		var e email
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if key := r.Header.Get("Idempotency-Key"); key != "" {
			e.ID = key
		}
		switch {
		case e.ID == "":
			http.Error(w, "an Idempotency-Key header or an id field is required", http.StatusBadRequest)
			return
		case e.To == "" || e.Subject == "":
			http.Error(w, "to and subject are required", http.StatusBadRequest)
			return
		}
		body, err := json.Marshal(e)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// The idempotency key makes a retried request (its client never saw the
		// answer) store nothing: Publish returns the first one's position,
		// marked Duplicate. Publish returns once the job is on disk.
		pos, err := cli.Publish(r.Context(), stream, sluice.Message{Body: body, IdempotencyKey: e.ID})
		var full *sluice.StreamFullError
		var invalid *sluice.InvalidError
		switch {
		case errors.As(err, &full):
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(full.RetryAfter.Seconds())))))
			http.Error(w, "too many emails queued, try again later", http.StatusServiceUnavailable)
			return
		case errors.As(err, &invalid):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			say.Printf("queue %s: %v", e.ID, err)
			http.Error(w, "could not queue the email", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(accepted{ID: e.ID, Duplicate: pos.Duplicate})
	})
	return mux
}
