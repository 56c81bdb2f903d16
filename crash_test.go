package sluice

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The crash test runs this test binary as a child process that publishes with many
// concurrent publishers and prints every acknowledged position; the parent kills it
// with SIGKILL at a random moment, reopens the data directory and checks that every
// acknowledged message is there.

const (
	crashDirEnv  = "SLUICE_CRASH_CHILD_DIR"
	crashRunEnv  = "SLUICE_CRASH_CHILD_RUN"
	crashModeEnv = "SLUICE_CRASH_CHILD_MODE"
	crashStream  = "crash"
)

// crashBody is the body of message id: the id, then bytes derived from it, so that a
// reader can tell a real message from garbage.
func crashBody(id string) []byte {
	h := xxhash.Sum64String(id)
	n := int(h % 1500)
	var b bytes.Buffer
	b.WriteString(id)
	b.WriteByte('|')
	for i := 0; b.Len() < len(id)+1+n; i++ {
		b.WriteByte(byte(h >> (8 * (i % 8))))
	}
	return b.Bytes()
}

func crashID(body []byte) (string, bool) {
	id, _, ok := bytes.Cut(body, []byte("|"))
	if !ok || !bytes.Equal(crashBody(string(id)), body) {
		return "", false
	}
	return string(id), true
}

// crashModes are the child sides that other test files register (in init) under
// a mode name: each runs until the parent kills it, and must not return.
var crashModes = map[string]func(dir, run string){}

// crashChild runs the child side when the environment asks for it. It never
// returns in the child: the parent kills it.
func crashChild() bool {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return false
	}
	run := os.Getenv(crashRunEnv)
	if f := crashModes[os.Getenv(crashModeEnv)]; f != nil {
		f(dir, run) // never returns
	}
	if os.Getenv(crashModeEnv) == "consume" {
		consumeChild(dir, run)
	}
	b, err := Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	_, err = b.CreateStream(ctx, StreamConfig{Name: crashStream, Partitions: 3, SegmentBytes: 64 << 10})
	if err != nil && !errors.Is(err, ErrStreamExists) {
		fmt.Fprintln(os.Stderr, "child create:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	report := func(p Position, id string) {
		line := fmt.Sprintf("%d %d %s\n", p.Partition, p.Offset, id)
		out.Lock()
		os.Stdout.WriteString(line) // one write: a line is whole or absent
		out.Unlock()
	}
	os.Stdout.WriteString("ready\n")
	for w := range 32 {
		go func() {
			for seq := 0; ; seq++ {
				if w%4 == 0 { // some publishers send batches
					var msgs []Message
					var ids []string
					for j := range 5 {
						id := fmt.Sprintf("r%s-w%d-%d-%d", run, w, seq, j)
						ids = append(ids, id)
						msgs = append(msgs, Message{Key: []byte(id[len(id)-3:]), Body: crashBody(id)})
					}
					pos, err := b.PublishBatch(ctx, crashStream, msgs)
					if err != nil {
						continue
					}
					for j, p := range pos {
						report(p, ids[j])
					}
					continue
				}
				id := fmt.Sprintf("r%s-w%d-%d", run, w, seq)
				p, err := b.Publish(ctx, crashStream, Message{Key: []byte(id[len(id)-2:]), Body: crashBody(id)})
				if err == nil {
					report(p, id)
				}
			}
		}()
	}
	select {}
}

func TestCrashKill9KeepsAcknowledgedMessages(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	acked := map[Position]string{}
	kills := 12
	if testing.Short() {
		kills = 4
	}
	for run := range kills {
		n := runAndKill(t, dir, run, time.Duration(50+rng.IntN(400))*time.Millisecond, acked)
		t.Logf("run %d: %d acknowledged before SIGKILL (%d in all)", run, n, len(acked))
		verifyCrashDir(t, dir, acked)
	}
	if len(acked) < 1000 {
		t.Fatalf("only %d messages acknowledged over %d runs: the test did not exercise the broker", len(acked), kills)
	}
}

// runAndKill starts a publishing child, kills it after d and records what it
// acknowledged.
func runAndKill(t *testing.T, dir string, run int, d time.Duration, acked map[Position]string) int {
	t.Helper()
	n := 0
	runChild(t, dir, "publish", run, d, func(l string) {
		var p Position
		var id string
		if _, err := fmt.Sscanf(l, "%d %d %s", &p.Partition, &p.Offset, &id); err != nil {
			t.Fatalf("child wrote %q: %v", l, err)
		}
		if prev, ok := acked[p]; ok {
			t.Fatalf("position %+v acknowledged twice: %s and %s", p, prev, id)
		}
		acked[p] = id
		n++
	})
	return n
}

// runChild starts this test binary as a child in the given mode on dir, kills it
// with SIGKILL d after it reports ready, and passes every line it printed to
// onLine.
func runChild(t *testing.T, dir, mode string, run int, d time.Duration, onLine func(string)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+strconv.Itoa(run), crashModeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	if l, err := lines.ReadString('\n'); err != nil || l != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not start: %q %v", l, err)
	}
	timer := time.AfterFunc(d, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer timer.Stop()
	for {
		l, err := lines.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		onLine(strings.TrimSpace(l))
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended without SIGKILL: %v", err)
	}
}

// verifyCrashDir reopens dir and checks every acknowledged message, the density of
// offsets and that every stored record is a real, unique message.
func verifyCrashDir(t *testing.T, dir string, acked map[Position]string) {
	t.Helper()
	stored := map[Position]string{}
	seen := map[string]Position{}
	eachStored(t, dir, crashStream, func(rec Record) {
		id, ok := crashID(rec.Body)
		if !ok {
			t.Fatalf("phantom record at %d/%d: %.40q", rec.Partition, rec.Offset, rec.Body)
		}
		p := Position{Partition: rec.Partition, Offset: rec.Offset}
		if prev, dup := seen[id]; dup {
			t.Fatalf("message %s stored twice, at %+v and %+v", id, prev, p)
		}
		seen[id] = p
		stored[p] = id
	})
	lost := 0
	for p, id := range acked {
		if stored[p] != id {
			if lost < 5 {
				t.Errorf("acknowledged %s at %+v, found %q", id, p, stored[p])
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", lost, len(acked))
	}
}

// eachStored reopens dir and calls fn for every record of stream, partition by
// partition in offset order, failing if offsets are not dense.
func eachStored(t *testing.T, dir, stream string, fn func(Record)) {
	t.Helper()
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := b.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range info.Partitions {
		r, err := b.NewReader(ctx, stream, ReaderConfig{Partition: pi.ID})
		if err != nil {
			t.Fatal(err)
		}
		for off := pi.StartOffset; off < pi.HighWatermark; off++ {
			rec, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", pi.ID, off, err)
			}
			if rec.Offset != off {
				t.Fatalf("partition %d: offset %d follows %d", pi.ID, rec.Offset, off-1)
			}
			fn(rec)
		}
		r.Close()
	}
}
