package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/server"
)

// shutdownGrace is how long a shutdown waits for calls in progress before it
// closes their connections.
const shutdownGrace = 10 * time.Second

// serveConfig is what sluice serve runs with.
type serveConfig struct {
	// Data is the data directory, created if missing.
	Data string
	// Listen is the TCP address for every protocol.
	Listen string
	Logger *slog.Logger
	// listening, when set, is told the address once it listens (for tests,
	// which listen on port 0).
	listening func(addr string)
}

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg := serveConfig{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	fs.StringVar(&cfg.Data, "data", "sluice-data", "data directory")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "address to listen on: HTTP/1.1 and HTTP/2 without TLS (gRPC), one port")
	fs.StringVar(&cfg.Listen, "addr", "127.0.0.1:7070", "same as -listen")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg)
}

// serve runs the broker and its network API until ctx ends, then shuts down:
// the API drains (readiness fails, streams end), the HTTP server stops
// accepting and waits up to shutdownGrace for the calls in progress, and the
// broker closes last, so that nothing acknowledged is left unsynced.
func serve(ctx context.Context, cfg serveConfig) error {
	log := cfg.Logger
	start := time.Now()
	metrics := server.NewMetrics()
	b, err := sluice.Open(cfg.Data, &sluice.Options{Logger: log, OnSync: metrics.ObserveSync})
	if err != nil {
		return err
	}
	metrics.Attach(b)
	streams, _ := b.ListStreams(ctx)
	log.Info("broker open", "data", cfg.Data, "streams", len(streams), "recovery", time.Since(start).Round(time.Millisecond))

	api, err := server.New(b, &server.Options{Logger: log, Metrics: metrics})
	if err != nil {
		return errors.Join(err, b.Close())
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return errors.Join(err, b.Close())
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c: gRPC clients without TLS
	protocols.SetHTTP2(true)            // for when TLS is configured
	srv := &http.Server{
		Handler:           api.Handler(),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", "http://"+ln.Addr().String())
	if cfg.listening != nil {
		cfg.listening(ln.Addr().String())
	}

	select {
	case err := <-served:
		return errors.Join(err, b.Close())
	case <-ctx.Done():
	}
	log.Info("shutting down")
	api.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("calls still in progress after the grace period; closing their connections", "grace", shutdownGrace)
		srv.Close()
	}
	<-served // http.ErrServerClosed
	if err := b.Close(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
