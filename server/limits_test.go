package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// served is a broker behind Server.Serve on a real socket, with the
// connection limits of its Options, as sluice serve runs it.
type served struct {
	b    *sluice.Broker
	srv  *Server
	addr string
}

func serveReal(t *testing.T, opts *Options) *served {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
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
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		srv.Shutdown(ctx) // an error only says that connections were cut
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return &served{b: b, srv: srv, addr: ln.Addr().String()}
}

// eventually polls cond until it holds, failing the test after a deadline
// that no working server comes near.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// oneShot is an HTTP/1.1 client that opens a connection per request.
func oneShot() *http.Client {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, DisableKeepAlives: true}, Timeout: 20 * time.Second}
}

func listStreams(t *testing.T, hc *http.Client, addr string, header http.Header) (int, wireError) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/sluice.v1.StreamService/ListStreams", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	var we wireError
	if res.StatusCode != 200 {
		if err := json.Unmarshal(out, &we); err != nil {
			t.Fatalf("status %d, body %q: %v", res.StatusCode, out, err)
		}
	}
	return res.StatusCode, we
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts  Options
		field string
	}{
		{Options{MaxConnections: -1}, "Options.MaxConnections"},
		{Options{MaxConnections: MaxMaxConnections + 1}, "Options.MaxConnections"},
		{Options{MaxStreamsPerConnection: MaxMaxStreamsPerConnection + 1}, "Options.MaxStreamsPerConnection"},
		{Options{MaxHeaderBytes: MinMaxHeaderBytes - 1}, "Options.MaxHeaderBytes"},
		{Options{MaxRequestBytes: 1}, "Options.MaxRequestBytes"},
		{Options{ReadHeaderTimeout: -time.Second}, "Options.ReadHeaderTimeout"},
		{Options{IdleTimeout: MaxTimeout + 1}, "Options.IdleTimeout"},
		{Options{PingInterval: time.Microsecond}, "Options.PingInterval"},
		{Options{PingTimeout: -1}, "Options.PingTimeout"},
	} {
		err := tc.opts.Validate()
		var ie *sluice.InvalidError
		if !errors.As(err, &ie) || ie.Field != tc.field || !strings.Contains(ie.Reason, "outside") {
			t.Errorf("%+v: got %v, want an invalid %s", tc.opts, err, tc.field)
		}
	}
	if err := (&Options{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := (*Options)(nil).withDefaults()
	if d.MaxConnections != DefaultMaxConnections || d.ReadHeaderTimeout != DefaultReadHeaderTimeout || d.PingTimeout != DefaultPingTimeout {
		t.Fatalf("defaults: %+v", d)
	}
}

// TestConnectionLimit fills MaxConnections with idle connections: a further
// one is answered with an error naming the limit, over HTTP/1.1 and over
// gRPC, and once a connection closes the server takes new ones again.
func TestConnectionLimit(t *testing.T) {
	s := serveReal(t, &Options{MaxConnections: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The listener accepts in order, so the held connections are counted
	// before the next one arrives.
	hc := oneShot()
	status, we := listStreams(t, hc, s.addr, nil)
	if status != http.StatusTooManyRequests || we.Code != "resource_exhausted" || !strings.Contains(we.Message, "MaxConnections=2") {
		t.Fatalf("over the limit: %d %+v", status, we)
	}
	_, h2c := clients2()
	defer h2c.CloseIdleConnections()
	streams := sluicev1connect.NewStreamServiceClient(h2c, "http://"+s.addr, connect.WithGRPC())
	_, err := streams.ListStreams(ctx(t), connect.NewRequest(&sluicev1.ListStreamsRequest{}))
	if ce := wantCode(t, err, connect.CodeResourceExhausted); !strings.Contains(ce.Message(), "MaxConnections=2") {
		t.Fatalf("over gRPC: %v", ce)
	}

	held[0].Close()
	eventually(t, "serving after a connection closed", func() bool {
		status, _ := listStreams(t, hc, s.addr, nil)
		return status == 200
	})
}

// clients2 are HTTP/1.1 and h2c clients of their own, for servers other than
// an env's.
func clients2() (h1, h2c *http.Client) {
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p1}, Timeout: 20 * time.Second},
		&http.Client{Transport: &http.Transport{Protocols: &p2}}
}

// waitClosed reads c until the server closes it. The guard is half the
// default timeouts, so a test passes only if the configured one was applied.
func waitClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(DefaultReadHeaderTimeout / 2))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server did not close the connection", what)
	}
}

// TestSlowConnectionsCutOff checks that a connection that sends nothing, or
// part of a request's headers, or nothing more after a request, is closed
// after ReadHeaderTimeout or IdleTimeout, and that the server serves on.
func TestSlowConnectionsCutOff(t *testing.T) {
	s := serveReal(t, &Options{ReadHeaderTimeout: 50 * time.Millisecond, IdleTimeout: 50 * time.Millisecond})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	waitClosed(t, dial(), "silent")

	partial := dial()
	if _, err := io.WriteString(partial, "POST /sluice.v1.StreamService/ListStreams HTTP/1.1\r\nHost: sluice\r\nContent-"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, partial, "partial headers")

	idle := dial()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()
	waitClosed(t, idle, "idle after a request")

	hc := oneShot()
	if status, we := listStreams(t, hc, s.addr, nil); status != 200 {
		t.Fatalf("after the cut-offs: %d %+v", status, we)
	}
}

// freezableConn is a client connection whose peer can vanish: once frozen,
// the client neither receives nor sends anything more, as when a machine
// drops off the network, while the test still sees the server close it.
type freezableConn struct {
	net.Conn
	mu     sync.Mutex
	frozen chan struct{} // closed by freeze
	closed chan struct{} // closed by Close
	cut    chan struct{} // closed when the server closed the connection
	once   sync.Once
}

func (c *freezableConn) freeze() {
	close(c.frozen)
	go func() {
		defer close(c.cut)
		io.Copy(io.Discard, c.Conn)
	}()
}

func (c *freezableConn) Read(p []byte) (int, error) {
	select {
	case <-c.frozen:
		<-c.closed
		return 0, net.ErrClosed
	default:
	}
	n, err := c.Conn.Read(p)
	select {
	case <-c.frozen:
		// Bytes read as the freeze began are dropped, as the vanished
		// machine would have.
		<-c.closed
		return 0, net.ErrClosed
	default:
	}
	return n, err
}

func (c *freezableConn) Write(p []byte) (int, error) {
	select {
	case <-c.frozen:
		return len(p), nil
	default:
	}
	return c.Conn.Write(p)
}

func (c *freezableConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestHalfOpenHTTP2CutOff opens a Read that waits at the tail, then makes the
// client vanish: the server pings it after PingInterval and, with no answer
// in PingTimeout, closes the connection, and serves on.
func TestHalfOpenHTTP2CutOff(t *testing.T) {
	s := serveReal(t, &Options{PingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond, IdleTimeout: time.Hour})
	if _, err := s.b.CreateStream(ctx(t), sluice.StreamConfig{Name: "ticks"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.Publish(ctx(t), "ticks", sluice.Message{Body: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	var conns []*freezableConn
	var mu sync.Mutex
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		fc := &freezableConn{Conn: c, frozen: make(chan struct{}), closed: make(chan struct{}), cut: make(chan struct{})}
		mu.Lock()
		conns = append(conns, fc)
		mu.Unlock()
		return fc, nil
	}}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		tr.CloseIdleConnections()
	}()
	read := sluicev1connect.NewReadServiceClient(&http.Client{Transport: tr}, "http://"+s.addr, connect.WithGRPC())
	rctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	rs, err := read.Read(rctx, connect.NewRequest(&sluicev1.ReadRequest{Stream: "ticks"}))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if !rs.Receive() {
		t.Fatal(rs.Err())
	}
	mu.Lock()
	fc := conns[0]
	mu.Unlock()
	fc.freeze()
	select {
	case <-fc.cut:
	case <-time.After(DefaultPingInterval / 2):
		t.Fatal("the server kept a half-open connection")
	}
	cancel()

	hc := oneShot()
	if status, we := listStreams(t, hc, s.addr, nil); status != 200 {
		t.Fatalf("after the cut-off: %d %+v", status, we)
	}
}

// TestMaxStreamsPerConnection reads the server's first HTTP/2 SETTINGS frame,
// which announces the limit to the client.
func TestMaxStreamsPerConnection(t *testing.T) {
	s := serveReal(t, &Options{MaxStreamsPerConnection: 7})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// The client preface, then an empty SETTINGS frame.
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatal(err)
		}
		const settings, ack = 4, 1
		if hdr[3] != settings || hdr[4]&ack != 0 {
			continue
		}
		for i := 0; i+6 <= len(payload); i += 6 {
			const maxConcurrentStreams = 3
			if binary.BigEndian.Uint16(payload[i:]) == maxConcurrentStreams {
				if v := binary.BigEndian.Uint32(payload[i+2:]); v != 7 {
					t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 7", v)
				}
				return
			}
		}
		t.Fatal("no SETTINGS_MAX_CONCURRENT_STREAMS in the server's SETTINGS")
	}
}

// TestMaxHeaderBytes: headers over the limit are refused with an error that
// names it; far over it, net/http answers 431 on its own.
func TestMaxHeaderBytes(t *testing.T) {
	s := serveReal(t, &Options{MaxHeaderBytes: MinMaxHeaderBytes})
	hc := oneShot()
	status, we := listStreams(t, hc, s.addr, http.Header{"X-Pad": {strings.Repeat("x", MinMaxHeaderBytes)}})
	if status != http.StatusTooManyRequests || we.Code != "resource_exhausted" || !strings.Contains(we.Message, "MaxHeaderBytes=4096") {
		t.Fatalf("headers over the limit: %d %+v", status, we)
	}
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/healthz", nil)
	req.Header.Set("X-Pad", strings.Repeat("x", 4*MinMaxHeaderBytes))
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers far over the limit: %d", res.StatusCode)
	}
	if status, we := listStreams(t, hc, s.addr, http.Header{"X-Pad": {"small"}}); status != 200 {
		t.Fatalf("headers within the limit: %d %+v", status, we)
	}
}
