//go:build linux

package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/batch"
)

// published is the outcome of one publish as its caller saw it.
type published struct {
	key        string
	body       []byte
	pos        sluice.Position
	err        error // nil: acknowledged
	start, end time.Time
}

// eioAt is the fdatasync of the stream's segment, counted per thread (strace
// counts per tracee), that fails: late enough for several groups to be
// acknowledged first.
const eioAt = 10

// TestFsyncEIO makes one fdatasync of a partition's segment fail with EIO
// while many publishers wait on the partition's group commit. Only that one
// call fails (strace's when=N, not N+, and -P limits the injection to that
// file): every later sync would succeed, so a partition that went on writing
// after the failure would acknowledge publishes, and the test sees it. Fail
// stop means: no publish waiting on the failed sync is acknowledged, no publish
// made after the first error is either, every error names the failure, other
// streams and calls keep working, and after a restart every acknowledged
// message is stored with its body.
func TestFsyncEIO(t *testing.T) {
	strace := needStrace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	seg := filepath.Join(data, "streams", "a", "0", "00000000000000000000.log")
	trace := filepath.Join(t.TempDir(), "strace.out")
	// -P traces (and injects into) the calls on the segment file only; -y
	// names the file of each descriptor; -s 0 leaves the written bytes out.
	s := startServer(t, data, strace, "-f", "--seccomp-bpf", "-y", "-s", "0", "-o", trace,
		"-P", seg, "-e", "signal=none", "-e", "trace=fdatasync,pwrite64",
		"-e", fmt.Sprintf("inject=fdatasync:error=EIO:when=%d", eioAt))
	createStreams(ctx, t, s)

	// Publish from many goroutines at once, one message a call, until each
	// has seen a few errors: the failed group holds several publishers.
	const workers, maxEach, errsEach = 16, 400, 3
	outcomes := publishUntilRefused(ctx, s, workers, maxEach, errsEach, 300)

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
	injected, waitedOn := parseTrace(t, readFile(t, trace))
	if injected != 1 {
		t.Errorf("strace injected %d failures, want 1", injected)
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
	var late []string
	for _, p := range acked {
		if p.start.After(firstErr) {
			late = append(late, fmt.Sprintf("%s (started %v after, acknowledged at %d)", p.key, p.start.Sub(firstErr), p.pos.Offset))
		}
	}
	if len(late) > 0 {
		slices.Sort(late)
		t.Errorf("%d publishes started after the first error and were acknowledged: %v", len(late), late[:min(len(late), 10)])
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
	// The messages whose batches the failed sync was to make durable were
	// waiting on it: none of them may have been acknowledged.
	waiting := offsetsIn(t, readFileBytes(t, seg), waitedOn)
	ackedAt := map[int64]string{}
	for _, p := range acked {
		ackedAt[p.pos.Offset] = p.key
	}
	for _, off := range waiting {
		if key, ok := ackedAt[off]; ok {
			t.Errorf("publish %s at offset %d waited on the failed fdatasync and was acknowledged", key, off)
		}
	}
	if len(waiting) == 0 {
		t.Logf("the failed fdatasync covered no message (writes %v): it synced a zero-fill", waitedOn)
	} else {
		t.Logf("%d publishes waited on the failed fdatasync (offsets %d-%d)", len(waiting), waiting[0], waiting[len(waiting)-1])
	}
	s = startServer(t, filepath.Join(dir, "data"))
	recs, err := readAll(ctx, s.c, "a", 0)
	if err != nil {
		t.Fatalf("after restart: %v\nserver output:\n%s", err, s.output())
	}
	extra := checkAcked(t, "after restart", recs, 0, acked, outcomes)
	t.Logf("after restart: %d messages (%d publishes were acknowledged); %d of the %d failed publishes were stored anyway",
		len(recs), len(acked), extra, len(failed))
	// Fail stop means no write after the failed sync either: what was stored
	// of the failed publishes is what was waiting on it.
	if extra != len(waiting) {
		t.Errorf("after restart: %d failed publishes are stored, but %d were written before the failed sync and nothing after it", extra, len(waiting))
	}
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
	return string(readFileBytes(t, path))
}

func readFileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// span is a byte range [from, to) of a file.
type span struct{ from, to int64 }

var (
	pwriteRe    = regexp.MustCompile(`^pwrite64\(\d+<[^>]*>, "[^"]*"(?:\.\.\.)?, (\d+), (\d+)\) += (-?\d+)`)
	fdatasyncRe = regexp.MustCompile(`^fdatasync\(\d+<[^>]*>\) += (.*)$`)
)

// parseTrace reads strace's output (-f -y, the segment's pwrite64 and
// fdatasync calls only): how many fdatasyncs failed by injection, and the
// ranges written since the sync before the first of them, which that sync was
// to make durable.
func parseTrace(t *testing.T, out string) (injected int, waitedOn []span) {
	t.Helper()
	var pending []span
	unfinished := map[string]string{} // by thread id: the call's first half
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		tid, call, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		call = strings.TrimSpace(call)
		if head, ok := strings.CutSuffix(call, " <unfinished ...>"); ok {
			unfinished[tid] = head
			continue
		}
		if strings.HasPrefix(call, "<... ") {
			_, rest, _ := strings.Cut(call, " resumed>")
			call = unfinished[tid] + rest
			delete(unfinished, tid)
		}
		if m := pwriteRe.FindStringSubmatch(call); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			pos, _ := strconv.ParseInt(m[2], 10, 64)
			pending = append(pending, span{pos, pos + n})
			continue
		}
		if m := fdatasyncRe.FindStringSubmatch(call); m != nil {
			if strings.Contains(m[1], "(INJECTED)") {
				if injected++; injected == 1 {
					waitedOn = pending
				}
			}
			pending = nil
			continue
		}
		if call != "" && !strings.HasPrefix(call, "+++") {
			t.Errorf("strace output: unexpected line %q", line)
		}
	}
	return injected, waitedOn
}

// offsetsIn walks the record batches of a segment file and returns the
// offsets of the messages in batches that start inside one of spans.
func offsetsIn(t *testing.T, file []byte, spans []span) []int64 {
	t.Helper()
	var offs []int64
	for pos := int64(0); pos < int64(len(file)); {
		h, err := batch.ParseHeader(file[pos:])
		if err != nil {
			break // the zeros after the data
		}
		for _, sp := range spans {
			if pos >= sp.from && pos < sp.to {
				for off := h.BaseOffset; off < h.NextOffset(); off++ {
					offs = append(offs, off)
				}
			}
		}
		pos += int64(h.Size())
	}
	return offs
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
