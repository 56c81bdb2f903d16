package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// Defaults and limits of the connection settings of Options.
const (
	// DefaultMaxConnections bounds the connections open at once.
	DefaultMaxConnections = 1024
	MinMaxConnections     = 1
	MaxMaxConnections     = 1 << 20
	// DefaultMaxStreamsPerConnection bounds the calls in progress on one
	// HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS).
	DefaultMaxStreamsPerConnection = 100
	MinMaxStreamsPerConnection     = 1
	MaxMaxStreamsPerConnection     = 10_000
	// DefaultMaxHeaderBytes bounds a request's headers.
	DefaultMaxHeaderBytes = 64 << 10
	MinMaxHeaderBytes     = 4 << 10
	MaxMaxHeaderBytes     = 1 << 20
	// DefaultReadHeaderTimeout bounds how long a connection may take to send
	// a request's headers (and its TLS handshake).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout bounds how long a connection stays open with no call
	// in progress.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultPingInterval is how long an HTTP/2 connection may stay silent
	// before the server pings it, and DefaultPingTimeout how long the server
	// then waits for the answer before it closes the connection. Together
	// they bound how long a consumer whose connection went half-open (a
	// vanished peer, a NAT that forgot it) keeps its Consume stream, and with
	// it the credit that lets the broker hand it messages again each time
	// their leases expire: 15 s, so that such messages reach a live consumer
	// within seconds of that, not within a minute.
	DefaultPingInterval = 10 * time.Second
	DefaultPingTimeout  = 5 * time.Second
	// MinTimeout and MaxTimeout bound each of the four durations above.
	MinTimeout = time.Millisecond
	MaxTimeout = 24 * time.Hour

	// maxOverLimitConns bounds the connections accepted past MaxConnections
	// only to be told so; past that, a connection is closed without a word.
	maxOverLimitConns = 64
)

// limits is every number of Options with its bounds, for Validate.
func (o *Options) limits() []struct {
	field     string
	v, lo, hi int64
	duration  bool
} {
	type l = struct {
		field     string
		v, lo, hi int64
		duration  bool
	}
	return []l{
		{"MaxRequestBytes", int64(o.MaxRequestBytes), MinMaxRequestBytes, MaxMaxRequestBytes, false},
		{"MaxConnections", int64(o.MaxConnections), MinMaxConnections, MaxMaxConnections, false},
		{"MaxStreamsPerConnection", int64(o.MaxStreamsPerConnection), MinMaxStreamsPerConnection, MaxMaxStreamsPerConnection, false},
		{"MaxHeaderBytes", int64(o.MaxHeaderBytes), MinMaxHeaderBytes, MaxMaxHeaderBytes, false},
		{"ReadHeaderTimeout", int64(o.ReadHeaderTimeout), int64(MinTimeout), int64(MaxTimeout), true},
		{"IdleTimeout", int64(o.IdleTimeout), int64(MinTimeout), int64(MaxTimeout), true},
		{"PingInterval", int64(o.PingInterval), int64(MinTimeout), int64(MaxTimeout), true},
		{"PingTimeout", int64(o.PingTimeout), int64(MinTimeout), int64(MaxTimeout), true},
	}
}

// newHTTPServer is the http.Server that Serve runs: HTTP/1.1 and HTTP/2 (h2c
// without TLS), with the limits of Options.
func (s *Server) newHTTPServer() *http.Server {
	o := &s.opts
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	if o.TLS == nil {
		protocols.SetUnencryptedHTTP2(true) // h2c: gRPC clients without TLS
	}
	return &http.Server{
		Handler:   s.h,
		Protocols: &protocols,
		TLSConfig: o.TLS,
		// net/http reads up to 4 KiB past it before answering a bare 431;
		// limitHeaders refuses, naming the limit, what it lets through.
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: o.MaxStreamsPerConnection,
			SendPingTimeout:      o.PingInterval,
			PingTimeout:          o.PingTimeout,
			// A peer that stops reading our socket (not one that withholds
			// flow-control credit, which is back-pressure) is cut off too.
			WriteByteTimeout: o.PingTimeout,
		},
		ConnContext: markOverLimit,
		ErrorLog:    slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
}

// Serve accepts connections on ln and serves the API on them until Shutdown,
// with the connection limits of Options, over TLS when Options.TLS is set. It
// returns http.ErrServerClosed after Shutdown. Serve owns ln from then on.
func (s *Server) Serve(ln net.Listener) error {
	ll := &limitListener{Listener: ln, max: int64(s.opts.MaxConnections), linger: s.opts.ReadHeaderTimeout}
	if s.opts.TLS != nil {
		return s.hs.ServeTLS(ll, "", "")
	}
	return s.hs.Serve(ll)
}

// Shutdown stops Serve gracefully: it drains (see Drain), stops accepting,
// and waits for the calls in progress until ctx ends; then it closes the
// connections still open and returns an error that says so. Close the broker
// after Shutdown returns, so that every call it let finish is on disk.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	if err := s.hs.Shutdown(ctx); err != nil {
		s.hs.Close()
		return fmt.Errorf("server: calls still in progress at the end of the grace period, their connections closed: %w", err)
	}
	return nil
}

// limitListener admits MaxConnections connections at once. It accepts up to
// maxOverLimitConns more, each only to answer its first request with an error
// that names the limit (see refuseOverLimit) and to be closed after it, or
// after linger at the latest; it closes any further one at once.
type limitListener struct {
	net.Listener
	max    int64
	linger time.Duration
	open   atomic.Int64 // connections within the limit
	over   atomic.Int64 // connections past it, being told so
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: conn, release: func() { l.open.Add(-1) }}, nil
		}
		l.open.Add(-1)
		if l.over.Add(1) <= maxOverLimitConns {
			lc := &limitConn{Conn: conn, overLimit: l.max, release: func() { l.over.Add(-1) }}
			time.AfterFunc(l.linger, func() { lc.Close() })
			return lc, nil
		}
		l.over.Add(-1)
		conn.Close()
	}
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	// overLimit, when not zero, is the limit the connection is over.
	overLimit int64
	release   func()
	once      sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// overLimitKey marks the context of a connection past MaxConnections; its
// value is the limit.
type overLimitKey struct{}

// markOverLimit is the ConnContext of the http.Server.
func markOverLimit(ctx context.Context, conn net.Conn) context.Context {
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		conn = tc.NetConn()
	}
	if lc, ok := conn.(*limitConn); ok && lc.overLimit > 0 {
		return context.WithValue(ctx, overLimitKey{}, lc.overLimit)
	}
	return ctx
}

// refuseOverLimit answers every request of a connection past MaxConnections
// with resource_exhausted naming the limit, and closes the connection after
// the answer (HTTP/2: a GOAWAY), so that the client retries on a new one.
func refuseOverLimit(next http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, over := r.Context().Value(overLimitKey{}).(int64)
		if !over {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		msg := fmt.Sprintf("server at its connection limit MaxConnections=%d: try again later", limit)
		if !ew.IsSupported(r) {
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		ew.Write(w, r, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s", msg)))
	})
}

// limitHeaders refuses a request whose headers are over MaxHeaderBytes (but
// within the slack net/http reads past it) with resource_exhausted naming the
// limit. The size counts each field as "Name: value\r\n", and the request line.
func (s *Server) limitHeaders(next http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	max := s.opts.MaxHeaderBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: \r\n") + len(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n <= max {
			next.ServeHTTP(w, r)
			return
		}
		msg := fmt.Sprintf("request headers of %d bytes are over the server's limit MaxHeaderBytes=%d", n, max)
		if !ew.IsSupported(r) {
			http.Error(w, msg, http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		ew.Write(w, r, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s", msg)))
	})
}
