//go:build unix

// Package pause is the SIGSTOP part of sluice's reliability suite (issue 7): a
// worker process that is frozen past its lease must not be able to settle the
// message once it wakes up, because the message went to someone else.
package pause

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/test/internal/childserver"
)

const (
	workerEnv = "SLUICE_PAUSE_WORKER_ADDR"
	stream    = "pause"
	sub       = "work"
	lease     = time.Second
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(workerEnv); addr != "" {
		os.Exit(worker(addr))
	}
	os.Exit(m.Run())
}

// worker is the child side: it fetches one message, says so on stdout, reads
// one line from stdin (the parent freezes it before it can), then acks and
// prints the outcome: "ack ok", "ack stale" or "ack error: ...".
func worker(addr string) int {
	c, err := client.Dial(addr)
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	con, err := c.NewConsumer(ctx, stream, sub, sluice.ConsumerConfig{Name: "worker", MaxInFlight: 1})
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	defer con.Close()
	ds, err := con.Fetch(ctx, 1)
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	d := ds[0]
	fmt.Printf("fetched %d %d %d %d\n", d.Partition, d.Offset, d.Deliveries, d.Lease)
	// The "work": the parent stops this process here, past the lease.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println("error: stdin:", err)
		return 2
	}
	err = con.Ack(ctx, d)
	switch {
	case err == nil:
		fmt.Println("ack ok")
	case errors.Is(err, sluice.ErrStaleLease):
		fmt.Println("ack stale")
	default:
		fmt.Println("ack error:", err)
	}
	return 0
}

// TestPauseLateAckIsFenced runs a server and a worker as child processes. The
// worker fetches a message with a 1 s lease and is frozen (SIGSTOP) before it
// acks; the message is redelivered to another consumer, which acks it; then the
// worker is woken (SIGCONT): its late Ack must fail with ErrStaleLease, and the
// message must have been delivered exactly twice and acknowledged once.
func TestPauseLateAckIsFenced(t *testing.T) {
	if _, err := childserver.GoTool(); err != nil {
		t.Skipf("building the server needs the go command: %v", err)
	}
	root, err := childserver.FindRoot(".")
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin, err := childserver.Build(ctx, root, tmp)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := childserver.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv := &childserver.Server{Bin: bin, Addr: addr, Data: filepath.Join(tmp, "data"), LogPath: filepath.Join(tmp, "server.log")}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", srv.LogTail())
		}
	}()

	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateStream(ctx, sluice.StreamConfig{Name: stream, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubscription(ctx, stream, sluice.SubscriptionConfig{Name: sub, Lease: lease, MaxDeliveries: 5}); err != nil {
		t.Fatal(err)
	}
	pos, err := c.Publish(ctx, stream, sluice.Message{Body: []byte("job-1")})
	if err != nil {
		t.Fatal(err)
	}

	// The worker: this test binary again, in worker mode.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"="+addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	lines := readLines(stdout)
	first := nextLine(t, lines)
	var part, deliveries int
	var off int64
	var workerLease uint64
	if _, err := fmt.Sscanf(first, "fetched %d %d %d %d", &part, &off, &deliveries, &workerLease); err != nil {
		t.Fatalf("worker said %q: %v", first, err)
	}
	if part != pos.Partition || off != pos.Offset || deliveries != 1 {
		t.Fatalf("worker fetched %d/%d delivery %d, want %d/%d delivery 1", part, off, deliveries, pos.Partition, pos.Offset)
	}

	// Freeze the worker before it can read the go-ahead, then give it.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, cmd.Process.Pid)
	stopped := time.Now()
	if _, err := io.WriteString(stdin, "ack\n"); err != nil {
		t.Fatal(err)
	}

	// Another consumer gets the redelivery once the worker's lease expired.
	rescuer, err := c.NewConsumer(ctx, stream, sub, sluice.ConsumerConfig{Name: "rescuer"})
	if err != nil {
		t.Fatal(err)
	}
	defer rescuer.Close()
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	ds, err := rescuer.Fetch(fctx, 10)
	fcancel()
	if err != nil {
		info, ierr := c.Subscription(ctx, stream, sub)
		t.Fatalf("no redelivery while the worker was stopped: %v; subscription %+v %v", err, info, ierr)
	}
	if len(ds) != 1 || ds[0].Offset != pos.Offset || ds[0].Deliveries != 2 || ds[0].Lease == workerLease {
		t.Fatalf("redelivery %+v, want the message at %d/%d as delivery 2 with a new lease", ds, pos.Partition, pos.Offset)
	}
	t.Logf("redelivered %v after the worker was stopped", time.Since(stopped).Round(time.Millisecond))
	if err := rescuer.Ack(ctx, ds[0]); err != nil {
		t.Fatalf("ack of the redelivery: %v", err)
	}

	// Wake the worker: its Ack comes late, with the old lease.
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if got := nextLine(t, lines); got != "ack stale" {
		t.Fatalf("the worker's late ack: %q, want \"ack stale\" (rejected by the fencing token)", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v", err)
	}

	// Delivered twice, acknowledged once: nothing is left, nothing comes again.
	info, err := c.Subscription(ctx, stream, sub)
	if err != nil {
		t.Fatal(err)
	}
	if info.Backlog != 0 || info.InFlight != 0 || info.Waiting != 0 || info.DeadLettered != 0 || info.Redeliveries != 1 {
		t.Fatalf("subscription after the late ack: backlog %d, in flight %d, waiting %d, dead-lettered %d, redeliveries %d; want 0, 0, 0, 0, 1",
			info.Backlog, info.InFlight, info.Waiting, info.DeadLettered, info.Redeliveries)
	}
	fctx, fcancel = context.WithTimeout(ctx, 2*lease)
	ds, err = rescuer.Fetch(fctx, 10)
	fcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third delivery after the ack: %+v, %v", ds, err)
	}
}

// readLines sends r's lines to the channel, which is closed at EOF.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// nextLine returns the worker's next line, failing after 30 s.
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("the worker exited without a word")
		}
		if strings.HasPrefix(l, "error") {
			t.Fatalf("worker: %s", l)
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("the worker said nothing for 30 s")
	}
	return ""
}

// waitStopped waits until the process pid is stopped. SIGSTOP is not
// synchronous: kill returns once the signal is pending, and on a busy machine
// a thread of the target that another event wakes (the go-ahead arriving on
// its stdin) can run on for a while before the group stop reaches it. Where
// /proc cannot tell, it waits a moment instead.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			return
		}
		// The state follows the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'T' {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the worker (pid %d) did not stop within 10 s of SIGSTOP", pid)
}
