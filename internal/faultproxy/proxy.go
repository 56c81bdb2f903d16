package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction selects which way a fault applies; the values combine.
type Direction int

const (
	// Upstream is the data from the client to the target.
	Upstream Direction = 1 << iota
	// Downstream is the data from the target to the client.
	Downstream
	// Both is Upstream and Downstream.
	Both = Upstream | Downstream
)

// Limits of the faults and of the proxy's buffering.
const (
	// MaxDelay bounds a latency, a jitter and a slicer's pause.
	MaxDelay = time.Minute
	// chunkSize is the most one read takes; queueLen the chunks a direction
	// holds between its reader and its writer.
	chunkSize = 32 << 10
	queueLen  = 64
	// dialTimeout bounds the dial of the target.
	dialTimeout = 5 * time.Second
)

// faults are the faults of one direction. The zero value is no fault.
type faults struct {
	latency, jitter time.Duration
	// sliceMax > 0 splits each write into chunks of 1..sliceMax bytes, with a
	// pause of up to slicePause after each.
	sliceMax   int
	slicePause time.Duration
	// blackhole holds the data: nothing is written while it is set.
	blackhole bool
	// resetAfter > 0 resets each connection after a random number of bytes in
	// [1, resetAfter] have passed this way since it was set.
	resetAfter int64
}

// Stats counts a proxy's connections.
type Stats struct {
	Accepted int64 // connections accepted
	Resets   int64 // connections reset by a fault or ResetAll
	Open     int   // connections open now
}

// Proxy forwards the connections made to Addr to its target, with faults.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	f      [2]faults // by direction index: 0 upstream, 1 downstream
	gen    uint64    // incremented on every change of f
	change chan struct{}
	links  map[*link]struct{}
	closed bool

	accepted, resets atomic.Int64
	wg               sync.WaitGroup
}

// New returns a proxy listening on 127.0.0.1 (a free port) that forwards to
// target ("host:port").
func New(target string) (*Proxy, error) {
	if target == "" {
		return nil, errors.New("faultproxy: target required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, change: make(chan struct{}), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	n := len(p.links)
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Resets: p.resets.Load(), Open: n}
}

// update applies fn to the faults of each direction in dir and wakes the
// writers, which read the faults again.
func (p *Proxy) update(dir Direction, fn func(*faults)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, d := range []Direction{Upstream, Downstream} {
		if dir&d != 0 {
			fn(&p.f[i])
		}
	}
	p.gen++
	close(p.change)
	p.change = make(chan struct{})
}

func checkDelay(what string, d time.Duration) {
	if d < 0 || d > MaxDelay {
		panic(fmt.Sprintf("faultproxy: %s %v outside [0, %v]", what, d, MaxDelay))
	}
}

// SetLatency delays the data of dir by delay plus a random jitter in
// [-jitter, +jitter] (never below zero), chunk by chunk and in order. Zero
// removes it.
func (p *Proxy) SetLatency(dir Direction, delay, jitter time.Duration) {
	checkDelay("latency", delay)
	checkDelay("jitter", jitter)
	p.update(dir, func(f *faults) { f.latency, f.jitter = delay, jitter })
}

// SetSlicer splits each write of dir into chunks of 1 to maxChunk bytes and
// pauses up to maxPause after each. A maxChunk of 0 removes it.
func (p *Proxy) SetSlicer(dir Direction, maxChunk int, maxPause time.Duration) {
	if maxChunk < 0 {
		panic(fmt.Sprintf("faultproxy: slicer chunk %d below 0", maxChunk))
	}
	checkDelay("slicer pause", maxPause)
	p.update(dir, func(f *faults) { f.sliceMax, f.slicePause = maxChunk, maxPause })
}

// SetBlackhole holds (on) or releases (off) the data of dir: the connections
// stay open and carry nothing that way, new connections are accepted and
// held too. Data read meanwhile waits in the proxy's bounded buffers and the
// kernel's, and flows again, in order, when the blackhole lifts.
func (p *Proxy) SetBlackhole(dir Direction, on bool) {
	p.update(dir, func(f *faults) { f.blackhole = on })
}

// SetResetAfter makes every connection, open or new, reset (RST) once a
// random number of bytes in [1, maxBytes] more have passed in dir. Zero
// removes it.
func (p *Proxy) SetResetAfter(dir Direction, maxBytes int64) {
	if maxBytes < 0 {
		panic(fmt.Sprintf("faultproxy: reset after %d bytes below 0", maxBytes))
	}
	p.update(dir, func(f *faults) { f.resetAfter = maxBytes })
}

// Clear removes every fault; held data flows again.
func (p *Proxy) Clear() {
	p.update(Both, func(f *faults) { *f = faults{} })
}

// HoldOpen blackholes, both ways and for good, the connections open now,
// while new connections pass: a connection that went silent without a reset
// (a NAT or load balancer that forgot it), which only the client's own
// health checks can detect.
func (p *Proxy) HoldOpen() {
	p.mu.Lock()
	for l := range p.links {
		l.held.Store(true)
	}
	p.mu.Unlock()
	p.update(0, func(*faults) {})
}

// ResetAll resets every open connection, both sides, with RST.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		l.reset()
	}
}

// Close stops accepting, closes every connection and waits for all the
// proxy's goroutines. A second Close does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range ls {
		l.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for c and runs the link.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	t, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		resetConn(c)
		return
	}
	l := &link{p: p, conns: [2]net.Conn{c, t}, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		t.Close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	for i := range 2 {
		q := make(chan chunk, queueLen)
		from, to := l.conns[i], l.conns[1-i]
		wg.Go(func() { l.read(from, q) })
		wg.Go(func() { l.write(i, to, q) })
	}
	wg.Wait()
	l.close(false)
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// chunk is data read from one side; nil data with eof set marks the end.
type chunk struct {
	data []byte
	at   time.Time
	eof  bool
}

// link is one proxied connection: conns[0] the client's, conns[1] the
// target's.
type link struct {
	p     *Proxy
	conns [2]net.Conn
	once  sync.Once
	done  chan struct{} // closed when the link closes
	// writers counts the directions still writing; the last to finish
	// closes the link.
	writers atomic.Int32
	// held blackholes the link for good (HoldOpen).
	held atomic.Bool
}

func (l *link) reset() {
	l.close(true)
}

// close closes both connections, with RST when rst is set.
func (l *link) close(rst bool) {
	l.once.Do(func() {
		if rst {
			l.p.resets.Add(1)
			resetConn(l.conns[0])
			resetConn(l.conns[1])
		} else {
			l.conns[0].Close()
			l.conns[1].Close()
		}
		close(l.done)
	})
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// read reads from c into q until c ends, then queues the end.
func (l *link) read(c net.Conn, q chan<- chunk) {
	for {
		buf := make([]byte, chunkSize)
		n, err := c.Read(buf)
		if n > 0 {
			select {
			case q <- chunk{data: buf[:n], at: time.Now()}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				select {
				case q <- chunk{eof: true}:
				case <-l.done:
				}
			} else {
				l.close(false)
			}
			return
		}
	}
}

// write writes the chunks of q to c under the faults of direction i.
func (l *link) write(i int, c net.Conn, q <-chan chunk) {
	var (
		gen       uint64 = ^uint64(0)
		f         faults
		change    <-chan struct{}
		budget    int64 // bytes left before a reset; <0: none armed
		armedWith int64
	)
	budget = -1
	// load reads the faults again when they changed.
	load := func() {
		l.p.mu.Lock()
		if l.p.gen != gen {
			gen, f, change = l.p.gen, l.p.f[i], l.p.change
		}
		l.p.mu.Unlock()
		if f.resetAfter != armedWith {
			armedWith = f.resetAfter
			budget = -1
			if f.resetAfter > 0 {
				budget = 1 + rand.Int64N(f.resetAfter)
			}
		}
	}
	// wait sleeps d, or until the link closes (false).
	wait := func(d time.Duration) bool {
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-l.done:
			return false
		}
	}
	for {
		var ch chunk
		select {
		case ch = <-q:
		case <-l.done:
			return
		}
		if ch.eof {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			if l.writers.Add(1) == 2 {
				l.close(false)
			}
			return
		}
		data := ch.data
		for len(data) > 0 {
			load()
			if f.blackhole || l.held.Load() {
				select {
				case <-change:
					continue
				case <-l.done:
					return
				}
			}
			if f.latency > 0 || f.jitter > 0 {
				d := f.latency
				if f.jitter > 0 {
					d += time.Duration(rand.Int64N(int64(2*f.jitter)+1)) - f.jitter
				}
				if !wait(time.Until(ch.at.Add(d))) {
					return
				}
			}
			n := len(data)
			if f.sliceMax > 0 {
				n = min(n, 1+rand.IntN(f.sliceMax))
			}
			if budget >= 0 && int64(n) >= budget {
				// Send what the budget allows, then reset.
				if budget > 0 {
					_, _ = c.Write(data[:budget])
				}
				l.reset()
				return
			}
			if _, err := c.Write(data[:n]); err != nil {
				l.close(false)
				return
			}
			if budget >= 0 {
				budget -= int64(n)
			}
			data = data[n:]
			if f.sliceMax > 0 && f.slicePause > 0 && len(data) > 0 {
				if !wait(rand.N(f.slicePause + 1)) {
					return
				}
			}
		}
	}
}
