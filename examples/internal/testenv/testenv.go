// Package testenv runs an example's scenario in a test twice: against a broker
// embedded in the test, and against a server reached over the network client.
package testenv

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/server"
)

// Deadline bounds a scenario, only so that a hang fails the test.
const Deadline = 2 * time.Minute

// Run runs f in the subtests "embedded" and "remote", each with a fresh broker
// in t.TempDir() and a context that ends after Deadline.
func Run(t *testing.T, f func(ctx context.Context, t *testing.T, cli sluice.Client)) {
	t.Run("embedded", func(t *testing.T) {
		run(t, open(t), f)
	})
	t.Run("remote", func(t *testing.T) {
		run(t, serve(t, open(t)), f)
	})
}

func run(t *testing.T, cli sluice.Client, f func(ctx context.Context, t *testing.T, cli sluice.Client)) {
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	f(ctx, t, cli)
}

func open(t *testing.T) *sluice.Broker {
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b
}

// serve serves b as sluice serve does, HTTP/1.1 and HTTP/2 without TLS on one
// port, and returns a network client of it.
func serve(t *testing.T, b *sluice.Broker) sluice.Client {
	srv, err := server.New(b, &server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &protocols
	ts.Start()
	c, err := client.Dial(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the client, then the server, then the
	// broker that open registered.
	t.Cleanup(func() {
		srv.Drain() // ends the streams still open, which Close would wait for
		ts.Close()
	})
	t.Cleanup(func() { c.Close() })
	return c
}
