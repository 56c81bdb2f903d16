//go:build linux

package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
)

// published is the outcome of one publish as its caller saw it.
type published struct {
	key        string
	body       []byte
	pos        sluice.Position
	err        error // nil: acknowledged
	start, end time.Time
}

// eioAfter is how many fdatasyncs of the publishing phase succeed before the
// one that fails: enough for some groups to be acknowledged first.
const eioAfter = 30

// TestFsyncEIO makes exactly one fdatasync fail with EIO while many publishers
// wait on the partition's group commit. Only that one call fails (strace's
// when=N, not N+): every later sync would succeed, so a partition that went on
// writing after the failure would acknowledge publishes, and the test sees it.
// Fail stop means: no publish waiting on the failed sync is acknowledged, no
// publish made after the first error is either, every error names the failure,
// other streams and calls keep working, and after a restart every acknowledged
// message is stored with its body.
func TestFsyncEIO(t *testing.T) {
	strace := needStrace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// The broker's own syncs before publishing (start-up, creating the two
	// streams) are counted on a run that injects nothing, so that the failure
	// lands in the publishing phase whatever start-up syncs.
	before := countSetupSyncs(t, strace)
	n := before + eioAfter
	t.Logf("set-up makes %d fdatasyncs; fdatasync number %d fails with EIO", before, n)

	dir := t.TempDir()
	trace := filepath.Join(t.TempDir(), "strace.out")
	s := startServer(t, filepath.Join(dir, "data"), strace, "-f", "--seccomp-bpf", "-o", trace,
		"-e", "trace=fdatasync", "-e", fmt.Sprintf("inject=fdatasync:error=EIO:when=%d", n))
	createStreams(ctx, t, s)

	// Publish from many goroutines at once, one message a call, until each
	// has seen a few errors: the failed group holds several publishers.
	const workers, maxEach, errsEach = 16, 400, 3
	var mu sync.Mutex
	var outcomes []published
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			errs := 0
			for i := range maxEach {
				key := fmt.Sprintf("w%02d-%04d", w, i)
				p := published{key: key, body: body(key, 300), start: time.Now()}
				p.pos, p.err = s.c.Publish(ctx, "a", sluice.Message{Key: []byte(key), Body: p.body})
				p.end = time.Now()
				mu.Lock()
				outcomes = append(outcomes, p)
				mu.Unlock()
				if p.err != nil {
					if errs++; errs == errsEach || ctx.Err() != nil {
						return
					}
				}
			}
		})
	}
	wg.Wait()

	acked := map[string]published{}
	var failed []published
	for _, p := range outcomes {
		if p.err == nil {
			acked[p.key] = p
		} else {
			failed = append(failed, p)
		}
	}
	t.Logf("%d publishes: %d acknowledged, %d failed", len(outcomes), len(acked), len(failed))
	if len(failed) == 0 {
		t.Fatalf("no publish failed after %d: the injected EIO did not reach the partition\nserver output:\n%s", len(outcomes), s.output())
	}
	if len(acked) == 0 {
		t.Fatalf("no publish was acknowledged before the EIO; first error: %v", failed[0].err)
	}
	if got := strings.Count(readFile(t, trace), "(INJECTED)"); got != 1 {
		t.Errorf("strace injected %d failures, want 1", got)
	}

	// Every error says what happened: the partition failed on an I/O error,
	// and the outcome is unknown (unavailable), not "invalid" or "internal".
	for _, p := range failed {
		checkFailedErr(t, "publish "+p.key, p.err)
	}
	// Fail stop: the first error a publisher got marks the partition failed;
	// a publish that started after that answer must not be acknowledged.
	firstErr := failed[0].end
	for _, p := range failed {
		if p.end.Before(firstErr) {
			firstErr = p.end
		}
	}
	for _, p := range acked {
		if p.start.After(firstErr) {
			t.Errorf("publish %s started %v after the first error and was acknowledged at %d/%d",
				p.key, p.start.Sub(firstErr), p.pos.Partition, p.pos.Offset)
		}
	}

	// The server keeps running and serving: health, the stream list, reads of
	// the failed partition, and publishes to another stream (the later syncs
	// succeed). Publishes to the failed partition keep failing.
	if err := s.alive(); err != nil {
		t.Fatalf("after the EIO: %v\nserver output:\n%s", err, s.output())
	}
	streams, err := s.c.ListStreams(ctx)
	if err != nil || len(streams) != 2 {
		t.Errorf("ListStreams after the EIO: %d streams, %v; want 2", len(streams), err)
	}
	for i := range 3 {
		_, err := s.c.Publish(ctx, "a", sluice.Message{Body: []byte("after")})
		if err == nil {
			t.Fatalf("publish %d to the failed partition after the EIO was acknowledged", i)
		}
		checkFailedErr(t, "publish after the EIO", err)
	}
	other := []byte("stream b still works")
	bpos, bErr := s.c.Publish(ctx, "b", sluice.Message{Body: other})
	if bErr != nil {
		t.Errorf("publish to stream b after stream a's partition failed: %v", bErr)
	}
	if !strings.Contains(s.output(), "partition stopped accepting writes") {
		t.Errorf("server log does not report the failed partition:\n%s", s.output())
	}
	// Readers see exactly the acknowledged messages: nothing of the failed
	// group became visible.
	live, err := readAll(ctx, s.c, "a", 0)
	if err != nil {
		t.Fatalf("reading the failed partition from the running server: %v", err)
	}
	if len(live) != len(acked) {
		t.Errorf("the running server shows %d messages in the failed partition, %d were acknowledged", len(live), len(acked))
	}
	checkAcked(t, "running server", live, 0, acked, outcomes)

	// Crash and restart without strace: every acknowledged message survives.
	s.kill()
	s = startServer(t, filepath.Join(dir, "data"))
	recs, err := readAll(ctx, s.c, "a", 0)
	if err != nil {
		t.Fatalf("after restart: %v\nserver output:\n%s", err, s.output())
	}
	extra := checkAcked(t, "after restart", recs, 0, acked, outcomes)
	t.Logf("after restart: %d messages, all %d acknowledged ones intact; %d of the %d failed publishes were stored anyway",
		len(recs), len(acked), extra, len(failed))
	if bErr == nil {
		brecs, err := readAll(ctx, s.c, "b", bpos.Partition)
		if err != nil || len(brecs) == 0 || !bytes.Equal(brecs[len(brecs)-1].Body, other) {
			t.Errorf("stream b after restart: %d records, %v; want its message", len(brecs), err)
		}
	}
	if _, err := s.c.Publish(ctx, "a", sluice.Message{Body: []byte("recovered")}); err != nil {
		t.Errorf("publish to stream a after restart: %v", err)
	}
}

// countSetupSyncs runs what the test does before publishing under strace,
// injecting nothing, and counts the fdatasyncs.
func countSetupSyncs(t *testing.T, strace string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	trace := filepath.Join(t.TempDir(), "strace.out")
	s := startServer(t, filepath.Join(t.TempDir(), "data"), strace, "-f", "--seccomp-bpf", "-o", trace, "-e", "trace=fdatasync")
	createStreams(ctx, t, s)
	// strace writes a call's line when the call returns, before the broker
	// goes on: every sync of the set-up is in the file now.
	n := strings.Count(readFile(t, trace), "fdatasync(")
	s.kill()
	return n
}

func createStreams(ctx context.Context, t *testing.T, s *server) {
	t.Helper()
	for _, name := range []string{"a", "b"} {
		if _, err := s.c.CreateStream(ctx, sluice.StreamConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatalf("create stream %s: %v\nserver output:\n%s", name, err, s.output())
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkFailedErr checks that err is a fail-stop error caused by EIO.
func checkFailedErr(t *testing.T, what string, err error) {
	t.Helper()
	msg := err.Error()
	if !errors.Is(err, sluice.ErrUnavailable) || !strings.Contains(msg, "partition failed") || !strings.Contains(msg, "input/output error") {
		t.Errorf("%s: error %q; want unavailable, naming the failed partition and the I/O error", what, msg)
	}
}

// checkAcked checks that recs, read from partition in order, hold every
// message acknowledged there at its offset with its body, and nothing that was
// not published; it returns how many records are of publishes that failed.
func checkAcked(t *testing.T, when string, recs []sluice.Record, partition int, acked map[string]published, all []published) (extra int) {
	t.Helper()
	sent := map[string][]byte{}
	for _, p := range all {
		sent[p.key] = p.body
	}
	seen := map[string]bool{}
	var bad []string
	for _, r := range recs {
		key := string(r.Key)
		want, ok := sent[key]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("offset %d: key %q was never published", r.Offset, key))
		case seen[key]:
			bad = append(bad, fmt.Sprintf("offset %d: key %q stored twice", r.Offset, key))
		case !bytes.Equal(r.Body, want):
			bad = append(bad, fmt.Sprintf("offset %d: key %q has a wrong body (%d bytes)", r.Offset, key, len(r.Body)))
		}
		if p, isAcked := acked[key]; isAcked && (p.pos.Partition != partition || p.pos.Offset != r.Offset) {
			bad = append(bad, fmt.Sprintf("key %q acknowledged at %d/%d, stored at %d/%d", key, p.pos.Partition, p.pos.Offset, partition, r.Offset))
		} else if !isAcked && ok && !seen[key] {
			extra++
		}
		seen[key] = true
	}
	var lost []string
	for key, p := range acked {
		if p.pos.Partition == partition && !seen[key] {
			lost = append(lost, fmt.Sprintf("%s@%d", key, p.pos.Offset))
		}
	}
	slices.Sort(lost)
	if len(lost) > 0 {
		t.Errorf("%s: partition %d: %d acknowledged messages missing: %v", when, partition, len(lost), lost[:min(len(lost), 20)])
	}
	if len(bad) > 0 {
		t.Errorf("%s: partition %d: %d bad records: %v", when, partition, len(bad), bad[:min(len(bad), 20)])
	}
	return extra
}
