package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// config is one soak run.
type config struct {
	Duration  time.Duration
	Interval  time.Duration // between samples
	Producers int
	Consumers int
	Clients   int // network clients the producers and consumers share
	Rate      int // messages per second per producer; 0: as fast as acknowledged
	BodyBytes int
	Child     bool   // run the server as a child process
	Bin       string // the sluice binary for Child; built when empty
	Dir       string // data and binary
	Drain     time.Duration
	// NoRateRule leaves the rate rule out of the verdict (the rates are still
	// printed): the short test runs on a shared machine beside other test
	// packages, where a slower second half says more about the neighbours
	// than about the broker, and a test must not assert timings.
	NoRateRule bool
}

const (
	streamName = "soak"
	subName    = "workers"
	// Growth rule: a figure grows without bound when its last sample is more
	// than twice its sample at a third of the run and above its floor.
	goroutineFloor = 2000
	rssFloor       = 512 << 20
)

// sample is one row of the table.
type sample struct {
	at                  time.Duration
	pubRate, conRate    float64
	backlog, goroutines int64
	rss                 int64
}

// verdict sums a run up.
type verdict struct {
	duration            time.Duration
	published, consumed int64
	lost                int64
	rates               [3]float64 // consume rate min, median, max
	goroutinesMax       int64
	rssMax              int64
	failures            []string
}

func (v verdict) ok() bool { return len(v.failures) == 0 }

func (v verdict) String() string {
	s := fmt.Sprintf("SOAK duration=%v published=%d consumed=%d rate_min/median/max=%.0f/%.0f/%.0f goroutines_max=%d rss_max_mib=%.1f lost=%d",
		v.duration.Round(time.Second), v.published, v.consumed, v.rates[0], v.rates[1], v.rates[2], v.goroutinesMax, float64(v.rssMax)/(1<<20), v.lost)
	if v.ok() {
		return s + " PASS"
	}
	return s + " FAIL: " + strings.Join(v.failures, "; ")
}

// seen records which sequence numbers of each producer were consumed.
type seen struct {
	mu   sync.Mutex
	bits [][]uint64
	n    int64 // distinct
}

func (s *seen) add(p, seq int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.bits[p]) <= seq/64 {
		s.bits[p] = append(s.bits[p], 0)
	}
	if s.bits[p][seq/64]&(1<<(seq%64)) == 0 {
		s.bits[p][seq/64] |= 1 << (seq % 64)
		s.n++
	}
}

func (s *seen) has(p, seq int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seq/64 < len(s.bits[p]) && s.bits[p][seq/64]&(1<<(seq%64)) != 0
}

// run soaks a broker and prints a row to out every Interval; it returns the
// verdict, or an error when the run could not be made.
func run(ctx context.Context, cfg config, out io.Writer) (verdict, error) {
	var br *broker
	var err error
	if cfg.Child {
		br, err = startChild(ctx, cfg.Bin, cfg.Dir)
	} else {
		br, err = startInProcess(cfg.Dir)
	}
	if err != nil {
		return verdict{}, err
	}
	v, err := soak(ctx, cfg, br, out)
	return v, errors.Join(err, br.stop())
}

func soak(ctx context.Context, cfg config, br *broker, out io.Writer) (verdict, error) {
	clients := make([]*client.Client, cfg.Clients)
	for i := range clients {
		c, err := client.Dial(br.addr, client.WithTimeout(10*time.Second))
		if err != nil {
			return verdict{}, err
		}
		defer c.Close()
		clients[i] = c
	}
	admin := clients[0]
	if _, err := admin.CreateStream(ctx, sluice.StreamConfig{Name: streamName, Partitions: 8,
		Retention: sluice.Retention{Policy: sluice.RetainWork}}); err != nil {
		return verdict{}, err
	}
	if _, err := admin.CreateSubscription(ctx, streamName, sluice.SubscriptionConfig{Name: subName, Lease: 30 * time.Second}); err != nil {
		return verdict{}, err
	}

	var published, consumed atomic.Int64
	sent := make([]atomic.Int64, cfg.Producers) // acknowledged sequence numbers: 0..sent-1
	got := &seen{bits: make([][]uint64, cfg.Producers)}
	var errMu sync.Mutex
	var errs []string
	fail := func(format string, a ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, a...))
		}
	}

	pctx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	var pwg sync.WaitGroup
	body := make([]byte, cfg.BodyBytes)
	for p := range cfg.Producers {
		prod, err := sluice.NewProducer(clients[p%len(clients)], streamName, sluice.ProducerConfig{MaxAttempts: 20})
		if err != nil {
			return verdict{}, err
		}
		pwg.Go(func() {
			var tick <-chan time.Time
			if cfg.Rate > 0 {
				t := time.NewTicker(time.Second / time.Duration(cfg.Rate))
				defer t.Stop()
				tick = t.C
			}
			for seq := 0; ; seq++ {
				if tick != nil {
					select {
					case <-tick:
					case <-pctx.Done():
						return
					}
				} else if pctx.Err() != nil {
					return
				}
				key := strconv.Itoa(p) + "-" + strconv.Itoa(seq)
				msg := sluice.Message{Key: []byte(key), IdempotencyKey: key, Body: body}
				// The last publish is finished even when the run ends, so that
				// what was tried is acknowledged or failed, not left unknown.
				if _, err := prod.Publish(context.WithoutCancel(pctx), msg); err != nil {
					fail("publish %s: %v", key, err)
					return
				}
				sent[p].Store(int64(seq + 1))
				published.Add(1)
			}
		})
	}

	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	var cwg sync.WaitGroup
	for i := range cfg.Consumers {
		con, err := clients[i%len(clients)].NewConsumer(ctx, streamName, subName, sluice.ConsumerConfig{})
		if err != nil {
			return verdict{}, err
		}
		cwg.Go(func() {
			defer con.Close()
			for cctx.Err() == nil {
				fctx, cancel := context.WithTimeout(cctx, time.Second)
				ds, err := con.Fetch(fctx, 50)
				cancel()
				if err != nil {
					if cctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
						fail("fetch: %v", err)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				for _, d := range ds {
					p, seq, ok := parseKey(string(d.Key))
					if !ok || p >= cfg.Producers {
						fail("delivery with key %q", d.Key)
						continue
					}
					got.add(p, seq)
				}
				for j, err := range con.AckMany(context.WithoutCancel(cctx), ds) {
					if err != nil {
						fail("ack %s: %v", ds[j].Key, err)
					}
				}
				consumed.Add(int64(len(ds)))
			}
		})
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	var samples []sample
	start := time.Now()
	fmt.Fprintf(out, "%8s %10s %10s %10s %10s %9s\n", "elapsed", "pub/s", "con/s", "backlog", "goroutines", "rss_mib")
	tick := time.NewTicker(cfg.Interval)
	lastPub, lastCon, lastAt := int64(0), int64(0), start
	for running := true; running; {
		select {
		case <-tick.C:
		case <-ctx.Done():
			running = false
		}
		now := time.Now()
		if now.Sub(start) >= cfg.Duration {
			running = false
		}
		pub, con := published.Load(), consumed.Load()
		dt := now.Sub(lastAt).Seconds()
		s := sample{at: now.Sub(start), pubRate: float64(pub-lastPub) / dt, conRate: float64(con-lastCon) / dt}
		lastPub, lastCon, lastAt = pub, con, now
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if info, err := admin.Subscription(sctx, streamName, subName); err == nil {
			s.backlog = info.Backlog
		} else {
			fail("sample subscription: %v", err)
		}
		if g, err := goroutines(sctx, hc, br.addr); err == nil {
			s.goroutines = g
		} else {
			fail("sample goroutines: %v", err)
		}
		cancel()
		if r, err := rssBytes(br.pid); err == nil {
			s.rss = r
		} else {
			fail("sample rss: %v", err)
		}
		samples = append(samples, s)
		fmt.Fprintf(out, "%8v %10.0f %10.0f %10d %10d %9.1f\n", s.at.Round(time.Second), s.pubRate, s.conRate, s.backlog, s.goroutines, float64(s.rss)/(1<<20))
	}
	tick.Stop()
	elapsed := time.Since(start)

	// Final drain: stop publishing, then wait until everything acknowledged
	// was consumed.
	stopProducers()
	pwg.Wait()
	missing := func() int64 {
		var n int64
		for p := range sent {
			for seq := range int(sent[p].Load()) {
				if !got.has(p, seq) {
					n++
				}
			}
		}
		return n
	}
	drainBy := time.Now().Add(cfg.Drain)
	lost := missing()
	for lost > 0 && time.Now().Before(drainBy) && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		lost = missing()
	}
	stopConsumers()
	cwg.Wait()
	fmt.Fprintf(out, "drained in %v\n", time.Since(drainBy.Add(-cfg.Drain)).Round(time.Millisecond))

	v := judge(samples, elapsed, !cfg.NoRateRule)
	v.published, v.consumed, v.lost = published.Load(), consumed.Load(), lost
	if lost > 0 {
		v.failures = append(v.failures, fmt.Sprintf("%d acknowledged messages not consumed %v after publishing stopped", lost, cfg.Drain))
	}
	v.failures = append(v.failures, errs...)
	return v, nil
}

func parseKey(k string) (p, seq int, ok bool) {
	a, b, found := strings.Cut(k, "-")
	if !found {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(a)
	seq, err2 := strconv.Atoi(b)
	return p, seq, err1 == nil && err2 == nil && p >= 0 && seq >= 0
}

// judge applies the rules to the samples:
//   - the rate collapses when the median consume rate of the last third of
//     the samples is below half that of the first third (the first sample,
//     the warm-up, left out);
//   - goroutines or RSS grow without bound when the last sample is more than
//     twice the sample at a third of the run and above the floor.
func judge(samples []sample, elapsed time.Duration, rateRule bool) verdict {
	v := verdict{duration: elapsed}
	if len(samples) == 0 {
		v.failures = append(v.failures, "no samples")
		return v
	}
	rates := make([]float64, len(samples))
	for i, s := range samples {
		rates[i] = s.conRate
		v.goroutinesMax = max(v.goroutinesMax, s.goroutines)
		v.rssMax = max(v.rssMax, s.rss)
	}
	sorted := slices.Sorted(slices.Values(rates))
	v.rates = [3]float64{sorted[0], median(rates), sorted[len(sorted)-1]}
	if len(samples) < 4 {
		v.failures = append(v.failures, fmt.Sprintf("%d samples: too few to judge (at least 4)", len(samples)))
		return v
	}
	body := rates[1:]
	third := len(body) / 3
	first, last := median(body[:third]), median(body[len(body)-third:])
	if rateRule && last < first/2 {
		v.failures = append(v.failures, fmt.Sprintf("consume rate collapsed: median %.0f/s in the last third, %.0f/s in the first", last, first))
	}
	ref, end := samples[len(samples)/3], samples[len(samples)-1]
	if end.goroutines > 2*ref.goroutines && end.goroutines > goroutineFloor {
		v.failures = append(v.failures, fmt.Sprintf("goroutines grew from %d to %d", ref.goroutines, end.goroutines))
	}
	if end.rss > 2*ref.rss && end.rss > rssFloor {
		v.failures = append(v.failures, fmt.Sprintf("RSS grew from %.1f to %.1f MiB", float64(ref.rss)/(1<<20), float64(end.rss)/(1<<20)))
	}
	return v
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
