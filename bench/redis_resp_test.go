package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadValue(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // fmt of the value
		wantErr string
	}{
		{in: "+OK\r\n", want: "+OK"},
		{in: "-BUSYGROUP exists\r\n", want: "-BUSYGROUP exists"},
		{in: ":-42\r\n", want: ":-42"},
		{in: "$5\r\nhe\r\no\r\n", want: "$he\r\no"},
		{in: "$0\r\n\r\n", want: "$"},
		{in: "$-1\r\n", want: "$null"},
		{in: "*-1\r\n", want: "*null"},
		{in: "*0\r\n", want: "[]"},
		{in: "*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nb\r\n$1\r\nx\r\n:7\r\n", want: "[[$1-0 [$b $x]] :7]"},
		{in: "", wantErr: "EOF"},
		{in: "\r\n", wantErr: "empty line"},
		{in: "+OK\n", wantErr: "CRLF"},
		{in: "?x\r\n", wantErr: "unknown reply type"},
		{in: ":x\r\n", wantErr: "integer"},
		{in: "$-2\r\n", wantErr: "bulk length"},
		{in: fmt.Sprintf("$%d\r\n", respMaxBulk+1), wantErr: "bulk length"},
		{in: "$3\r\nabcd\r\n", wantErr: "CRLF"},
		{in: "$3\r\nab", wantErr: "EOF"},
		{in: fmt.Sprintf("*%d\r\n", respMaxArray+1), wantErr: "array length"},
		{in: strings.Repeat("*1\r\n", respMaxDepth+1) + ":1\r\n", wantErr: "nested deeper"},
		{in: "*2\r\n:1\r\n", wantErr: "EOF"},
	} {
		v, err := readValue(bufio.NewReader(strings.NewReader(tc.in)), 0)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("readValue(%q) = %s, %v; want an error with %q", tc.in, show(v), err, tc.wantErr)
			}
			continue
		}
		if err != nil || show(v) != tc.want {
			t.Errorf("readValue(%q) = %s, %v; want %s", tc.in, show(v), err, tc.want)
		}
	}
}

// show prints a value compactly for comparisons.
func show(v respValue) string {
	switch {
	case v.Null:
		return string(v.Kind) + "null"
	case v.Kind == ':':
		return fmt.Sprintf(":%d", v.Int)
	case v.Kind == '*':
		parts := make([]string, len(v.Array))
		for i, e := range v.Array {
			parts[i] = show(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return string(v.Kind) + string(v.Str)
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []any{"XADD", []byte("s"), 12, int64(-3), ""}))
	want := "*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$2\r\n12\r\n$2\r\n-3\r\n$0\r\n\r\n"
	if got != want {
		t.Errorf("appendCommand = %q, want %q", got, want)
	}
}

func FuzzReadValue(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "$3\r\nabc\r\n", "*2\r\n:1\r\n$-1\r\n", "*-1\r\n", "-ERR x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(strings.NewReader(string(in)))
		for range 16 {
			if _, err := readValue(r, 0); err != nil {
				return
			}
		}
	})
}

// fakeRedis serves on 127.0.0.1: it answers each command, an array of bulk
// strings, with its second argument as a bulk string, or holds every reply
// when hold is set. It closes its connections on stop.
func fakeRedis(t *testing.T, hold bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
				for {
					cmd, err := readValue(r, 0)
					if err != nil {
						return
					}
					switch {
					case len(cmd.Array) > 0 && string(cmd.Array[0].Str) == "PING":
						w.WriteString("+PONG\r\n")
					case hold:
						continue
					case len(cmd.Array) < 2:
						w.WriteString("-ERR no argument\r\n")
					default:
						w.Write(appendBulk(nil, cmd.Array[1].Str))
					}
					if r.Buffered() == 0 {
						if w.Flush() != nil {
							return
						}
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// TestRESPConnPipelines sends many commands from several goroutines through a
// small window and checks that each gets its own reply.
func TestRESPConnPipelines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialRESP(ctx, fakeRedis(t, false), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4000)
	for g := range 4 {
		wg.Go(func() {
			var inner sync.WaitGroup
			for i := range 1000 {
				want := fmt.Sprintf("%d-%d", g, i)
				inner.Add(1)
				c.Send(ctx, func(v respValue, err error) {
					defer inner.Done()
					if err != nil || string(v.Str) != want {
						errs <- fmt.Errorf("reply to %s: %q, %v", want, v.Str, err)
					}
				}, "ECHO", want)
			}
			inner.Wait()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := c.Do(ctx, "ECHO"); err == nil || !strings.Contains(err.Error(), "no argument") {
		t.Errorf("an error reply: %v", err)
	}
}

// TestRESPConnCloseFailsInFlight checks that Close completes the commands the
// server never answered.
func TestRESPConnCloseFailsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialRESP(ctx, fakeRedis(t, true), 8)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 5)
	for range 5 {
		c.Send(ctx, func(_ respValue, err error) { errs <- err }, "ECHO", "x")
	}
	c.Close()
	for range 5 {
		if err := <-errs; !errors.Is(err, errRESPClosed) {
			t.Errorf("command in flight at Close: %v, want errRESPClosed", err)
		}
	}
	c.Send(ctx, func(_ respValue, err error) { errs <- err }, "ECHO", "x")
	if err := <-errs; !errors.Is(err, errRESPClosed) {
		t.Errorf("command after Close: %v, want errRESPClosed", err)
	}
}

func TestDialRESPUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = dialRESP(context.Background(), addr, 1)
	if !errors.Is(err, errUnreachable) {
		t.Errorf("dial of a closed port: %v, want errUnreachable", err)
	}
}
