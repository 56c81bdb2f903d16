// Package testenv runs an example's scenario in a test twice: against a broker
// embedded in the test, and against a server reached over the network client.
package testenv

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/server"
)

// Run runs f in the subtests "embedded" and "remote", each with a fresh broker
// in t.TempDir().
func Run(t *testing.T, f func(t *testing.T, cli sluice.Client)) {
	t.Run("embedded", func(t *testing.T) {
		f(t, open(t))
	})
	t.Run("remote", func(t *testing.T) {
		f(t, serve(t, open(t)))
	})
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
