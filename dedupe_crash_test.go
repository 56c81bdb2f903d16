package sluice

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The dedupe crash test: a child publishes with idempotency keys drawn from a
// small range, so that most publishes retry a key published before (in this run
// or an earlier one), and reports every acknowledged publish; the parent kills it
// with SIGKILL and checks that no key was stored twice and that every
// acknowledged key is still known, at its position.

const dedupeCrashStream = "dedupe"

func init() { crashModes["dedupe"] = dedupeChild }

// dedupeCrashKeys is the range keys are drawn from in a run: it grows with the
// run, so that each run publishes new keys as well as retries of old ones.
func dedupeCrashKeys(run int) int { return 500 * (run + 1) }

// dedupeChild publishes keyed messages until it is killed, printing
// "key partition offset dup" for every acknowledged publish.
func dedupeChild(dir, runStr string) {
	run, _ := strconv.Atoi(runStr)
	b, err := Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: dedupeCrashStream, Partitions: 3}); err != nil && !errors.Is(err, ErrStreamExists) {
		fmt.Fprintln(os.Stderr, "child create:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	report := func(key string, p Position) {
		line := fmt.Sprintf("%s %d %d %t\n", key, p.Partition, p.Offset, p.Duplicate)
		out.Lock()
		os.Stdout.WriteString(line) // one write: a line is whole or absent
		out.Unlock()
	}
	os.Stdout.WriteString("ready\n")
	for w := range 8 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(run), uint64(w)))
			key := func() string { return fmt.Sprintf("k-%d", rng.IntN(dedupeCrashKeys(run))) }
			for {
				if w%4 == 0 { // some publishers send batches, which may repeat a key
					keys := []string{key(), key(), key()}
					msgs := make([]Message, len(keys))
					for i, k := range keys {
						msgs[i] = Message{Body: []byte(k), IdempotencyKey: k}
					}
					pos, err := b.PublishBatch(ctx, dedupeCrashStream, msgs)
					if err != nil {
						continue
					}
					for i, p := range pos {
						report(keys[i], p)
					}
					continue
				}
				k := key()
				p, err := b.Publish(ctx, dedupeCrashStream, Message{Body: []byte(k), IdempotencyKey: k})
				if err == nil {
					report(k, p)
				}
			}
		}()
	}
	select {}
}

func TestDedupeCrashKill9StoresEachKeyOnce(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	acked := map[string]Position{} // key → its position, as first acknowledged
	runs := 5
	if testing.Short() {
		runs = 3
	}
	for run := range runs {
		lines, dups := 0, 0
		runChild(t, dir, "dedupe", run, time.Duration(100+rng.IntN(400))*time.Millisecond, func(l string) {
			var key string
			var p Position
			if _, err := fmt.Sscanf(l, "%s %d %d %t", &key, &p.Partition, &p.Offset, &p.Duplicate); err != nil {
				t.Fatalf("child wrote %q: %v", l, err)
			}
			lines++
			if p.Duplicate {
				dups++
			}
			p.Duplicate = false
			if prev, ok := acked[key]; ok && prev != p {
				t.Fatalf("run %d: key %s acknowledged at %+v, and before at %+v", run, key, p, prev)
			}
			acked[key] = p
		})
		t.Logf("run %d: %d publishes acknowledged (%d duplicates), %d keys in all", run, lines, dups, len(acked))
		verifyDedupeDir(t, dir, acked)
		if run%2 == 1 {
			// The next run rebuilds its index from the log alone.
			if err := os.Remove(filepath.Join(dir, streamsDir, dedupeCrashStream, dedupeFile)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(acked) < 100 {
		t.Fatalf("only %d keys acknowledged over %d runs: the test did not exercise the broker", len(acked), runs)
	}
	// Every acknowledged key, published again, is a duplicate at its position.
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	before, err := b.Stream(ctx, dedupeCrashStream)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range acked {
		pos, err := b.Publish(ctx, dedupeCrashStream, Message{Body: []byte(key), IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if pos != (Position{want.Partition, want.Offset, true}) {
			t.Errorf("key %s acknowledged at %+v; published again after the crashes: %+v", key, want, pos)
		}
	}
	after, err := b.Stream(ctx, dedupeCrashStream)
	if err != nil {
		t.Fatal(err)
	}
	if after.Messages != before.Messages {
		t.Fatalf("publishing acknowledged keys again stored %d messages", after.Messages-before.Messages)
	}
}

// verifyDedupeDir reopens dir and checks that each key is stored at most once
// and every acknowledged key is at its acknowledged position.
func verifyDedupeDir(t *testing.T, dir string, acked map[string]Position) {
	t.Helper()
	stored := map[string]Position{}
	eachStored(t, dir, dedupeCrashStream, func(rec Record) {
		key := keyOf(rec)
		if key == "" || string(rec.Body) != key {
			t.Fatalf("%d/%d holds %q with key %q", rec.Partition, rec.Offset, rec.Body, key)
		}
		p := Position{Partition: rec.Partition, Offset: rec.Offset}
		if prev, ok := stored[key]; ok {
			t.Fatalf("key %s stored twice: at %+v and %+v", key, prev, p)
		}
		stored[key] = p
	})
	for key, want := range acked {
		if got, ok := stored[key]; !ok || got != want {
			t.Fatalf("key %s acknowledged at %+v; stored at %+v (%v)", key, want, got, ok)
		}
	}
}
