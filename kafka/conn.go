package kafka

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn is one client connection. Requests are served one at a time, in
// order, as Kafka brokers do; clients open separate connections for produce,
// fetch and group calls.
type conn struct {
	s        *Server
	nc       net.Conn
	clientID string
	// principal is set once SASL authentication succeeded (nil without
	// Options.Authenticate).
	principal Principal
	// saslMechanism is what SaslHandshake chose; "" before it.
	saslMechanism string
}

// requestHeader is a request's header (v1, or v2 for flexible requests).
type requestHeader struct {
	key, version int16
	correlation  int32
	clientID     string
}

// Connection timeouts.
const (
	// decodeTimeout bounds decoding one request. kmsg v1.13 reads a tagged
	// field section by counting down the count the request gives, up to 2^32,
	// even once the bytes have run out: an 80-byte request can take seconds
	// of CPU (found by FuzzRequest; kmsg v1.15 stops at the end of the
	// bytes, and needs a newer go line than this module keeps). Such a
	// request closes its connection after decodeTimeout; its decoding goes
	// on in the background until the count runs out.
	decodeTimeout = time.Second
	// idleTimeout closes a connection that sends no request for that long.
	idleTimeout = 10 * time.Minute
	// ioTimeout bounds reading the rest of a request once its size arrived,
	// and writing an answer.
	ioTimeout = time.Minute
)

// errFrame is a request that cannot be answered: the connection is closed.
var errFrame = errors.New("kafka: bad request frame")

// decode parses a request's body within decodeTimeout.
func decode(req kmsg.Request, body []byte) error {
	done := make(chan error, 1)
	go func() { done <- req.ReadFrom(body) }()
	t := time.NewTimer(decodeTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("decoding took over %v (a tagged field count far beyond the request's bytes)", decodeTimeout)
	}
}

// parseHeader parses the request header at the start of b and returns it with
// the offset of the body. Flexible requests (header v2) end the header with
// tagged fields, which are skipped.
func parseHeader(b []byte) (requestHeader, int, error) {
	var h requestHeader
	if len(b) < 10 {
		return h, 0, fmt.Errorf("%w: %d bytes, shorter than a request header", errFrame, len(b))
	}
	h.key = int16(binary.BigEndian.Uint16(b[0:]))
	h.version = int16(binary.BigEndian.Uint16(b[2:]))
	h.correlation = int32(binary.BigEndian.Uint32(b[4:]))
	n := int16(binary.BigEndian.Uint16(b[8:]))
	p := 10
	if n >= 0 {
		if len(b) < p+int(n) {
			return h, 0, fmt.Errorf("%w: client id of %d bytes past the end", errFrame, n)
		}
		h.clientID = string(b[p : p+int(n)])
		p += int(n)
	}
	if flexibleRequest(h.key, h.version) {
		skipped, err := skipTags(b[p:])
		if err != nil {
			return h, 0, err
		}
		p += skipped
	}
	return h, p, nil
}

// flexibleRequest reports whether a request uses header v2 (KIP-482).
func flexibleRequest(key, version int16) bool {
	req := kmsg.RequestForKey(key)
	if req == nil {
		return false
	}
	req.SetVersion(version)
	return req.IsFlexible()
}

// skipTags skips a tagged-field section and returns its length.
func skipTags(b []byte) (int, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad tagged field count", errFrame)
	}
	p := n
	for i := uint64(0); i < count; i++ {
		if _, m := binary.Uvarint(b[p:]); m <= 0 {
			return 0, fmt.Errorf("%w: bad tag", errFrame)
		} else {
			p += m
		}
		size, m := binary.Uvarint(b[p:])
		if m <= 0 || uint64(len(b)-p-m) < size {
			return 0, fmt.Errorf("%w: bad tagged field size", errFrame)
		}
		p += m + int(size)
	}
	return p, nil
}

// serveConn reads requests and writes their answers until the connection
// ends or the server shuts down.
func (s *Server) serveConn(nc net.Conn) {
	defer nc.Close()
	c := &conn{s: s, nc: nc}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() { // a closed connection cancels the request in progress
		<-ctx.Done()
		nc.Close()
	}()
	r := bufio.NewReaderSize(nc, 64<<10)
	w := bufio.NewWriterSize(nc, 64<<10)
	var sizeBuf [4]byte
	for {
		// An idle connection is closed after idleTimeout, as Kafka's
		// connections.max.idle.ms does; clients reconnect when they need to.
		nc.SetReadDeadline(time.Now().Add(idleTimeout))
		if _, err := io.ReadFull(r, sizeBuf[:]); err != nil {
			return
		}
		nc.SetReadDeadline(time.Now().Add(ioTimeout)) // the rest of the request
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if size < 0 || int(size) > s.opts.MaxRequestBytes {
			s.opts.Logger.Warn("kafka: request over MaxRequestBytes; connection closed", "bytes", size, "limit", s.opts.MaxRequestBytes, "remote", nc.RemoteAddr().String())
			return
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		out, err := c.handle(ctx, buf)
		if err != nil {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("kafka: connection closed", "remote", nc.RemoteAddr().String(), "client", c.clientID, "error", err)
			}
			return
		}
		if out == nil { // produce with acks=0: no answer
			continue
		}
		nc.SetWriteDeadline(time.Now().Add(ioTimeout)) // a client that stops reading
		if _, err := w.Write(out); err != nil {
			return
		}
		if r.Buffered() == 0 { // flush unless the client pipelined more
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// handle serves one request frame and returns the response frame, nil for
// none, or an error that closes the connection.
func (c *conn) handle(ctx context.Context, frame []byte) ([]byte, error) {
	h, body, err := parseHeader(frame)
	if err != nil {
		return nil, err
	}
	c.clientID = h.clientID
	hd, ok := handlers[h.key]
	if h.key == apiVersionsKey && (!ok || h.version < hd.min || h.version > hd.max) {
		// KIP-511: a client newer than us learns our versions from a v0 answer.
		return c.frame(h, unsupportedAPIVersions()), nil
	}
	if !ok {
		return nil, fmt.Errorf("%w: API key %d (%s) is not served", errFrame, h.key, kmsg.NameForKey(h.key))
	}
	if h.version < hd.min || h.version > hd.max {
		return nil, fmt.Errorf("%w: %s v%d outside the served v%d..v%d", errFrame, hd.name, h.version, hd.min, hd.max)
	}
	if c.s.opts.Authenticate != nil && c.principal == nil && !hd.open {
		return nil, fmt.Errorf("%w: %s before SASL authentication", errFrame, hd.name)
	}
	req := kmsg.RequestForKey(h.key)
	req.SetVersion(h.version)
	if err := decode(req, frame[body:]); err != nil {
		return nil, fmt.Errorf("%w: %s v%d: %v", errFrame, hd.name, h.version, err)
	}
	resp, err := hd.serve(c.s, ctx, c, req)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, nil
	}
	resp.SetVersion(h.version)
	return c.frame(h, resp), nil
}

// frame encodes a response with its size and header. A flexible response
// carries an empty tagged-field section in its header, except ApiVersions,
// whose header stays v0 so that any client can read it.
func (c *conn) frame(h requestHeader, resp kmsg.Response) []byte {
	out := make([]byte, 8, 256)
	binary.BigEndian.PutUint32(out[4:], uint32(h.correlation))
	if resp.IsFlexible() && h.key != apiVersionsKey {
		out = append(out, 0)
	}
	out = resp.AppendTo(out)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out
}

// may reports whether the connection's principal has the permission on the
// stream; every connection may when authentication is off.
func (c *conn) may(permission, stream string) bool {
	if c.s.opts.Authenticate == nil {
		return true
	}
	return c.principal != nil && c.principal.May(permission, stream)
}

// Kafka error codes used across files.
var (
	errUnknownTopic = kerr.UnknownTopicOrPartition.Code
	errTopicAuth    = kerr.TopicAuthorizationFailed.Code
	errGroupAuth    = kerr.GroupAuthorizationFailed.Code
)
