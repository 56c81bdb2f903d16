package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// compressMinBytes is the smallest response compressed for a client that
// accepts gzip.
const compressMinBytes = 64 << 10

// Limits of Options.
const (
	// DefaultMaxRequestBytes bounds one request message by default: room for a
	// full PublishBatch (sluice.MaxBatchBytes, 32 MiB, of keys, bodies and
	// headers) with its framing, or twice that in base64 JSON.
	DefaultMaxRequestBytes = 64 << 20
	// MinMaxRequestBytes and MaxMaxRequestBytes bound Options.MaxRequestBytes.
	MinMaxRequestBytes = 64 << 10
	MaxMaxRequestBytes = 256 << 20
)

// Options configures a Server. A nil *Options means all defaults.
type Options struct {
	// Logger receives the errors a client gets as internal or data_loss, which
	// an operator needs to see. Default slog.Default().
	Logger *slog.Logger
	// MaxRequestBytes bounds one request message: a Publish, a PublishBatch, one
	// batch of a PublishStream. A larger one is refused with resource_exhausted
	// naming the limit, and the server goes on. Default DefaultMaxRequestBytes
	// (64 MiB); limits [MinMaxRequestBytes = 64 KiB, MaxMaxRequestBytes = 256 MiB].
	MaxRequestBytes int
	// Metrics, when set, are served at GET /metrics (attach the broker first).
	// With Tokens, a scrape needs any one of them; /healthz and /readyz stay
	// open.
	Metrics *Metrics
	// Console, when set, is served at / for every path the API and the
	// endpoints above do not claim (package console). Its files are public;
	// the data it shows comes through the API, with the user's token.
	Console http.Handler

	// Tokens, when not empty, turn authentication on: every call must carry
	// one of them ("Authorization: Bearer <secret>"), or fail with
	// unauthenticated, and the token must grant the permission its procedure
	// needs on the stream it names, or the call fails with permission_denied
	// naming both (see Token). Empty, the default: no authentication. At most
	// MaxTokens.
	Tokens []Token
	// TLS, when set, makes Serve speak TLS only (HTTP/1.1 and HTTP/2, ALPN);
	// it needs Certificates or GetCertificate. Set ClientAuth to
	// tls.RequireAndVerifyClientCert and ClientCAs to require client
	// certificates. Nil, the default: no TLS, HTTP/1.1 and h2c.
	TLS *tls.Config

	// The limits below apply to the connections Serve accepts; Handler alone
	// applies only MaxHeaderBytes (and MaxRequestBytes).

	// MaxConnections bounds the connections open at once. A connection past it
	// has its first request answered resource_exhausted naming the limit, and
	// is closed. Default DefaultMaxConnections (1024); limits [1, 1<<20].
	MaxConnections int
	// MaxStreamsPerConnection bounds the calls in progress on one HTTP/2
	// connection; clients queue further calls or open another connection.
	// Default DefaultMaxStreamsPerConnection (100); limits [1, 10,000].
	MaxStreamsPerConnection int
	// MaxHeaderBytes bounds a request's headers; a request over it is refused
	// with resource_exhausted naming the limit (431 when more than 4 KiB
	// over). Default DefaultMaxHeaderBytes (64 KiB); limits [4 KiB, 1 MiB].
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time from a connection's first byte, or
	// the end of its previous request, to the end of the next request's
	// headers, and a TLS handshake: a slow or silent connection is closed.
	// Default DefaultReadHeaderTimeout (10 s); limits [MinTimeout = 1 ms,
	// MaxTimeout = 24 h].
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection with no call in progress for that long.
	// Default DefaultIdleTimeout (2 min); limits [1 ms, 24 h].
	IdleTimeout time.Duration
	// PingInterval and PingTimeout find half-open HTTP/2 connections, whose
	// peer vanished while a call (a Read, a Consume) was open: after
	// PingInterval without a frame from the peer the server pings it, and
	// closes the connection if no answer comes within PingTimeout. PingTimeout
	// also bounds a socket write that makes no progress. Defaults
	// DefaultPingInterval (10 s) and DefaultPingTimeout (5 s); limits [1 ms,
	// 24 h].
	PingInterval time.Duration
	PingTimeout  time.Duration
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&out.MaxRequestBytes, DefaultMaxRequestBytes},
		{&out.MaxConnections, DefaultMaxConnections},
		{&out.MaxStreamsPerConnection, DefaultMaxStreamsPerConnection},
		{&out.MaxHeaderBytes, DefaultMaxHeaderBytes},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&out.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{&out.IdleTimeout, DefaultIdleTimeout},
		{&out.PingInterval, DefaultPingInterval},
		{&out.PingTimeout, DefaultPingTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return out
}

// Validate checks every field against its limits.
func (o *Options) Validate() error {
	d := o.withDefaults()
	for _, l := range d.limits() {
		if l.v >= l.lo && l.v <= l.hi {
			continue
		}
		reason := fmt.Sprintf("%d outside [Min%s=%d, Max%s=%d]", l.v, l.field, l.lo, l.field, l.hi)
		if l.duration {
			reason = fmt.Sprintf("%v outside [MinTimeout=%v, MaxTimeout=%v]", time.Duration(l.v), time.Duration(l.lo), time.Duration(l.hi))
		}
		return &sluice.InvalidError{Field: "Options." + l.field, Reason: reason}
	}
	if d.TLS != nil && len(d.TLS.Certificates) == 0 && d.TLS.GetCertificate == nil && d.TLS.GetConfigForClient == nil {
		return &sluice.InvalidError{Field: "Options.TLS", Reason: "has no certificate: set Certificates or GetCertificate"}
	}
	return validateTokens(d.Tokens)
}

// Server serves one broker. Its handler is safe for concurrent use.
type Server struct {
	b    *sluice.Broker
	opts Options
	h    http.Handler
	hs   *http.Server // what Serve runs
	// draining is cancelled by Drain; streams in progress end with it.
	draining context.Context
	drain    context.CancelFunc
	// drills holds a token for each live drill run in progress.
	drills chan struct{}
	// auth checks bearer tokens; nil without Options.Tokens.
	auth *authenticator
}

// New returns a Server for b. It does not own b: closing the broker stays with
// the caller, after the HTTP server that runs the handler has shut down.
func New(b *sluice.Broker, opts *Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{b: b, opts: opts.withDefaults(), drills: make(chan struct{}, MaxDrillsRunning)}
	s.draining, s.drain = context.WithCancel(context.Background())

	hopts := []connect.HandlerOption{
		connect.WithReadMaxBytes(s.opts.MaxRequestBytes),
		// A client that accepts gzip gets it only for large responses: below
		// this, compressing costs more CPU than the bytes it saves on a LAN.
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithCodec(strictJSON{"json"}),
		connect.WithCodec(strictJSON{"json; charset=utf-8"}),
		connect.WithInterceptors(errorInterceptor{s}),
	}
	var auth *authenticator
	if len(s.opts.Tokens) > 0 {
		auth = newAuthenticator(s.opts.Tokens)
		s.auth = auth
		// First, so that a call without a valid token reaches nothing else.
		hopts = append([]connect.HandlerOption{connect.WithInterceptors(authInterceptor{s, auth})}, hopts...)
	}
	mux := http.NewServeMux()
	mux.Handle(sluicev1connect.NewStreamServiceHandler(streamService{s}, hopts...))
	mux.Handle(sluicev1connect.NewPublishServiceHandler(publishService{s}, hopts...))
	mux.Handle(sluicev1connect.NewReadServiceHandler(readService{s}, hopts...))
	mux.Handle(sluicev1connect.NewSubscriptionServiceHandler(subscriptionService{s}, hopts...))
	mux.Handle(sluicev1connect.NewConsumerServiceHandler(consumerService{s}, hopts...))
	mux.Handle(sluicev1connect.NewScheduleServiceHandler(scheduleService{s}, hopts...))
	mux.Handle(sluicev1connect.NewDrillServiceHandler(drillService{s}, hopts...))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.ready)
	if s.opts.Metrics != nil {
		metrics := s.opts.Metrics.Handler()
		if auth != nil {
			metrics = auth.requireToken(metrics)
		}
		mux.Handle("GET /metrics", metrics)
	}
	if s.opts.Console != nil {
		mux.Handle("/", s.opts.Console)
	}
	s.h = refuseOverLimit(s.limitHeaders(s.limitBody(s.interruptOnDrain(mux))))
	s.hs = s.newHTTPServer()
	return s, nil
}

// Handler returns the handler that serves the API and the health endpoints.
func (s *Server) Handler() http.Handler { return s.h }

// Drain prepares for shutdown: /readyz answers 503 from now on, and the streams
// in progress end at once with unavailable ("server shutting down"), as do
// streams opened after, so that their clients go to another server: Read,
// SubscribeLive and Consume (its leases stay with the subscription), and
// PublishStream, whose batch being published is stored and answered first (a
// batch that arrives after is not published; those answered before are
// stored). Unary calls keep being served until the HTTP server stops. Call it
// before http.Server.Shutdown (or register it with RegisterOnShutdown), which
// would otherwise wait for the streams until its deadline. Safe to call more
// than once.
func (s *Server) Drain() { s.drain() }

// errShuttingDown ends a stream that Drain interrupted.
var errShuttingDown = connect.NewError(connect.CodeUnavailable, errors.New("server shutting down"))

// bidiProcedures are the calls whose handlers wait for the client's next
// message: Drain must interrupt that wait, which no context reaches.
var bidiProcedures = map[string]bool{
	sluicev1connect.ConsumerServiceConsumeProcedure:      true,
	sluicev1connect.PublishServicePublishStreamProcedure: true,
}

// interruptOnDrain lets Drain end the bidirectional streams in progress. Their
// handlers block in Receive, reading the request body, which neither the
// call's context nor Drain's interrupts: an idle Consume or PublishStream would
// hold http.Server.Shutdown for its whole grace period, until its connection
// is cut. So Drain closes the body of each, which wakes the read, and the
// read then fails with errShuttingDown: the handler ends with unavailable, and
// a message it was given in full before goes on to be answered. Only HTTP/2
// requests are concerned (bidirectional streams need it), where closing the
// body while it is read is safe; unary calls keep their bodies and finish.
func (s *Server) interruptOnDrain(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor < 2 || !bidiProcedures[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		body := r.Body
		r.Body = &drainableBody{ReadCloser: body, draining: s.draining}
		closed := make(chan struct{})
		stop := context.AfterFunc(s.draining, func() {
			defer close(closed)
			body.Close()
		})
		next.ServeHTTP(w, r)
		if !stop() {
			<-closed // the body is not touched after the handler returned
		}
	})
}

// drainableBody is a request body that Drain closes: a read it interrupted
// fails with errShuttingDown rather than with the closed body's error.
type drainableBody struct {
	io.ReadCloser
	draining context.Context
}

func (b *drainableBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && b.draining.Err() != nil {
		err = errShuttingDown
	}
	return n, err
}

// ready answers /readyz.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.draining.Err() != nil {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	// Looking up a stream is the cheapest call that tells a closed broker.
	if _, err := s.b.Stream(r.Context(), ""); errors.Is(err, sluice.ErrClosed) {
		http.Error(w, "broker closed", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// limitBody refuses a unary Connect request (the kind curl sends) whose declared
// length is over MaxRequestBytes before reading it, with an error that names the
// limit. Other requests are framed per message, and connect.WithReadMaxBytes
// refuses each message over the limit as it arrives.
func (s *Server) limitBody(next http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		unary := strings.HasPrefix(ct, "application/json") || strings.HasPrefix(ct, "application/proto")
		if unary && r.ContentLength > int64(s.opts.MaxRequestBytes) {
			err := connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("request of %d bytes is over the server's limit MaxRequestBytes=%d", r.ContentLength, s.opts.MaxRequestBytes))
			// The body stays unread: the HTTP/1.1 connection is closed after
			// the answer, an HTTP/2 stream is reset.
			ew.Write(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// strictJSON is Connect's JSON codec, except that it refuses fields the API
// does not have: a misspelt field is an error, not a silently ignored setting.
// The binary codec keeps protobuf's rule (unknown fields are skipped), which is
// what lets an older server talk to a newer client. Its answers show zero
// values too ("offset": "0"), which a person reading curl's output expects.
type strictJSON struct{ name string }

func (c strictJSON) Name() string { return c.name }

func (strictJSON) IsBinary() bool { return false }

func (strictJSON) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", v)
	}
	return protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(m)
}

func (strictJSON) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", v)
	}
	if len(data) == 0 {
		return errors.New("empty body: a request is a JSON object, at least {}")
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// errorInterceptor maps every error a handler returns with connectError, and
// logs those an operator must see.
type errorInterceptor struct{ s *Server }

func (i errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil {
			return nil, i.s.fail(req.Spec().Procedure, err)
		}
		return res, nil
	}
}

func (i errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := next(ctx, conn); err != nil {
			return i.s.fail(conn.Spec().Procedure, err)
		}
		return nil
	}
}

// fail maps err and logs it when it is the server's fault.
func (s *Server) fail(procedure string, err error) *connect.Error {
	ce := connectError(err)
	if c := ce.Code(); c == connect.CodeInternal || c == connect.CodeDataLoss {
		s.opts.Logger.Error("sluice server: "+procedure, "code", c.String(), "error", err)
	}
	return ce
}
