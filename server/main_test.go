package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a broker served on a real socket on 127.0.0.1, as sluice serve runs it.
type env struct {
	t   *testing.T
	b   *sluice.Broker
	srv *Server
	url string
	// h1 speaks HTTP/1.1 only, as curl does; h2c speaks HTTP/2 without TLS, as
	// a gRPC client does.
	h1, h2c *http.Client
}

func setup(t *testing.T, opts *Options) *env {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if opts == nil {
		opts = &Options{}
	}
	opts.Logger = quiet
	srv, err := New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: srv.Handler(), Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		hs.Serve(ln)
	}()

	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetUnencryptedHTTP2(true)
	e := &env{t: t, b: b, srv: srv, url: "http://" + ln.Addr().String(),
		h1:  &http.Client{Transport: &http.Transport{Protocols: &h1}, Timeout: 30 * time.Second},
		h2c: &http.Client{Transport: &http.Transport{Protocols: &h2}},
	}
	t.Cleanup(func() {
		srv.Drain()
		e.h1.CloseIdleConnections()
		e.h2c.CloseIdleConnections()
		// A connection whose stream the client just cancelled is not idle yet,
		// and after its GOAWAY the server waits up to a second for the client
		// to hang up: no test needs that second, so cut it short.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
		<-served
		e.h1.CloseIdleConnections()
		e.h2c.CloseIdleConnections()
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return e
}

// protocol is one way a Go client talks to the server.
type protocol struct {
	name string
	opts []connect.ClientOption
}

// protocols are the Connect protocol (JSON, as a browser would) and gRPC
// (binary protobuf, as grpc-go would), both over HTTP/2 without TLS.
var protocols = []protocol{
	{"connect", []connect.ClientOption{connect.WithProtoJSON()}},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
}

// clients are the generated clients of the served services.
type clients struct {
	streams sluicev1connect.StreamServiceClient
	publish sluicev1connect.PublishServiceClient
	read    sluicev1connect.ReadServiceClient
}

func (e *env) clients(p protocol) clients {
	return clients{
		streams: sluicev1connect.NewStreamServiceClient(e.h2c, e.url, p.opts...),
		publish: sluicev1connect.NewPublishServiceClient(e.h2c, e.url, p.opts...),
		read:    sluicev1connect.NewReadServiceClient(e.h2c, e.url, p.opts...),
	}
}

// ctx is a context for one test step, bounded so that a hang fails the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantCode fails the test unless err is a connect error with code.
func wantCode(t *testing.T, err error, code connect.Code) *connect.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%v is not a *connect.Error", err)
	}
	return ce
}
