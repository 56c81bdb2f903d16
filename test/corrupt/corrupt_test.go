//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/test/internal/childserver"
)

// The end-to-end tests build the real server, publish known messages through the
// network client, stop the server, damage its data with Run, restart it, and read
// and consume everything back. Every body carries its own CRC, so a damaged body
// that got through would be seen. SLUICE_CORRUPT_SEED fixes the seed (default: the
// clock, logged).

const (
	testStream = "c"
	testParts  = 2
)

func TestMain(m *testing.M) { childserver.Main(m) }

// serverBinary returns the server binary, built once per run; it skips the
// test without a Go toolchain.
func serverBinary(t *testing.T) string { return childserver.Binary(t) }

func testSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SLUICE_CORRUPT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_CORRUPT_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("SLUICE_CORRUPT_SEED=%d", seed)
	return seed
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// server is a running `sluice serve` and a client of it.
type server struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	c      *client.Client
}

func startServer(t *testing.T, data string) *server {
	t.Helper()
	bin := serverBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{cmd: exec.Command(bin, "serve", "--listen", addr, "--data", data), out: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited before it was ready (%v):\n%s", s.cmd.ProcessState, s.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30 s:\n%s", s.out)
		}
	}
	s.c, err = client.Dial(addr, client.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stop ends the server with sig, SIGTERM (a clean shutdown: active segments end
// with their data) or SIGKILL (they may end with preallocated zeros), and waits for
// it.
func (s *server) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	s.c.Close()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("server still running 30 s after %v:\n%s", sig, s.out)
	}
}

// checkedBody is a body with its own checksum; bodyID tells it from a damaged one.
func checkedBody(id string, pad int) []byte {
	s := id + " " + strings.Repeat("z", pad)
	return fmt.Appendf(nil, "%s %08x", s, crc32.ChecksumIEEE([]byte(s)))
}

func bodyID(body []byte) (string, bool) {
	i := bytes.LastIndexByte(body, ' ')
	if i < 0 {
		return "", false
	}
	sum, err := strconv.ParseUint(string(body[i+1:]), 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(body[:i]) {
		return "", false
	}
	id, _, _ := bytes.Cut(body[:i], []byte(" "))
	return string(id), true
}

type pos struct {
	part int
	off  int64
}

// publishAll publishes n messages in batches and returns their bodies by position.
func publishAll(t *testing.T, ctx context.Context, c sluice.Client, n int) map[pos]string {
	t.Helper()
	if _, err := c.CreateStream(ctx, sluice.StreamConfig{Name: testStream, Partitions: testParts, SegmentBytes: 4096}); err != nil {
		t.Fatal(err)
	}
	out := map[pos]string{}
	for i := 0; i < n; i += 20 {
		var msgs []sluice.Message
		for j := i; j < min(i+20, n); j++ {
			msgs = append(msgs, sluice.Message{Body: checkedBody(fmt.Sprintf("m%d", j), j%170)})
		}
		ps, err := c.PublishBatch(ctx, testStream, msgs)
		if err != nil {
			t.Fatal(err)
		}
		for k, p := range ps {
			out[pos{p.Partition, p.Offset}] = string(msgs[k].Body)
		}
	}
	return out
}

// readBack reads every partition from its start to its high watermark and
// consumes a new subscription to its end. Every body must be whole and the one
// published at its position; it returns the positions read and consumed, and how
// many reads failed (a reader that meets corruption fails, and is reopened after
// it: the segment is quarantined by then).
func readBack(t *testing.T, ctx context.Context, c sluice.Client, published map[pos]string) (read, consumed map[pos]bool, readErrs int) {
	t.Helper()
	read, consumed = map[pos]bool{}, map[pos]bool{}
	check := func(how string, r sluice.Record) {
		id, ok := bodyID(r.Body)
		if !ok {
			t.Errorf("%s: damaged body delivered at %d/%d: %.60q", how, r.Partition, r.Offset, r.Body)
			return
		}
		if want := published[pos{r.Partition, r.Offset}]; want != string(r.Body) {
			t.Errorf("%s: %d/%d holds %s, published there: %.40q", how, r.Partition, r.Offset, id, want)
		}
	}
	info, err := c.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range info.Partitions {
		next := pi.StartOffset
		for attempt := 0; next < pi.HighWatermark && attempt < 20; attempt++ {
			r, err := c.NewReader(ctx, testStream, sluice.ReaderConfig{Partition: pi.ID, Start: sluice.AtOffset(next)})
			if err != nil {
				t.Fatal(err)
			}
			for next < pi.HighWatermark {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				rec, err := r.Next(rctx)
				cancel()
				if err != nil {
					t.Logf("read partition %d at %d: %v", pi.ID, next, err)
					readErrs++
					break
				}
				check("read", rec)
				read[pos{rec.Partition, rec.Offset}] = true
				next = rec.Offset + 1
			}
			r.Close()
		}
	}
	if _, err := c.CreateSubscription(ctx, testStream, sluice.SubscriptionConfig{Name: "check"}); err != nil {
		t.Fatal(err)
	}
	cons, err := c.NewConsumer(ctx, testStream, "check", sluice.ConsumerConfig{MaxInFlight: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for {
		si, err := c.Subscription(ctx, testStream, "check")
		if err != nil {
			t.Fatal(err)
		}
		if si.Backlog == 0 {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ds, err := cons.Fetch(fctx, 200)
		cancel()
		if err != nil {
			t.Fatalf("fetch with a backlog of %d: %v", si.Backlog, err)
		}
		for _, d := range ds {
			check("consume", d.Record)
			consumed[pos{d.Partition, d.Offset}] = true
			if err := cons.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	return read, consumed, readErrs
}

// segmentRanges maps every segment file of a partition directory (*.log and
// *.log.bad, by name without .bad) to its offset range [base, next base); the last
// one's end is end.
func segmentRanges(t *testing.T, dir string, end int64) map[string][2]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, e := range ents {
		n := strings.TrimSuffix(e.Name(), ".bad")
		if b, ok := strings.CutSuffix(n, ".log"); ok {
			v, err := strconv.ParseInt(b, 10, 64)
			if err != nil {
				t.Fatalf("segment name %s", e.Name())
			}
			bases = append(bases, v)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	out := map[string][2]int64{}
	for i, b := range bases {
		hi := end
		if i+1 < len(bases) {
			hi = bases[i+1]
		}
		out[filepath.Join(dir, fmt.Sprintf("%020d.log", b))] = [2]int64{b, hi}
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestCorruptSealedSegmentsIndexesAndTornTails damages sealed segments and index
// files (bit flips and a truncation) of a server stopped by SIGKILL, and tears
// the tail of every active segment, then checks the restarted server: no damaged body is ever read or consumed;
// messages are missing only from damaged segments, and such a segment is
// quarantined (*.log.bad) or its loss reported in the server's log; damage to
// index files loses nothing (the index is rebuilt); every torn tail is truncated,
// reported, and costs no published message.
func TestCorruptSealedSegmentsIndexesAndTornTails(t *testing.T) {
	seed := testSeed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := t.TempDir()
	s := startServer(t, data)
	published := publishAll(t, ctx, s.c, 1500)
	s.stop(t, syscall.SIGKILL)

	acts, err := Run(data, Options{Seed: seed, Flips: 10, Truncate: true, TearActive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		t.Log(a)
	}

	s = startServer(t, data)
	read, consumed, readErrs := readBack(t, ctx, s.c, published)
	info, err := s.c.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	s.stop(t, syscall.SIGTERM)
	log := s.out.String()

	// The offset range of every segment damaged in its data; damage to an index
	// or a torn tail may not cost anything.
	damaged := map[string][2]int64{}
	torn := map[string]bool{}
	for p := range testParts {
		dir := filepath.Join(data, "streams", testStream, strconv.Itoa(p))
		ranges := segmentRanges(t, dir, info.Partitions[p].HighWatermark)
		for _, a := range acts {
			path := filepath.Join(data, a.File)
			if filepath.Dir(path) != dir {
				continue
			}
			switch {
			case a.Op == "tear":
				torn[path] = true
			case strings.HasSuffix(a.File, ".log"):
				damaged[path] = ranges[path]
			}
		}
	}
	inDamaged := func(p pos) string {
		for path, r := range damaged {
			if filepath.Base(filepath.Dir(path)) == strconv.Itoa(p.part) && p.off >= r[0] && p.off < r[1] {
				return path
			}
		}
		return ""
	}
	lostIn := map[string]int{}
	for p := range published {
		if read[p] && consumed[p] {
			continue
		}
		seg := inDamaged(p)
		if seg == "" {
			t.Errorf("%d/%d lost (read %v, consumed %v), outside every damaged segment", p.part, p.off, read[p], consumed[p])
			continue
		}
		if read[p] != consumed[p] {
			t.Errorf("%d/%d read %v but consumed %v", p.part, p.off, read[p], consumed[p])
		}
		lostIn[seg]++
	}
	quarantined := 0
	for seg := range damaged {
		bad := fileExists(seg + ".bad")
		if bad {
			quarantined++
			if !strings.Contains(log, seg) {
				t.Errorf("%s quarantined without a word in the server's log", seg)
			}
		}
		if lostIn[seg] > 0 && !bad && !strings.Contains(log, "offsets missing") {
			t.Errorf("%d messages of %s lost, and the segment neither quarantined nor the loss logged", lostIn[seg], seg)
		}
		t.Logf("damaged %s: %d messages lost, quarantined %v", filepath.Base(seg), lostIn[seg], bad)
	}
	for path := range torn {
		if !strings.Contains(log, "truncating torn tail") || !strings.Contains(log, path) {
			t.Errorf("torn tail of %s not reported in the server's log", path)
		}
	}
	if len(torn) == 0 {
		t.Error("no active segment was torn")
	}
	t.Logf("published %d, read %d, consumed %d, read errors %d, damaged segments %d, quarantined %d, torn tails %d",
		len(published), len(read), len(consumed), readErrs, len(damaged), quarantined, len(torn))
	if t.Failed() {
		t.Logf("server log after the restart:\n%s", log)
	}
}

// TestCorruptFlipInActiveSegment flips one bit inside the acknowledged data of an
// active segment. Recovery cannot tell it from a torn write (see ARCHITECTURE.md,
// Recovery): it truncates the segment at the damaged batch, says so in the log,
// and serves everything before it. The test checks exactly that: no damaged body
// is delivered, the loss is a suffix of that one active segment, and it is logged.
func TestCorruptFlipInActiveSegment(t *testing.T) {
	seed := testSeed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := t.TempDir()
	s := startServer(t, data)
	published := publishAll(t, ctx, s.c, 400)
	s.stop(t, syscall.SIGTERM)
	acts, err := Run(data, Options{Seed: seed, FlipActive: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 {
		t.Fatalf("Run did %v, want one flip", acts)
	}
	t.Log(acts[0])
	flipped := filepath.Join(data, acts[0].File)
	part, _ := strconv.Atoi(filepath.Base(filepath.Dir(flipped)))
	base, _ := strconv.ParseInt(strings.TrimSuffix(filepath.Base(flipped), ".log"), 10, 64)

	s = startServer(t, data)
	read, consumed, _ := readBack(t, ctx, s.c, published)
	s.stop(t, syscall.SIGTERM)
	log := s.out.String()
	firstLost := int64(-1)
	for off := base; ; off++ {
		p := pos{part, off}
		if _, ok := published[p]; !ok {
			break
		}
		if !read[p] && firstLost < 0 {
			firstLost = off
		}
		if read[p] && firstLost >= 0 {
			t.Errorf("%d/%d read after %d/%d was lost: the loss is not a suffix", part, off, part, firstLost)
		}
	}
	for p := range published {
		if p.part == part && p.off >= base {
			continue
		}
		if !read[p] || !consumed[p] {
			t.Errorf("%d/%d lost, outside the damaged active segment", p.part, p.off)
		}
	}
	if firstLost >= 0 && !(strings.Contains(log, "truncating torn tail") && strings.Contains(log, flipped)) {
		t.Errorf("messages from %d/%d on lost without a report in the server's log:\n%s", part, firstLost, log)
	}
	t.Logf("first message lost: %d (-1: none; a flip in a field no check covers, such as the leader epoch, changes nothing served)", firstLost)
}

// TestRunFlipsWhatItPrints checks the tool on a data directory written by the
// embedded broker: each printed flip changed exactly that bit, the truncation
// that size, and only sealed segments and index files were touched.
func TestRunFlipsWhatItPrints(t *testing.T) {
	data := t.TempDir()
	b, err := sluice.Open(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	published := publishAll(t, ctx, b, 300)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	parts, err := Partitions(data)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, p := range parts {
		if len(p.Sealed) == 0 || len(p.Indexes) != len(p.Sealed) || p.Active == "" {
			t.Fatalf("partition %s: %d sealed, %d indexes, active %q after %d messages", p.Dir, len(p.Sealed), len(p.Indexes), p.Active, len(published))
		}
		all = append(append(append(all, p.Sealed...), p.Indexes...), p.Active)
	}
	for _, f := range all {
		if before[f], err = os.ReadFile(filepath.Join(data, f)); err != nil {
			t.Fatal(err)
		}
	}
	acts, err := Run(data, Options{Seed: 42, Flips: 5, Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 6 {
		t.Fatalf("%d actions, want 6: %v", len(acts), acts)
	}
	want := map[string][]byte{}
	for f, b := range before {
		want[f] = bytes.Clone(b)
	}
	for _, a := range acts {
		w := want[a.File]
		switch a.Op {
		case "flip":
			if w[a.Offset] != a.Old || a.New != a.Old^1<<a.Bit {
				t.Fatalf("%v: the byte was 0x%02x", a, w[a.Offset])
			}
			w[a.Offset] = a.New
		case "truncate":
			if int64(len(w)) != a.From || a.To >= a.From {
				t.Fatalf("%v: the file had %d bytes", a, len(w))
			}
			want[a.File] = w[:a.To]
		default:
			t.Fatalf("unexpected %v", a)
		}
		if strings.HasSuffix(a.File, ".log") && !strings.Contains(strings.Join(sealedOf(parts), " "), a.File) {
			t.Fatalf("%v touched a segment that is not sealed", a)
		}
	}
	for f, w := range want {
		got, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("%s differs from what the actions printed", f)
		}
	}
	if _, err := Run(data, Options{Kind: "nonsense", Flips: 1}); err == nil {
		t.Error("an unknown kind was accepted")
	}
	if _, err := Run(t.TempDir(), Options{Flips: 1}); err == nil {
		t.Error("a directory without streams was accepted")
	}
}

func sealedOf(parts []Partition) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p.Sealed...)
	}
	return out
}
