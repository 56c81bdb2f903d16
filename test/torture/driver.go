package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/test/internal/childserver"
)

// Config is what a torture run does. Zero fields take their defaults.
type Config struct {
	// Root is the module root, where cmd/sluice is built. Default: found from
	// the working directory upwards.
	Root string
	// ServerBin is a sluice binary to run instead of building one.
	ServerBin string
	// Data is the server's data directory; it must be empty or absent. Default:
	// a temporary directory, removed after a run that passed.
	Data string
	// Duration ends the kill phase; 0 means no limit (then Kills must be set).
	Duration time.Duration
	// Kills ends the kill phase after that many SIGKILLs; 0 means no limit.
	Kills int
	// KillMin and KillMax bound the random time the server runs before each
	// kill. Defaults 1 s and 10 s.
	KillMin, KillMax time.Duration
	// Seed seeds the kill times and the workload. Default: the time.
	Seed uint64
	// Producers is the number of concurrent publishers. Default 4.
	Producers int
	// DrainTimeout bounds the drain after the kills. Default 2 min.
	DrainTimeout time.Duration
	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

func (c *Config) setDefaults() error {
	if c.KillMin == 0 {
		c.KillMin = time.Second
	}
	if c.KillMax == 0 {
		c.KillMax = 10 * time.Second
	}
	if c.Producers == 0 {
		c.Producers = 4
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 2 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch {
	case c.KillMin <= 0 || c.KillMax < c.KillMin:
		return fmt.Errorf("kill interval [%v, %v] is empty", c.KillMin, c.KillMax)
	case c.Duration <= 0 && c.Kills <= 0:
		return errors.New("neither a duration nor a number of kills ends the run")
	case c.Producers < 1 || c.Producers > 64:
		return fmt.Errorf("producers %d outside [1, 64]", c.Producers)
	}
	return nil
}

// Run runs the torture: it starts the server, runs the workload while killing
// and restarting the server, restarts it cleanly, drains, and checks. The
// error is for a run that could not be carried out; a failed check is in the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, "torture: "+format+"\n", args...) }
	tmp, err := os.MkdirTemp("", "sluice-torture-")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	bin := cfg.ServerBin
	if bin == "" {
		root := cfg.Root
		if root == "" {
			if root, err = childserver.FindRoot("."); err != nil {
				return nil, err
			}
		}
		logf("building cmd/sluice in %s", root)
		if bin, err = childserver.Build(ctx, root, tmp); err != nil {
			return nil, err
		}
	}
	data := cfg.Data
	if data == "" {
		data = filepath.Join(tmp, "data")
	} else if ents, err := os.ReadDir(data); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("data directory %s is not empty", data)
	}
	addr, err := childserver.FreeAddr()
	if err != nil {
		return nil, err
	}
	srv := &childserver.Server{Bin: bin, Addr: addr, Data: data, LogPath: filepath.Join(tmp, "server.log")}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	defer srv.Kill()
	logf("server on %s, data %s, seed %d", addr, data, cfg.Seed)

	rep, err := runWorkload(ctx, cfg, srv, logf)
	if err != nil || rep.Failed() {
		keep = true
		logf("kept %s (server log, data)", tmp)
	}
	return rep, err
}

// runWorkload is Run once the server is up.
func runWorkload(ctx context.Context, cfg Config, srv *childserver.Server, logf func(string, ...any)) (*Report, error) {
	dial := func() (*client.Client, error) { return client.Dial(srv.Addr) }
	admin, err := dial()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = setupStream(sctx, admin)
	cancel()
	if err != nil {
		return nil, err
	}
	chk := NewChecker(subSpecs(), partitions, maxDeliveries)
	var n counters

	var fatalOnce sync.Once
	var fatalErr error
	runCtx, abort := context.WithCancel(ctx)
	defer abort()
	fatal := func(err error) {
		fatalOnce.Do(func() { fatalErr = err; abort() })
	}

	// Consumers, one client per subscription.
	consCtx, stopConsumers := context.WithCancel(runCtx)
	var consWG sync.WaitGroup
	var closers []func() error
	defer func() {
		stopConsumers()
		consWG.Wait()
		for _, c := range closers {
			_ = c()
		}
	}()
	for si, s := range subscriptions {
		c, err := dial()
		if err != nil {
			return nil, err
		}
		closers = append(closers, c.Close)
		for k := range s.consumers {
			con, err := c.NewConsumer(ctx, streamName, s.spec.name, sluice.ConsumerConfig{
				Name: fmt.Sprintf("%s-%d", s.spec.name, k), MaxInFlight: 256})
			if err != nil {
				return nil, err
			}
			closers = append(closers, con.Close)
			consWG.Go(func() { consume(consCtx, con, si, k, chk, &n) })
		}
	}

	// Producers share one client.
	pc, err := dial()
	if err != nil {
		return nil, err
	}
	closers = append(closers, pc.Close)
	stopProd, stopProducers := context.WithCancel(runCtx)
	defer stopProducers()
	hardProd, hardStop := context.WithCancel(runCtx)
	defer hardStop()
	var prodWG sync.WaitGroup
	for p := range cfg.Producers {
		prodWG.Go(func() { producer(stopProd, hardProd, pc, chk, &n, cfg.Seed+uint64(p)*7919, fatal) })
	}

	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	start := time.Now()
	killCount := 0
	report := func(phase string) {
		logf("%s t=%.0fs published=%d acked=%d deliveries=%d kills=%d publish_errors=%d fetch_errors=%d",
			phase, time.Since(start).Seconds(), n.published.Load(), n.acked.Load(), n.deliveries.Load(), killCount, n.publishErrors.Load(), n.fetchErrors.Load())
	}

	// The kill phase.
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	var end <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	killPhase := true
	for killPhase && (cfg.Kills == 0 || killCount < cfg.Kills) {
		wait := cfg.KillMin + time.Duration(rng.Int64N(int64(cfg.KillMax-cfg.KillMin)+1))
		timer := time.NewTimer(wait)
	waitLoop:
		for {
			select {
			case <-timer.C:
				break waitLoop
			case <-progress.C:
				report("running")
			case <-end:
				killPhase = false
				break waitLoop
			case <-runCtx.Done():
				timer.Stop()
				if fatalErr != nil {
					return nil, fatalErr
				}
				return nil, runCtx.Err()
			}
		}
		timer.Stop()
		if !killPhase {
			break
		}
		if srv.Exited() {
			return nil, fmt.Errorf("server died on its own; log tail:\n%s", srv.LogTail())
		}
		srv.Kill()
		killCount++
		chk.SetEpoch(killCount)
		if err := srv.Start(runCtx); err != nil {
			return nil, fmt.Errorf("restart after kill %d: %w", killCount, err)
		}
	}
	report("kills done")

	// Stop the producers: each finishes its message in progress, for up to a
	// minute.
	stopProducers()
	finished := make(chan struct{})
	go func() { prodWG.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		hardStop()
		<-finished
	}

	// The clean restart, then the drain.
	if err := srv.Stop(30 * time.Second); err != nil {
		return nil, err
	}
	chk.SetEpoch(killCount + 1)
	if err := srv.Start(runCtx); err != nil {
		return nil, fmt.Errorf("clean restart: %w", err)
	}
	report("restarted cleanly")
	undrained := drain(runCtx, admin, cfg.DrainTimeout, progress.C, report)
	stopConsumers()
	consWG.Wait()
	if fatalErr != nil {
		return nil, fatalErr
	}

	dead := make([][]sluice.DeadLetter, len(subscriptions))
	for i, s := range subscriptions {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		dead[i], err = deadLetters(dctx, admin, s.spec.name)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	rep := chk.Finish(dead)
	rep.Kills = killCount
	rep.Undrained = undrained
	if srv.Exited() {
		return &rep, fmt.Errorf("server died on its own; log tail:\n%s", srv.LogTail())
	}
	return &rep, nil
}

// drain waits until every subscription's backlog is 0, or timeout, and returns
// the subscriptions left with a backlog.
func drain(ctx context.Context, c sluice.Client, timeout time.Duration, tick <-chan time.Time, report func(string)) []string {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, s := range subscriptions {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := c.Subscription(qctx, streamName, s.spec.name)
			cancel()
			if err != nil {
				left = append(left, s.spec.name+" ("+err.Error()+")")
			} else if info.Backlog != 0 {
				left = append(left, fmt.Sprintf("%s (backlog %d, in flight %d, waiting %d)", s.spec.name, info.Backlog, info.InFlight, info.Waiting))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return left
		}
		select {
		case <-tick:
			report("draining")
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// deadLetters lists every dead letter of a subscription.
func deadLetters(ctx context.Context, c sluice.Client, sub string) ([]sluice.DeadLetter, error) {
	var out []sluice.DeadLetter
	from := int64(0)
	for {
		dls, next, err := c.DeadLetters(ctx, streamName, sub, sluice.DeadLetterQuery{From: from, Limit: sluice.MaxDeadLetterLimit, IncludeRedriven: true})
		if err != nil {
			return nil, fmt.Errorf("dead letters of %s: %w", sub, err)
		}
		out = append(out, dls...)
		if next <= from {
			return out, nil
		}
		from = next
	}
}
