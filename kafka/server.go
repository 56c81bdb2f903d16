package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

// Limits of Options.
const (
	// DefaultMaxRequestBytes bounds one request, as Kafka's
	// socket.request.max.bytes does by default.
	DefaultMaxRequestBytes = 100 << 20
	MinMaxRequestBytes     = 64 << 10
	MaxMaxRequestBytes     = 256 << 20
	// DefaultMaxConnections bounds the connections open at once.
	DefaultMaxConnections = 1024
	MaxMaxConnections     = 1 << 20
	// DefaultPartitions is the partition count of a topic created without
	// one (num_partitions -1, or auto-created).
	DefaultPartitions = 1
	// NodeID is this broker's node id in every answer: one node leads every
	// partition and coordinates every group.
	NodeID = 0
	// ClusterID names the cluster in Metadata.
	ClusterID = "sluice"
)

// Options configures a Server. A nil *Options means all defaults.
type Options struct {
	// Logger receives the errors an operator needs to see. Default
	// slog.Default().
	Logger *slog.Logger
	// AdvertisedAddr is the host:port that Metadata and FindCoordinator give
	// clients to connect to. Default: the address Serve listens on.
	AdvertisedAddr string
	// AutoCreateTopics lets a Metadata request that allows it create the
	// topics it names (with DefaultPartitions). Default false.
	AutoCreateTopics bool
	// MaxRequestBytes bounds one request; a larger one closes the connection,
	// as Kafka does. Default DefaultMaxRequestBytes (100 MiB); limits
	// [MinMaxRequestBytes = 64 KiB, MaxMaxRequestBytes = 256 MiB].
	MaxRequestBytes int
	// MaxConnections bounds the connections open at once; one past it is
	// closed at once. Default DefaultMaxConnections; limits [1, 1<<20].
	MaxConnections int
	// TLS, when set, makes Serve speak TLS only.
	TLS *tls.Config
	// Authenticate, when set, requires SASL: a connection must authenticate
	// (SASL/PLAIN, the password being a bearer token) before any request
	// other than ApiVersions and the SASL handshake. It returns the
	// principal's permissions, or an error for a bad token.
	Authenticate func(token string) (Principal, error)
}

// Principal is what an authenticated connection may do.
type Principal interface {
	// Name identifies the principal in errors.
	Name() string
	// May reports whether the principal has the permission ("publish",
	// "consume" or "admin") on the stream.
	May(permission, stream string) bool
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
	if out.MaxConnections == 0 {
		out.MaxConnections = DefaultMaxConnections
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
	if d.MaxConnections < 1 || d.MaxConnections > MaxMaxConnections {
		return &sluice.InvalidError{Field: "Options.MaxConnections",
			Reason: fmt.Sprintf("%d outside [1, MaxMaxConnections=%d]", d.MaxConnections, MaxMaxConnections)}
	}
	if d.AdvertisedAddr != "" {
		if _, port, err := net.SplitHostPort(d.AdvertisedAddr); err != nil {
			return &sluice.InvalidError{Field: "Options.AdvertisedAddr", Reason: err.Error()}
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return &sluice.InvalidError{Field: "Options.AdvertisedAddr", Reason: "port " + port + " is not a number 0..65535"}
		}
	}
	return nil
}

// Server serves one broker over Kafka's wire protocol.
type Server struct {
	b    *sluice.Broker
	opts Options

	ctx    context.Context // cancelled by Shutdown: every connection ends
	cancel context.CancelFunc

	mu    sync.Mutex
	lns   map[net.Listener]struct{}
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	host  string
	port  int32

	producers producers
	groups    *groups
	shares    *shareGroups
}

// New returns a Server for b. It does not own b.
func New(b *sluice.Broker, opts *Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{b: b, opts: opts.withDefaults(), lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.producers.init()
	s.groups = newGroups(s)
	s.shares = newShareGroups(s)
	if s.opts.AdvertisedAddr != "" {
		host, port, _ := net.SplitHostPort(s.opts.AdvertisedAddr)
		p, _ := strconv.Atoi(port)
		s.host, s.port = host, int32(p)
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown. It returns
// net.ErrClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.lns[ln] = struct{}{}
	if s.host == "" {
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			s.host, s.port = ta.IP.String(), int32(ta.Port)
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if len(s.conns) >= s.opts.MaxConnections || s.ctx.Err() != nil {
			s.mu.Unlock()
			s.opts.Logger.Warn("kafka: connection refused: MaxConnections reached", "limit", s.opts.MaxConnections, "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Shutdown stops accepting, ends every connection (a request in progress is
// cancelled: a produce whose answer is lost is retried by the client, with
// its sequence number if idempotent), and waits for their goroutines until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.cancel()
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.shares.close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: connections still closing at the end of the grace period: %w", ctx.Err())
	}
}

// addr is the host and port clients are told to connect to.
func (s *Server) addr() (string, int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host, s.port
}

// handler serves one API key.
type handler struct {
	name     string
	min, max int16
	// serve answers a request; the response's version is set by the caller.
	serve func(s *Server, ctx context.Context, c *conn, req kmsg.Request) (kmsg.Response, error)
	// open: served before SASL authentication (ApiVersions, the handshake).
	open bool
}

// handlers are the APIs served, by key; each lives in the file named after
// it. ApiVersions reports exactly these.
var handlers = map[int16]*handler{}

func register(key int16, h *handler) {
	if _, dup := handlers[key]; dup {
		panic(fmt.Sprintf("kafka: API key %d registered twice", key))
	}
	handlers[key] = h
}
