package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is a target that writes back whatever it reads.
type echo struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		e.wg.Wait()
	})
	return e
}

// setup returns a proxy in front of an echo server and a connection through it.
func setup(t *testing.T) (*Proxy, net.Conn) {
	t.Helper()
	e := startEcho(t)
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, c
}

// roundTrip writes msg and reads it back within d.
func roundTrip(c net.Conn, msg []byte, d time.Duration) ([]byte, int, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, 0, err
	}
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, 0, len(msg))
	buf := make([]byte, len(msg))
	reads := 0
	for len(got) < len(msg) {
		n, err := c.Read(buf)
		reads++
		got = append(got, buf[:n]...)
		if err != nil {
			return got, reads, err
		}
	}
	return got, reads, nil
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestForwards(t *testing.T) {
	p, c := setup(t)
	msg := payload(200 << 10)
	got, _, err := roundTrip(c, msg, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %d bytes, %v; want %d bytes intact", len(got), err, len(msg))
	}
	if s := p.Stats(); s.Accepted != 1 || s.Open != 1 || s.Resets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLatency(t *testing.T) {
	p, c := setup(t)
	p.SetLatency(Upstream, 100*time.Millisecond, 20*time.Millisecond)
	start := time.Now()
	msg := []byte("hello")
	got, _, err := roundTrip(c, msg, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("round trip took %v with 100±20 ms of latency upstream", d)
	}
	p.Clear()
	got, _, err = roundTrip(c, msg, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after Clear: %q, %v", got, err)
	}
}

func TestSlicer(t *testing.T) {
	p, c := setup(t)
	p.SetSlicer(Downstream, 8, time.Millisecond)
	msg := payload(4 << 10)
	got, reads, err := roundTrip(c, msg, 20*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %d bytes, %v; want %d bytes intact", len(got), err, len(msg))
	}
	// Chunks of at most 8 bytes with pauses between them cannot all arrive
	// in one read: the data must come in many pieces.
	if reads < 2 {
		t.Fatalf("%d bytes came in %d read(s) through the slicer", len(msg), reads)
	}
}

func TestBlackhole(t *testing.T) {
	p, c := setup(t)
	p.SetBlackhole(Both, true)
	msg := []byte("held")
	got, _, err := roundTrip(c, msg, 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("through a blackhole: %q, %v; want a read timeout", got, err)
	}
	if s := p.Stats(); s.Open != 1 {
		t.Fatalf("the blackholed connection closed: %+v", s)
	}
	// A new connection is accepted and held too.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, _, err := roundTrip(c2, msg, 200*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("new connection through a blackhole: %q, %v; want a read timeout", got, err)
	}
	p.SetBlackhole(Both, false)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("after the blackhole lifted: %q, %v; want the held %q", buf, err, msg)
	}
}

func TestResetAll(t *testing.T) {
	p, c := setup(t)
	if _, _, err := roundTrip(c, []byte("x"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.ResetAll()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after ResetAll: %v; want ECONNRESET", err)
	}
	if s := p.Stats(); s.Resets != 1 {
		t.Fatalf("stats %+v; want 1 reset", s)
	}
}

func TestResetAfterBytes(t *testing.T) {
	p, c := setup(t)
	p.SetResetAfter(Downstream, 1000)
	msg := payload(64 << 10)
	got, _, err := roundTrip(c, msg, 10*time.Second)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("round trip of %d bytes with a reset within 1000: %d bytes, %v; want ECONNRESET", len(msg), len(got), err)
	}
	if len(got) > 1000 || !bytes.Equal(got, msg[:len(got)]) {
		t.Fatalf("got %d bytes before the reset; want a prefix of at most 1000", len(got))
	}
	p.Clear()
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, _, err := roundTrip(c2, msg, 10*time.Second); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after Clear: %d bytes, %v", len(got), err)
	}
}

// TestCloseWithHeldConnections checks that Close ends connections in every
// state (blackholed, sleeping out a latency) and joins their goroutines;
// goleak in TestMain checks nothing is left.
func TestCloseWithHeldConnections(t *testing.T) {
	e := startEcho(t)
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var cs []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	p.SetLatency(Upstream, 30*time.Second, 0)
	cs[0].Write([]byte("sleeping"))
	p.SetLatency(Upstream, 0, 0)
	p.SetBlackhole(Downstream, true)
	cs[1].Write(payload(1 << 20))
	done := make(chan error)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with held connections")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}

// TestHalfClose checks that a client's FIN passes through: the echo server
// sees the end, answers what it read and closes.
func TestHalfClose(t *testing.T) {
	_, c := setup(t)
	msg := []byte("last words")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after half-close: %q, %v; want %q then EOF", got, err, msg)
	}
}

func TestHoldOpen(t *testing.T) {
	p, c := setup(t)
	// One round trip first: the proxy holds the connections it has accepted,
	// and a dial returns before its accept loop has taken the connection.
	if got, _, err := roundTrip(c, []byte("w"), 10*time.Second); err != nil || string(got) != "w" {
		t.Fatalf("before HoldOpen: %q, %v", got, err)
	}
	p.HoldOpen()
	var ne net.Error
	if got, _, err := roundTrip(c, []byte("x"), 200*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("held connection: %q, %v; want a read timeout", got, err)
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, _, err := roundTrip(c2, []byte("y"), 10*time.Second); err != nil || string(got) != "y" {
		t.Fatalf("new connection after HoldOpen: %q, %v", got, err)
	}
	p.Clear()
	if got, _, err := roundTrip(c, nil, 0); err != nil || len(got) != 0 {
		t.Fatalf("%q, %v", got, err)
	}
	if s := p.Stats(); s.Open != 2 {
		t.Fatalf("stats %+v; want both connections open", s)
	}
}
