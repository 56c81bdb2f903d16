package subscription

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/logstore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a stream of partition logs, a dead-letter sink and a subscription on them.
type env struct {
	t     *testing.T
	dir   string
	parts []logstore.Log
	clk   *clock
	cfg   Config
	sub   *Sub
	ctx   context.Context

	deadMu   sync.Mutex
	dead     []DeadMessage
	deadFail bool // the dead-letter callback fails while set
}

func newEnv(t *testing.T, partitions int, cfg Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, dir: t.TempDir(), clk: &clock{t: time.UnixMilli(1_700_000_000_000)}, cfg: cfg, ctx: ctx}
	for i := range partitions {
		p, err := logstore.Open(logstore.Config{Dir: filepath.Join(e.dir, "stream", fmt.Sprint(i)), Sync: logstore.SyncNever})
		if err != nil {
			t.Fatal(err)
		}
		e.parts = append(e.parts, p)
	}
	t.Cleanup(func() {
		if e.sub != nil {
			e.sub.Close()
		}
		for _, p := range e.parts {
			p.Close()
		}
	})
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := Open(Options{
		Config:     e.cfg,
		Dir:        filepath.Join(e.dir, "sub"),
		Partitions: func() []logstore.Log { return e.parts },
		DeadLetter: func(ctx context.Context, m DeadMessage) error {
			e.deadMu.Lock()
			defer e.deadMu.Unlock()
			if e.deadFail {
				return errors.New("dead-letter stream unavailable")
			}
			m.Key, m.Value = append([]byte(nil), m.Key...), append([]byte(nil), m.Value...)
			e.dead = append(e.dead, m)
			return nil
		},
		Now: e.clk.now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.sub = s
}

// restart closes the subscription cleanly and opens it again.
func (e *env) restart() {
	e.t.Helper()
	if err := e.sub.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// kill stops the subscription the way kill -9 would: what the journal wrote stays
// in its files, nothing is compacted or synced.
func (e *env) kill() {
	e.t.Helper()
	s := e.sub
	s.mu.Lock()
	s.closed = true
	close(s.stop)
	s.broadcastLocked()
	s.mu.Unlock()
	s.wg.Wait()
	s.journal.Close() // logstore syncs on close; the bytes were written either way
	e.open()
}

// publish appends one message per value to partition p.
func (e *env) publish(p int, values ...string) {
	e.t.Helper()
	for _, v := range values {
		b := batch.Append(nil, []batch.Record{{Timestamp: e.clk.now().UnixMilli(), Key: []byte("k"), Value: []byte(v)}})
		if _, err := e.parts[p].Append(e.ctx, b); err != nil {
			e.t.Fatal(err)
		}
	}
}

// fetch fetches without waiting long: an empty result means nothing is available.
func (e *env) fetch(consumer string, limit int) []Delivery {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Millisecond)
	defer cancel()
	ds, err := e.sub.Fetch(ctx, consumer, limit, 1000)
	if err != nil && ctx.Err() == nil {
		e.t.Fatal(err)
	}
	return ds
}

func (e *env) ack(d Delivery) {
	e.t.Helper()
	if err := e.sub.Ack(e.ctx, d.Partition, d.Offset, d.Lease); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) nack(d Delivery, reason string) {
	e.t.Helper()
	if err := e.sub.Nack(e.ctx, d.Partition, d.Offset, d.Lease, nil, reason); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deadLetters() []DeadMessage {
	e.deadMu.Lock()
	defer e.deadMu.Unlock()
	return append([]DeadMessage(nil), e.dead...)
}

func values(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Value)
	}
	return out
}
