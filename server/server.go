package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

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
	Metrics *Metrics
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.MaxRequestBytes == 0 {
		out.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return out
}

// Validate checks every field against its limits.
func (o *Options) Validate() error {
	d := o.withDefaults()
	if d.MaxRequestBytes < MinMaxRequestBytes || d.MaxRequestBytes > MaxMaxRequestBytes {
		return &sluice.InvalidError{Field: "Options.MaxRequestBytes",
			Reason: fmt.Sprintf("%d outside [MinMaxRequestBytes=%d, MaxMaxRequestBytes=%d]", d.MaxRequestBytes, MinMaxRequestBytes, MaxMaxRequestBytes)}
	}
	return nil
}

// Server serves one broker. Its handler is safe for concurrent use.
type Server struct {
	b    *sluice.Broker
	opts Options
	h    http.Handler
	// draining is cancelled by Drain; streams in progress end with it.
	draining context.Context
	drain    context.CancelFunc
}

// New returns a Server for b. It does not own b: closing the broker stays with
// the caller, after the HTTP server that runs the handler has shut down.
func New(b *sluice.Broker, opts *Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{b: b, opts: opts.withDefaults()}
	s.draining, s.drain = context.WithCancel(context.Background())

	hopts := []connect.HandlerOption{
		connect.WithReadMaxBytes(s.opts.MaxRequestBytes),
		connect.WithCodec(strictJSON{"json"}),
		connect.WithCodec(strictJSON{"json; charset=utf-8"}),
		connect.WithInterceptors(errorInterceptor{s}),
	}
	mux := http.NewServeMux()
	mux.Handle(sluicev1connect.NewStreamServiceHandler(streamService{s}, hopts...))
	mux.Handle(sluicev1connect.NewPublishServiceHandler(publishService{s}, hopts...))
	mux.Handle(sluicev1connect.NewReadServiceHandler(readService{s}, hopts...))
	mux.Handle(sluicev1connect.NewSubscriptionServiceHandler(subscriptionService{s}, hopts...))
	mux.Handle(sluicev1connect.NewConsumerServiceHandler(consumerService{s}, hopts...))
	mux.Handle(sluicev1connect.NewScheduleServiceHandler(scheduleService{s}, hopts...))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.ready)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics.Handler())
	}
	s.h = s.limitBody(mux)
	return s, nil
}

// Handler returns the handler that serves the API and the health endpoints.
func (s *Server) Handler() http.Handler { return s.h }

// Drain prepares for shutdown: /readyz answers 503 from now on, and the streams
// in progress end with unavailable, as do streams opened after: Read and
// SubscribeLive at once, PublishStream when its next batch arrives (which is not
// published; the batches answered before it are stored). Unary calls keep being
// served until the HTTP server stops. Call it before http.Server.Shutdown (or
// register it with RegisterOnShutdown), which would otherwise wait for the
// streams until its deadline; a PublishStream that sends nothing more is cut
// when that deadline closes its connection. Safe to call more than once.
func (s *Server) Drain() { s.drain() }

// errShuttingDown ends a stream that Drain interrupted.
var errShuttingDown = connect.NewError(connect.CodeUnavailable, errors.New("server shutting down"))

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
