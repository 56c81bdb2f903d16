package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
	"github.com/sluicemq/sluice/internal/vfs"
)

// powerEnv is a stream and a subscription on vfs.Mem, whose Crash loses every
// write that was not synced, the way a power failure does.
type powerEnv struct {
	t     *testing.T
	ctx   context.Context
	fs    *vfs.Mem
	clk   *clock
	cfg   Config
	parts []logstore.Log
	sub   *Sub
}

const powerPartitions = 2

var quiet = slog.New(slog.DiscardHandler)

func newPowerEnv(t *testing.T, cfg Config) *powerEnv {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pe := &powerEnv{t: t, ctx: ctx, fs: vfs.NewMem(), clk: &clock{t: time.UnixMilli(1_700_000_000_000)}, cfg: cfg}
	// The subscription's directory is durable before it opens, as the broker's
	// CreateSubscription makes it: Open leaves that to its caller.
	if err := pe.fs.MkdirAll("/data/sub"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/", "/data"} {
		if err := pe.fs.SyncDir(d); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(pe.halt)
	pe.open()
	return pe
}

func (pe *powerEnv) open() {
	pe.t.Helper()
	pe.parts = nil
	for i := range powerPartitions {
		// SyncAlways: a published message survives the crash; only the
		// subscription's journal (SyncInterval) has unsynced writes to lose.
		p, err := logstore.Open(logstore.Config{Dir: fmt.Sprintf("/data/stream/%d", i), FS: pe.fs, Sync: logstore.SyncAlways, Logger: quiet})
		if err != nil {
			pe.t.Fatal(err)
		}
		pe.parts = append(pe.parts, p)
	}
	s, err := Open(Options{
		Config: pe.cfg, Dir: "/data/sub", FS: pe.fs, Now: pe.clk.now, Logger: quiet,
		Partitions: func() []logstore.Log { return pe.parts },
		DeadLetter: func(context.Context, DeadMessage) error {
			return errors.New("no dead letters expected under at_most_once")
		},
	})
	if err != nil {
		pe.t.Fatal(err)
	}
	pe.sub = s
}

// halt stops the subscription and the stream without writing anything more, the
// way the process would stop at a power failure: no compaction, no final sync
// (the file handles are dead after Crash anyway).
func (pe *powerEnv) halt() {
	if s := pe.sub; s != nil {
		s.mu.Lock()
		if !s.closed {
			s.closed = true
			close(s.stop)
			s.broadcastLocked()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.journal.Close()
		pe.sub = nil
	}
	for _, p := range pe.parts {
		p.Close()
	}
	pe.parts = nil
}

// crash is a power failure followed by a restart.
func (pe *powerEnv) crash(rng *rand.Rand) {
	pe.t.Helper()
	pe.fs.Crash(rng)
	pe.halt()
	pe.open()
}

func (pe *powerEnv) publish(rng *rand.Rand, value string) {
	pe.t.Helper()
	r := batch.Record{Timestamp: pe.clk.now().UnixMilli(), Key: []byte(fmt.Sprintf("k%d", rng.IntN(4))), Value: []byte(value)}
	if _, err := pe.parts[rng.IntN(powerPartitions)].Append(pe.ctx, batch.Append(nil, []batch.Record{r})); err != nil {
		pe.t.Fatal(err)
	}
}

// fetch fetches without waiting long: an empty result means nothing is available.
func (pe *powerEnv) fetch(limit int) []Delivery {
	pe.t.Helper()
	ctx, cancel := context.WithTimeout(pe.ctx, 30*time.Millisecond)
	defer cancel()
	ds, err := pe.sub.Fetch(ctx, "c", limit, 1000)
	if err != nil && ctx.Err() == nil {
		pe.t.Fatal(err)
	}
	return ds
}

// TestAtMostOncePowerLossNeverRedelivers: once Fetch has returned, a power
// failure (every unsynced write lost or torn) and a restart never hand those
// messages out again; and every message is handed out exactly once over many
// crashes, since the test crashes only between fetches.
func TestAtMostOncePowerLossNeverRedelivers(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			for seed := range uint64(10) {
				rng := rand.New(rand.NewPCG(seed, 21))
				pe := newPowerEnv(t, Config{Name: "amo", Mode: mode, Delivery: AtMostOnce})
				published := 0
				handed := map[string]int{}
				take := func(ds []Delivery) {
					for _, d := range ds {
						if handed[string(d.Value)]++; handed[string(d.Value)] > 1 {
							t.Fatalf("seed %d: %s handed out again after a power failure", seed, d.Value)
						}
					}
				}
				for range 8 {
					for range 5 + rng.IntN(20) {
						pe.publish(rng, fmt.Sprintf("m%d", published))
						published++
					}
					for range 1 + rng.IntN(4) {
						take(pe.fetch(1 + rng.IntN(8)))
					}
					pe.crash(rng)
				}
				for {
					ds := pe.fetch(50)
					if len(ds) == 0 {
						break
					}
					take(ds)
				}
				if len(handed) != published {
					t.Fatalf("seed %d: %d of %d messages handed out", seed, len(handed), published)
				}
				pe.halt()
			}
		})
	}
}
