package sluice

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The at_most_once kill -9 test: a child consumes an at_most_once subscription
// one message at a time and prints each message's position when Fetch hands it
// out, before processing it; on its k-th message it stays in the handler (blocks
// forever), and the parent kills it with SIGKILL as soon as it reads that
// position. The killed-mid-handler message must never be delivered again; every
// other message must be delivered exactly once over all the kills.

const (
	amoStream  = "amo"
	amoSubEnv  = "SLUICE_CRASH_AMO_SUB"      // the subscription the child consumes
	amoStuckAt = "SLUICE_CRASH_AMO_STUCK_AT" // the delivery (1, 2, ...) the child never finishes
)

var amoSubs = []struct {
	name string
	mode SubscriptionMode
}{
	{"amo-queue", QueueMode},
	{"amo-ordered", KeyOrderedMode},
	{"amo-group", PartitionedMode},
}

func init() { crashModes["atmostonce"] = atMostOnceChild }

// atMostOnceChild prints "D <partition> <offset> <body>" for every delivery, as
// the first thing its handler does.
func atMostOnceChild(dir, run string) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "child", what+":", err)
		os.Exit(2)
	}
	stuckAt, err := strconv.Atoi(os.Getenv(amoStuckAt))
	if err != nil {
		fail("stuck-at", err)
	}
	b, err := Open(dir, nil)
	if err != nil {
		fail("open", err)
	}
	ctx := context.Background()
	c, err := b.NewConsumer(ctx, amoStream, os.Getenv(amoSubEnv), ConsumerConfig{Name: "r" + run})
	if err != nil {
		fail("consumer", err)
	}
	os.Stdout.WriteString("ready\n")
	for n := 1; ; n++ {
		ds, err := c.Fetch(ctx, 1)
		if err != nil {
			fail("fetch", err)
		}
		d := ds[0]
		os.Stdout.WriteString(fmt.Sprintf("D %d %d %s\n", d.Partition, d.Offset, d.Body)) // one write: whole or absent
		if n == stuckAt {
			select {} // in the handler when the kill comes
		}
		if err := c.Ack(ctx, d); err != nil { // a no-op under at_most_once
			fail("ack", err)
		}
	}
}

// runStuckChild runs an at_most_once child on sub that gets stuck on its
// stuckAt-th delivery, kills it with SIGKILL right after reading that delivery's
// line, and returns every line the child printed.
func runStuckChild(t *testing.T, dir string, run int, sub string, stuckAt int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+strconv.Itoa(run), crashModeEnv+"=atmostonce",
		amoSubEnv+"="+sub, amoStuckAt+"="+strconv.Itoa(stuckAt))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that never reaches its stuck delivery is killed all the same; the
	// count of lines below then fails the test.
	guard := time.AfterFunc(time.Minute, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer guard.Stop()
	lines := bufio.NewReader(stdout)
	if l, err := lines.ReadString('\n'); err != nil || l != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not start: %q %v", l, err)
	}
	var out []string
	for {
		l, err := lines.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(l))
		if len(out) == stuckAt {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended without SIGKILL: %v", err)
	}
	if len(out) != stuckAt {
		t.Fatalf("child printed %d deliveries, want %d (the last one stuck): %q", len(out), stuckAt, out)
	}
	return out
}

func TestCrashKill9AtMostOnceLosesOnlyTheMessageMidHandler(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, StreamConfig{Name: amoStream, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	for _, s := range amoSubs {
		if _, err := b.CreateSubscription(ctx, amoStream, SubscriptionConfig{Name: s.name, Mode: s.mode, Delivery: AtMostOnce, Lease: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 120
	published := map[string]Position{}
	for i := range n {
		body := fmt.Sprint("m", i)
		pos, err := b.Publish(ctx, amoStream, Message{Key: []byte(fmt.Sprint("k", i%5)), Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		published[body] = pos
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	delivered := map[string]map[string]int{} // subscription -> body -> deliveries
	stuck := map[string]map[string]bool{}    // subscription -> bodies killed mid-handler
	for _, s := range amoSubs {
		delivered[s.name], stuck[s.name] = map[string]int{}, map[string]bool{}
	}
	deliver := func(sub, body string, pos Position) {
		t.Helper()
		if want, ok := published[body]; !ok || want != pos {
			t.Fatalf("%s: delivered %q at %+v; published at %+v (%v)", sub, body, pos, want, ok)
		}
		if stuck[sub][body] {
			t.Fatalf("%s: %s (partition %d offset %d) was in the handler at a kill -9 and is delivered again", sub, body, pos.Partition, pos.Offset)
		}
		if delivered[sub][body]++; delivered[sub][body] > 1 {
			t.Fatalf("%s: %s (partition %d offset %d) delivered twice", sub, body, pos.Partition, pos.Offset)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	kills := 9
	if testing.Short() {
		kills = 3
	}
	for run := range kills {
		sub := amoSubs[run%len(amoSubs)].name
		stuckAt := 1 + rng.IntN(12)
		lines := runStuckChild(t, dir, run, sub, stuckAt)
		var body string
		for _, l := range lines {
			var pos Position
			if _, err := fmt.Sscanf(l, "D %d %d %s", &pos.Partition, &pos.Offset, &body); err != nil {
				t.Fatalf("child wrote %q: %v", l, err)
			}
			deliver(sub, body, pos)
		}
		stuck[sub][body] = true
	}

	// What the children did not take is all still there, once.
	b, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, s := range amoSubs {
		c, err := b.NewConsumer(ctx, amoStream, s.name, ConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		for {
			info, err := b.Subscription(ctx, amoStream, s.name)
			if err != nil {
				t.Fatal(err)
			}
			if info.Backlog == 0 {
				break
			}
			ds, err := c.Fetch(ctx, MaxFetch)
			if err != nil {
				t.Fatalf("%s: fetch with a backlog of %d: %v", s.name, info.Backlog, err)
			}
			for _, d := range ds {
				deliver(s.name, string(d.Body), Position{Partition: d.Partition, Offset: d.Offset})
			}
		}
		for body := range published {
			if delivered[s.name][body] != 1 {
				t.Errorf("%s: %s delivered %d times, want once", s.name, body, delivered[s.name][body])
			}
		}
		t.Logf("%s: %d messages, %d killed mid-handler and not delivered again", s.name, n, len(stuck[s.name]))
	}
}
