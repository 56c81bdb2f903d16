package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"sync"
	"time"
)

// The Redis streams peer: an external redis-server (bench/peers.sh starts
// one) with the append-only file on and `appendfsync always`, so that the
// reply to XADD comes after the entry's fsync. The harness speaks RESP to it
// with the pipelining client of redis_resp.go.
//
// How the workloads map:
//   - publish: XADD on a connection per producer, many in flight; the reply
//     is the acknowledgement.
//   - a subscription: a consumer group (XGROUP CREATE) on every stream of the
//     run; its consumers read with XREADGROUP ... COUNT n under their own
//     names (the subscription and the member index) and settle with XACK.
//     Fan-out is several groups on one stream.
//   - partitions: ignored (one stream) except under modePartitioned, where
//     each partition is a stream of its own, a keyed message goes to the
//     stream of its key's hash, and each member of the group reads its share
//     of the streams (stream i goes to member i mod members).
//   - key order: not offered. A group hands its entries to whichever consumer
//     reads next; order per key needs one reader per stream, which is the
//     consumer-group workload.
//
// Acked entries stay in a stream until it is trimmed: the runs are short,
// and Close deletes the run's streams.

const (
	// redisAddrEnv names the server's address; redisDefaultAddr is where
	// bench/peers.sh puts it.
	redisAddrEnv     = "SLUICE_BENCH_REDIS"
	redisDefaultAddr = "127.0.0.1:6379"
	// redisProducerWindow bounds the XADDs in flight on one producer's
	// connection, above the harness's own largest window (W3's).
	redisProducerWindow = 2 * w3Window
	// redisConsumerWindow bounds the commands in flight on a consumer's
	// connections (XACKs of several fetches, a read).
	redisConsumerWindow = 1024
	// redisBlock is how long one XREADGROUP waits on the server for new
	// entries before it is sent again.
	redisBlock = time.Second
	// redisMaxAckIDs bounds the entries one XACK settles.
	redisMaxAckIDs = 1000
)

func init() {
	addr := os.Getenv(redisAddrEnv)
	if addr == "" {
		addr = redisDefaultAddr
	}
	register(peerFactory{
		Name:       "redis",
		Durability: fsyncBeforeAck,
		Note: "external redis-server at " + addr + " ($" + redisAddrEnv + "; bench/peers.sh starts one): streams, " +
			"AOF with appendfsync always, consumer groups with XREADGROUP and XACK; a pipelining RESP client",
		Probe: func(ctx context.Context) error { return probeRedis(ctx, addr) },
		Open: func(ctx context.Context, dir string, opts openOptions) (peer, error) {
			return openRedis(ctx, addr)
		},
	})
}

// probeRedis checks that a server answers at addr and that it fsyncs its
// append-only file before it replies, as the peer's durability class says.
func probeRedis(ctx context.Context, addr string) error {
	c, err := dialRESP(ctx, addr, 4)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, want := range [][2]string{{"appendonly", "yes"}, {"appendfsync", "always"}} {
		v, err := c.Do(ctx, "CONFIG", "GET", want[0])
		if err != nil {
			return fmt.Errorf("redis at %s: CONFIG GET %s: %w", addr, want[0], err)
		}
		if len(v.Array) != 2 || string(v.Array[1].Str) != want[1] {
			return fmt.Errorf("redis at %s: %s is not %q (bench/peers.sh starts a server configured for the benchmark)", addr, want[0], want[1])
		}
	}
	return nil
}

type redisPeer struct {
	addr   string
	admin  *respConn
	prefix string // the run's keys start with it

	mu      sync.Mutex
	topo    topology
	streams []string       // every stream of the run
	members map[string]int // consumers opened per subscription
}

func openRedis(ctx context.Context, addr string) (*redisPeer, error) {
	admin, err := dialRESP(ctx, addr, 16)
	if err != nil {
		return nil, err
	}
	run := make([]byte, 6)
	rand.Read(run)
	p := &redisPeer{addr: addr, admin: admin, prefix: "sluicebench:" + hex.EncodeToString(run) + ":", members: map[string]int{}}
	p.streams = []string{p.prefix + "s0"}
	return p, nil
}

func (p *redisPeer) Unsupported(m mode) string {
	if m == modeKeyOrdered {
		return "Redis streams hand a group's entries to whichever consumer reads next: no order per key (one reader per stream is the consumer-group workload)"
	}
	return ""
}

func (p *redisPeer) Setup(ctx context.Context, t topology) error {
	p.mu.Lock()
	p.topo = t
	if t.Mode == modePartitioned {
		p.streams = p.streams[:0]
		for i := range max(t.Partitions, 1) {
			p.streams = append(p.streams, p.prefix+"s"+strconv.Itoa(i))
		}
	}
	streams := p.streams
	p.mu.Unlock()
	for _, s := range streams {
		for _, sub := range t.Subscriptions {
			if _, err := p.admin.Do(ctx, "XGROUP", "CREATE", s, sub, "0", "MKSTREAM"); err != nil {
				return fmt.Errorf("redis XGROUP CREATE %s %s: %w", s, sub, err)
			}
		}
	}
	return nil
}

func (p *redisPeer) NewProducer(ctx context.Context) (producer, error) {
	c, err := dialRESP(ctx, p.addr, redisProducerWindow)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return &redisProducer{c: c, streams: p.streams}, nil
}

func (p *redisPeer) NewConsumer(ctx context.Context, sub string, member int) (consumer, error) {
	read, err := dialRESP(ctx, p.addr, 4)
	if err != nil {
		return nil, err
	}
	acks, err := dialRESP(ctx, p.addr, redisConsumerWindow)
	if err != nil {
		read.Close()
		return nil, err
	}
	p.mu.Lock()
	p.members[sub]++
	p.mu.Unlock()
	return &redisConsumer{p: p, read: read, acks: acks, group: sub, name: sub + "-" + strconv.Itoa(member), member: member, pending: map[string][]any{}}, nil
}

// share returns the streams member reads: all of them, or under
// modePartitioned its share among the members opened so far (the harness
// opens a group's members before any of them fetches).
func (p *redisPeer) share(sub string, member int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.topo.Mode != modePartitioned {
		return p.streams
	}
	n := max(p.members[sub], member+1)
	var out []string
	for i, s := range p.streams {
		if i%n == member {
			out = append(out, s)
		}
	}
	return out
}

// BrokerRSS reads the server's resident set from /proc when the server runs
// on this machine, and otherwise takes the server's own figure
// (used_memory_rss).
func (p *redisPeer) BrokerRSS(ctx context.Context) (int64, error) {
	v, err := p.admin.Do(ctx, "INFO", "server")
	if err != nil {
		return 0, fmt.Errorf("redis INFO: %w", err)
	}
	if pid, err := strconv.Atoi(infoField(v.Str, "process_id")); err == nil {
		if rss, err := procRSS(pid); err == nil {
			return rss, nil
		}
	}
	if v, err = p.admin.Do(ctx, "INFO", "memory"); err != nil {
		return 0, fmt.Errorf("redis INFO: %w", err)
	}
	rss, err := strconv.ParseInt(infoField(v.Str, "used_memory_rss"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis INFO memory: no used_memory_rss")
	}
	return rss, nil
}

// infoField returns the value of name in the text of an INFO reply.
func infoField(info []byte, name string) string {
	for line := range bytes.Lines(info) {
		if v, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// Close deletes the run's streams (and with them their groups).
func (p *redisPeer) Close() error {
	defer p.admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []any{"DEL"}
	for _, s := range p.streams {
		args = append(args, s)
	}
	if _, err := p.admin.Do(ctx, args...); err != nil {
		return fmt.Errorf("redis DEL: %w", err)
	}
	return nil
}

// redisProducer XADDs on a connection of its own.
type redisProducer struct {
	c       *respConn
	streams []string
	next    int // the stream of the next unkeyed message, round robin
}

func (pr *redisProducer) Publish(ctx context.Context, m message, done func(error)) {
	s := pr.streams[0]
	if n := len(pr.streams); n > 1 {
		if m.Key != nil {
			h := fnv.New32a()
			h.Write(m.Key)
			s = pr.streams[h.Sum32()%uint32(n)]
		} else {
			s = pr.streams[pr.next]
			pr.next = (pr.next + 1) % n
		}
	}
	cb := func(_ respValue, err error) {
		if err != nil {
			err = fmt.Errorf("redis XADD: %w", err)
		}
		done(err)
	}
	if m.Key != nil {
		pr.c.Send(ctx, cb, "XADD", s, "*", "k", m.Key, "b", m.Body)
	} else {
		pr.c.Send(ctx, cb, "XADD", s, "*", "b", m.Body)
	}
}

// PublishBatch pipelines the batch's XADDs and waits for every reply.
func (pr *redisProducer) PublishBatch(ctx context.Context, msgs []message) error {
	return publishEach(ctx, pr.Publish, msgs)
}

func (pr *redisProducer) Close() error { return pr.c.Close() }

// redisConsumer reads on one connection and acks on another: a read blocked
// on the server holds its connection, and acks must not wait behind it. Ack
// only collects the entry's ID; the next Fetch (or WaitAcked, or Close) sends
// the collected IDs, one XACK per stream, as a Redis user would.
type redisConsumer struct {
	p           *redisPeer
	read, acks  *respConn
	group, name string
	member      int
	streams     []string // set by the first Fetch
	ids         []string // per stream: "0" while reading this member's own pending entries, then ">"
	inflight    chan redisRead
	buf         []delivery
	pending     map[string][]any // stream → IDs to ack
	npending    int
	mu          sync.Mutex
	ackErr      error // the first failed XACK; guarded by mu
}

// redisRead is the outcome of one XREADGROUP.
type redisRead struct {
	v   respValue
	err error
}

// redisHandle is a delivery's Handle: where to XACK it.
type redisHandle struct {
	stream, id string
}

func (c *redisConsumer) Fetch(ctx context.Context, max int) ([]delivery, error) {
	if c.streams == nil {
		c.streams = c.p.share(c.group, c.member)
		if len(c.streams) == 0 {
			// More members than partitions: this one idles.
			<-ctx.Done()
			return nil, ctx.Err()
		}
		for range c.streams {
			c.ids = append(c.ids, "0")
		}
	}
	for len(c.buf) == 0 {
		if err := c.takeAckErr(); err != nil {
			return nil, err
		}
		if c.inflight == nil {
			c.flushAcks(ctx)
			c.inflight = c.sendRead(ctx, max)
		}
		select {
		case r := <-c.inflight:
			c.inflight = nil
			if r.err != nil {
				return nil, fmt.Errorf("redis XREADGROUP: %w", r.err)
			}
			if err := c.collect(r.v); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	n := min(max, len(c.buf))
	out := c.buf[:n:n]
	c.buf = c.buf[n:]
	return out, nil
}

// sendRead sends one XREADGROUP over the consumer's streams. It blocks on
// the server only once every stream reads new entries (">"): a read of
// pending entries ("0" or an ID) answers at once.
func (c *redisConsumer) sendRead(ctx context.Context, count int) chan redisRead {
	args := []any{"XREADGROUP", "GROUP", c.group, c.name, "COUNT", count}
	history := false
	for _, id := range c.ids {
		history = history || id != ">"
	}
	if !history {
		args = append(args, "BLOCK", int(redisBlock/time.Millisecond))
	}
	args = append(args, "STREAMS")
	for _, s := range c.streams {
		args = append(args, s)
	}
	for _, id := range c.ids {
		args = append(args, id)
	}
	ch := make(chan redisRead, 1)
	c.read.Send(ctx, func(v respValue, err error) { ch <- redisRead{v, err} }, args...)
	return ch
}

// collect appends the entries of an XREADGROUP reply to buf. A stream whose
// pending entries came back empty moves on to new entries.
func (c *redisConsumer) collect(v respValue) error {
	if v.Null { // BLOCK timed out
		return nil
	}
	for _, sv := range v.Array {
		if len(sv.Array) != 2 {
			return fmt.Errorf("redis XREADGROUP: unexpected reply shape")
		}
		stream := string(sv.Array[0].Str)
		si := -1
		for i, s := range c.streams {
			if s == stream {
				si = i
			}
		}
		if si < 0 {
			return fmt.Errorf("redis XREADGROUP: a reply for stream %q, not read", stream)
		}
		entries := sv.Array[1].Array
		if c.ids[si] != ">" && len(entries) == 0 {
			c.ids[si] = ">"
		}
		for _, e := range entries {
			if len(e.Array) != 2 {
				return fmt.Errorf("redis XREADGROUP: unexpected entry shape")
			}
			id := string(e.Array[0].Str)
			if c.ids[si] != ">" {
				c.ids[si] = id // the next read of pending entries starts after it
			}
			h := redisHandle{stream: stream, id: id}
			if e.Array[1].Null { // trimmed while pending
				c.addAck(h)
				continue
			}
			d := delivery{Handle: h}
			f := e.Array[1].Array
			for i := 0; i+1 < len(f); i += 2 {
				switch string(f[i].Str) {
				case "k":
					d.Key = f[i+1].Str
				case "b":
					d.Body = f[i+1].Str
				}
			}
			c.buf = append(c.buf, d)
		}
	}
	return nil
}

func (c *redisConsumer) Ack(ctx context.Context, d delivery) error {
	h, ok := d.Handle.(redisHandle)
	if !ok {
		return fmt.Errorf("redis: ack of a delivery of another peer (%T)", d.Handle)
	}
	c.addAck(h)
	if c.npending >= redisMaxAckIDs {
		c.flushAcks(ctx)
	}
	return c.takeAckErr()
}

func (c *redisConsumer) addAck(h redisHandle) {
	ids := c.pending[h.stream]
	if ids == nil {
		ids = []any{"XACK", h.stream, c.group}
	}
	c.pending[h.stream] = append(ids, h.id)
	c.npending++
}

// flushAcks sends the collected IDs; a failure is reported by a later call.
func (c *redisConsumer) flushAcks(ctx context.Context) {
	for s, args := range c.pending {
		c.acks.Send(ctx, func(_ respValue, err error) {
			if err != nil {
				c.mu.Lock()
				if c.ackErr == nil {
					c.ackErr = fmt.Errorf("redis XACK: %w", err)
				}
				c.mu.Unlock()
			}
		}, args...)
		delete(c.pending, s)
	}
	c.npending = 0
}

func (c *redisConsumer) takeAckErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ackErr
}

// WaitAcked sends the collected IDs and waits for the server's replies to
// every XACK sent: the reply to a PING behind them on the same connection.
func (c *redisConsumer) WaitAcked(ctx context.Context) error {
	c.flushAcks(ctx)
	if _, err := c.acks.Do(ctx, "PING"); err != nil {
		return fmt.Errorf("redis: waiting for acks: %w", err)
	}
	return c.takeAckErr()
}

// Close sends the collected acks and closes both connections. Entries read
// but not acked stay pending to this consumer's name in the group: Redis
// does not hand them to others by itself (XCLAIM does); a consumer of the
// same name reads them again first.
func (c *redisConsumer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.WaitAcked(ctx)
	c.read.Close()
	c.acks.Close()
	if errors.Is(err, errRESPClosed) {
		err = nil
	}
	return err
}
