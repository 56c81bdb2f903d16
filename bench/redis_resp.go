package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// A small pipelining client of the Redis protocol (RESP2), enough for the
// streams peer: commands are arrays of bulk strings, written in the order
// they are sent, and the server answers them in that order, so one
// goroutine reading replies completes the oldest outstanding command with
// each. Writes are coalesced: while one buffer is on the wire, the next
// commands gather in another.

// Limits of a reply, checked as it is read.
const (
	respMaxBulk  = 512 << 20 // Redis's own proto-max-bulk-len default
	respMaxArray = 1 << 20   // elements of one array (a reply to XREADGROUP COUNT n holds n)
	respMaxDepth = 8         // nesting of arrays (XREADGROUP's replies nest 4 deep)
	respMaxLine  = 64 << 10  // a status, error or length line
	respChunk    = 64 << 10  // a bulk string's buffer grows by this much as it is read
)

// respDialTimeout bounds the connection to the server, so that a peer that is
// not running is reported at once.
const respDialTimeout = time.Second

var errRESPClosed = errors.New("redis: connection closed")

// respValue is one reply. Kind is the RESP type byte: '+' status, '-' error,
// ':' integer, '$' bulk string, '*' array. Null is set for a null bulk
// string or array.
type respValue struct {
	Kind  byte
	Str   []byte
	Int   int64
	Array []respValue
	Null  bool
}

// respError is an error reply of the server, such as "BUSYGROUP Consumer
// Group name already exists".
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

// respCall is a command waiting for its reply.
type respCall func(v respValue, err error)

// respConn is one connection. Send is safe for concurrent use; the replies'
// callbacks run on the reading goroutine, one at a time, in send order.
type respConn struct {
	nc     net.Conn
	window chan struct{} // a slot per command in flight

	mu      sync.Mutex
	out     []byte     // commands encoded but not yet written
	spare   []byte     // the buffer last written, for reuse; nil while one is on the wire
	pending []respCall // oldest first
	err     error      // set once the connection failed or was closed

	kick chan struct{} // room 1: out has bytes to write
	wg   sync.WaitGroup
}

// dialRESP connects to addr and checks with PING that a Redis server
// answers. window bounds the commands in flight.
func dialRESP(ctx context.Context, addr string, window int) (*respConn, error) {
	d := net.Dialer{Timeout: respDialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w: %w", addr, errUnreachable, err)
	}
	c := &respConn{nc: nc, window: make(chan struct{}, window), kick: make(chan struct{}, 1)}
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop(bufio.NewReaderSize(nc, 64<<10))
	pctx, cancel := context.WithTimeout(ctx, respDialTimeout)
	defer cancel()
	v, err := c.Do(pctx, "PING")
	if err == nil && string(v.Str) != "PONG" {
		err = fmt.Errorf("PING answered %q", v.Str)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("redis at %s: %w: %w", addr, errUnreachable, err)
	}
	return c, nil
}

// Send queues a command; cb is called with its reply (an error reply as a
// respError). It blocks while the window is full, and calls cb with the
// error at once when ctx ends first or the connection has failed. An
// argument is a string, []byte, int or int64.
func (c *respConn) Send(ctx context.Context, cb respCall, args ...any) {
	select {
	case c.window <- struct{}{}:
	case <-ctx.Done():
		cb(respValue{}, ctx.Err())
		return
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		<-c.window
		cb(respValue{}, err)
		return
	}
	c.out = appendCommand(c.out, args)
	c.pending = append(c.pending, cb)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Do sends a command and waits for its reply. When ctx ends first, the
// command stays in flight and its reply is dropped.
func (c *respConn) Do(ctx context.Context, args ...any) (respValue, error) {
	type result struct {
		v   respValue
		err error
	}
	ch := make(chan result, 1)
	c.Send(ctx, func(v respValue, err error) { ch <- result{v, err} }, args...)
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return respValue{}, ctx.Err()
	}
}

// Close closes the connection, fails every command in flight, and waits for
// both goroutines.
func (c *respConn) Close() error {
	c.fail(errRESPClosed)
	c.wg.Wait()
	return nil
}

// fail records the connection's first error and closes it; the reading
// goroutine then fails the outstanding commands.
func (c *respConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.nc.Close()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *respConn) writeLoop() {
	defer c.wg.Done()
	for range c.kick {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		buf := c.out
		if len(buf) == 0 {
			c.mu.Unlock()
			continue
		}
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		_, err := c.nc.Write(buf)
		c.mu.Lock()
		c.spare = buf[:0]
		c.mu.Unlock()
		if err != nil {
			c.fail(fmt.Errorf("redis: write: %w", err))
			return
		}
	}
}

func (c *respConn) readLoop(r *bufio.Reader) {
	defer c.wg.Done()
	for {
		v, err := readValue(r, 0)
		if err != nil {
			c.fail(fmt.Errorf("redis: read: %w", err))
			break
		}
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.mu.Unlock()
			c.fail(errors.New("redis: a reply to no command"))
			break
		}
		cb := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		c.mu.Unlock()
		var rerr error
		if v.Kind == '-' {
			rerr = respError(v.Str)
		}
		cb(v, rerr)
		<-c.window
	}
	c.mu.Lock()
	err, left := c.err, c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, cb := range left {
		cb(respValue{}, err)
		<-c.window
	}
}

// appendCommand encodes args as an array of bulk strings.
func appendCommand(b []byte, args []any) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		switch a := a.(type) {
		case string:
			b = appendBulk(b, a)
		case []byte:
			b = appendBulk(b, a)
		case int:
			b = appendBulk(b, strconv.AppendInt(nil, int64(a), 10))
		case int64:
			b = appendBulk(b, strconv.AppendInt(nil, a, 10))
		default:
			panic(fmt.Sprintf("redis: argument of type %T", a))
		}
	}
	return b
}

func appendBulk[S string | []byte](b []byte, s S) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// readValue reads one reply. The bytes of strings are copied: the reader's
// buffer is reused.
func readValue(r *bufio.Reader, depth int) (respValue, error) {
	line, err := readLine(r)
	if err != nil {
		return respValue{}, err
	}
	if len(line) == 0 {
		return respValue{}, errors.New("empty line")
	}
	v := respValue{Kind: line[0]}
	rest := line[1:]
	switch v.Kind {
	case '+', '-':
		v.Str = append([]byte(nil), rest...)
	case ':':
		if v.Int, err = strconv.ParseInt(string(rest), 10, 64); err != nil {
			return v, fmt.Errorf("integer %q", rest)
		}
	case '$':
		n, err := strconv.Atoi(string(rest))
		switch {
		case err != nil || n < -1 || n > respMaxBulk:
			return v, fmt.Errorf("bulk length %q (at most %d)", rest, respMaxBulk)
		case n == -1:
			v.Null = true
			return v, nil
		}
		if v.Str, err = readN(r, n+2); err != nil {
			return v, err
		}
		if v.Str[n] != '\r' || v.Str[n+1] != '\n' {
			return v, errors.New("bulk string not ended by CRLF")
		}
		v.Str = v.Str[:n]
	case '*':
		n, err := strconv.Atoi(string(rest))
		switch {
		case err != nil || n < -1 || n > respMaxArray:
			return v, fmt.Errorf("array length %q (at most %d)", rest, respMaxArray)
		case n == -1:
			v.Null = true
			return v, nil
		case depth >= respMaxDepth:
			return v, fmt.Errorf("arrays nested deeper than %d", respMaxDepth)
		}
		// Room grows with the elements read, not with the length claimed.
		v.Array = make([]respValue, 0, min(n, respChunk/64))
		for range n {
			e, err := readValue(r, depth+1)
			if err != nil {
				return v, err
			}
			v.Array = append(v.Array, e)
		}
	default:
		return v, fmt.Errorf("unknown reply type %q", v.Kind)
	}
	return v, nil
}

// readN reads n bytes into a buffer that grows as they arrive, so that a
// length claimed but not sent allocates little.
func readN(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, respChunk))
	for len(b) < n {
		k := min(n-len(b), respChunk)
		b = slices.Grow(b, k)
		m, err := io.ReadFull(r, b[len(b):len(b)+k])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// readLine returns a line without its CRLF, valid until the next read.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("line longer than %d bytes", r.Size())
	}
	if err != nil {
		return nil, err
	}
	if len(line) > respMaxLine {
		return nil, fmt.Errorf("line longer than %d bytes", respMaxLine)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errors.New("line not ended by CRLF")
	}
	return line[:len(line)-2], nil
}
