package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/console"
	"github.com/sluicemq/sluice/kafka"
	"github.com/sluicemq/sluice/server"
)

// shutdownGrace is how long a shutdown waits for calls in progress before it
// closes their connections.
const shutdownGrace = 10 * time.Second

// serveConfig is what sluice serve runs with. A zero field takes its
// default; config.go reads it from the file, the environment and the flags.
type serveConfig struct {
	// Data is the data directory, created if missing.
	Data string
	// Listen is the TCP address for every protocol.
	Listen string
	// Insecure allows a non-loopback Listen without authentication (tokens or
	// client certificates).
	Insecure bool
	// Console serves the web console at / of Listen. Default true.
	Console bool
	// ConsoleListen, when set, is a second address that serves the console on
	// a port of its own. The API is served there too, since the page calls
	// the API on the address it came from.
	ConsoleListen string
	// KafkaListen, when set, is an address that serves Kafka's wire
	// protocol (package kafka) with Kafka's options.
	KafkaListen string
	Kafka       kafka.Options
	// ShutdownGrace bounds how long a shutdown waits for calls in progress.
	// Default shutdownGrace.
	ShutdownGrace time.Duration
	// TLSCert and TLSKey are PEM files; both set turn TLS on. TLSClientCA,
	// a PEM file of CA certificates, makes client certificates required.
	TLSCert, TLSKey, TLSClientCA string
	// Server holds the tokens and the limits; serve sets its Logger, Metrics
	// and TLS.
	Server server.Options
	Logger *slog.Logger
	// listening, when set, is told the address once it listens (for tests,
	// which listen on port 0).
	listening func(addr string)
}

func runServe(args []string) error {
	cfg, warnings, err := loadServeConfig(args, os.Getenv)
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, w := range warnings {
		cfg.Logger.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg)
}

// serve runs the broker and its network API until ctx ends, then shuts down:
// the API drains (readiness fails, streams end), the HTTP server stops
// accepting and waits up to ShutdownGrace for the calls in progress, and the
// broker closes last, so that nothing acknowledged is left unsynced.
func serve(ctx context.Context, cfg serveConfig) error {
	log := cfg.Logger
	grace := cfg.ShutdownGrace
	if grace == 0 {
		grace = shutdownGrace
	}
	opts := cfg.Server
	opts.Logger = log
	scheme := "http"
	if cfg.TLSCert != "" {
		tc, err := loadTLS(cfg)
		if err != nil {
			return err
		}
		opts.TLS, scheme = tc, "https"
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if err := checkExposure(ln.Addr(), cfg, log); err != nil {
		return errors.Join(err, ln.Close())
	}
	var consoleLn net.Listener
	if cfg.ConsoleListen != "" {
		if consoleLn, err = net.Listen("tcp", cfg.ConsoleListen); err != nil {
			return errors.Join(fmt.Errorf("console_listen: %w", err), ln.Close())
		}
		if err := checkExposure(consoleLn.Addr(), cfg, log); err != nil {
			return errors.Join(err, ln.Close(), consoleLn.Close())
		}
	}
	var kafkaLn net.Listener
	if cfg.KafkaListen != "" {
		if kafkaLn, err = net.Listen("tcp", cfg.KafkaListen); err != nil {
			return errors.Join(fmt.Errorf("kafka.listen: %w", err), ln.Close(), closeIf(consoleLn))
		}
		if err := checkExposure(kafkaLn.Addr(), cfg, log); err != nil {
			return errors.Join(err, ln.Close(), closeIf(consoleLn), kafkaLn.Close())
		}
	}
	closeListeners := func() error {
		return errors.Join(ln.Close(), closeIf(consoleLn), closeIf(kafkaLn))
	}

	start := time.Now()
	metrics := server.NewMetrics()
	b, err := sluice.Open(cfg.Data, &sluice.Options{Logger: log, OnSync: metrics.ObserveSync})
	if err != nil {
		return errors.Join(err, closeListeners())
	}
	metrics.Attach(b)
	streams, _ := b.ListStreams(ctx)
	log.Info("broker open", "data", cfg.Data, "streams", len(streams), "recovery", time.Since(start).Round(time.Millisecond))

	opts.Metrics = metrics
	if cfg.Console {
		opts.Console = console.Handler()
	}
	api, err := server.New(b, &opts)
	if err != nil {
		return errors.Join(err, closeListeners(), b.Close())
	}
	served := make(chan error, 2)
	go func() { served <- api.Serve(ln) }()
	log.Info("listening", "addr", scheme+"://"+ln.Addr().String(), "tokens", len(opts.Tokens),
		"client_certificates", cfg.TLSClientCA != "", "console", cfg.Console)
	if consoleLn != nil {
		go func() { served <- api.Serve(consoleLn) }()
		log.Info("console listening", "addr", scheme+"://"+consoleLn.Addr().String())
	}
	var kafkaSrv *kafka.Server
	kafkaServed := make(chan error, 1)
	if kafkaLn != nil {
		kopts := cfg.Kafka
		kopts.Logger, kopts.TLS = log, opts.TLS
		if len(opts.Tokens) > 0 {
			kopts.Authenticate = func(token string) (kafka.Principal, error) {
				p, err := api.Authenticate(token)
				if err != nil {
					return nil, err
				}
				return p, nil
			}
		}
		if kafkaSrv, err = kafka.New(b, &kopts); err != nil {
			api.Shutdown(context.Background())
			return errors.Join(err, closeListeners(), b.Close())
		}
		go func() { kafkaServed <- kafkaSrv.Serve(kafkaLn) }()
		log.Info("kafka listening", "addr", kafkaLn.Addr().String(), "sasl", kopts.Authenticate != nil, "tls", kopts.TLS != nil)
	}
	if cfg.listening != nil {
		cfg.listening(ln.Addr().String())
	}

	select {
	case err := <-served:
		// A listener failed: stop the others before closing the broker.
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if consoleLn != nil {
			err = errors.Join(err, api.Shutdown(sctx))
			<-served
		}
		if kafkaSrv != nil {
			err = errors.Join(err, kafkaSrv.Shutdown(sctx))
			<-kafkaServed
		}
		return errors.Join(err, b.Close())
	case err := <-kafkaServed:
		log.Error("the kafka listener failed; shutting down", "error", err)
		kafkaServed <- err // for the wait below
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if kafkaSrv != nil {
		if err := kafkaSrv.Shutdown(sctx); err != nil {
			log.Warn("kafka connections still closing after the grace period", "grace", grace)
		}
		<-kafkaServed
	}
	if err := api.Shutdown(sctx); err != nil {
		log.Warn("calls still in progress after the grace period; their connections were closed", "grace", grace)
	}
	<-served // http.ErrServerClosed
	if consoleLn != nil {
		<-served
	}
	if err := b.Close(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// loadTLS reads the certificate, its key and the client CAs.
func loadTLS(cfg serveConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls.cert and tls.key (--tls-cert, --tls-key): %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca (--tls-client-ca): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca (--tls-client-ca): no PEM certificate in %s", cfg.TLSClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// checkExposure refuses to serve a non-loopback address without
// authentication, unless Insecure says to, and warns of tokens sent in the
// clear.
func checkExposure(addr net.Addr, cfg serveConfig, log *slog.Logger) error {
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	authenticated := len(cfg.Server.Tokens) > 0 || cfg.TLSClientCA != ""
	switch {
	case !authenticated && !cfg.Insecure:
		return fmt.Errorf("refusing to listen on %s (%s), which is not a loopback address, without authentication: "+
			"configure tokens (the tokens of the --config file, or SLUICE_TOKEN) or client certificates (--tls-client-ca), "+
			"or pass --insecure to serve anyone who can reach it", cfg.Listen, addr)
	case !authenticated:
		log.Warn("serving without authentication on a non-loopback address (--insecure)", "addr", addr.String())
	case cfg.TLSCert == "":
		log.Warn("tokens travel in the clear on a non-loopback address: configure TLS (--tls-cert, --tls-key)", "addr", addr.String())
	}
	return nil
}

// closeIf closes a listener that may be nil.
func closeIf(ln net.Listener) error {
	if ln == nil {
		return nil
	}
	return ln.Close()
}
