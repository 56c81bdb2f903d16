package main

import (
	"context"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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
		rep, err := demo(ctx, cli, t.TempDir(), t.Output())
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{202, 202, 202, 202}; !slices.Equal(rep.Statuses, want) {
			t.Errorf("POST /emails answered %v, want %v", rep.Statuses, want)
		}
		// welcome-grace was requested twice, welcome-ada delivered twice.
		if want := map[string]int{"welcome-ada": 1, "welcome-grace": 1}; !maps.Equal(rep.Sent, want) {
			t.Errorf("sent %v, want each good email once: %v", rep.Sent, want)
		}
		if rep.Skipped < 1 {
			t.Errorf("no delivery was skipped: the job worker-0 sent was not delivered again, or sent again")
		}
		info, err := cli.Subscription(ctx, rep.Stream, rep.Subscription)
		if err != nil {
			t.Fatal(err)
		}
		if info.Backlog != 0 || info.DeadLettered != 1 {
			t.Errorf("backlog %d, dead-lettered %d; want 0 and 1", info.Backlog, info.DeadLettered)
		}
		dls, _, err := cli.DeadLetters(ctx, rep.Stream, rep.Subscription, sluice.DeadLetterQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) != 1 {
			t.Fatalf("%d dead letters, want 1: %+v", len(dls), dls)
		}
		dl := dls[0]
		if !strings.Contains(string(dl.Message.Body), "nobody@example.invalid") {
			t.Errorf("dead letter %s, want the job for nobody@example.invalid", dl.Message.Body)
		}
		if dl.Deliveries != demoSubscription.MaxDeliveries || len(dl.Attempts) != demoSubscription.MaxDeliveries {
			t.Errorf("dead letter after %d deliveries with %d attempts, want %d of each",
				dl.Deliveries, len(dl.Attempts), demoSubscription.MaxDeliveries)
		}
		for i, a := range dl.Attempts {
			if !strings.Contains(a.Error, "no such host") || a.Consumer != "worker-1" {
				t.Errorf("attempt %d: %s by %q, want the provider's error by worker-1", i+1, a.Error, a.Consumer)
			}
			if i > 0 && a.At.Before(dl.Attempts[i-1].At) {
				t.Errorf("attempt %d at %v, before attempt %d", i+1, a.At, i)
			}
		}
	})
}

// TestService checks the answers of POST /emails to requests it refuses.
func TestService(t *testing.T) {
	b, err := sluice.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q := queue{stream: "emails", sub: "senders"}
	if err := q.create(context.Background(), b, sluice.SubscriptionConfig{Name: q.sub}); err != nil {
		t.Fatal(err)
	}
	h := newService(b, q.stream, log.New(io.Discard, "", 0))
	for _, tc := range []struct {
		name, key, body string
		want            int
	}{
		{"key in header", "k1", `{"to": "a@example.com", "subject": "Hi"}`, http.StatusAccepted},
		{"key in body", "", `{"id": "k2", "to": "a@example.com", "subject": "Hi"}`, http.StatusAccepted},
		{"no key", "", `{"to": "a@example.com", "subject": "Hi"}`, http.StatusBadRequest},
		{"no subject", "k3", `{"to": "a@example.com"}`, http.StatusBadRequest},
		{"unknown field", "k4", `{"to": "a@example.com", "subject": "Hi", "cc": "b@example.com"}`, http.StatusBadRequest},
		{"not JSON", "k5", `to=a@example.com`, http.StatusBadRequest},
		{"key too long", strings.Repeat("k", sluice.MaxIdempotencyKeyBytes+1), `{"to": "a@example.com", "subject": "Hi"}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/emails", strings.NewReader(tc.body))
			if tc.key != "" {
				req.Header.Set("Idempotency-Key", tc.key)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("answered %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
		})
	}
}
