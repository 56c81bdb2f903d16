//go:build linux

package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/test/internal/childserver"
)

func TestMain(m *testing.M) { childserver.Main(m) }

// binary returns the server binary, built once for the test run.
func binary(t *testing.T) string { return childserver.Binary(t) }

// needStrace skips the test when strace is not installed or cannot trace
// (no ptrace permission), and returns its path.
func needStrace(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed: the fsync fault test needs it to inject EIO into fdatasync")
	}
	if out, err := exec.Command(path, "-f", "--seccomp-bpf", "-o", os.DevNull, "-e", "trace=fdatasync", "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here (%v): %s", err, bytes.TrimSpace(out))
	}
	return path
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts it
// when the test ends; it skips the test when mounting is not permitted.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("mount -t tmpfs is not permitted here (%v): the disk-full test needs a small file system of its own", err)
	}
	if err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Busy (a process still holds a file): detach it, so that it goes
			// once the last user does, and say so.
			t.Errorf("unmount %s: %v; detaching it", dir, err)
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount -l %s: %v", dir, err)
			}
		}
	})
	return dir
}

// server is a sluice serve process (possibly under strace) and a client of it.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	log    *bytes.Buffer
	logMu  *sync.Mutex
	exited chan struct{}
	c      *client.Client
}

// lockedWriter collects a process's output for the test to read while it runs.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs `sluice serve` on dataDir, prefixed by wrapper (e.g. an
// strace command line) when it is not empty, waits until it is ready and dials
// it. The process (group) is killed when the test ends.
func startServer(t *testing.T, dataDir string, wrapper ...string) *server {
	t.Helper()
	bin := binary(t)
	addr := freeAddr(t)
	args := append(append([]string{}, wrapper...), bin, "serve", "--listen", addr, "--data", dataDir)
	cmd := exec.Command(args[0], args[1:]...)
	// Its own process group: strace and the server it runs are killed together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &server{t: t, cmd: cmd, addr: addr, log: new(bytes.Buffer), logMu: new(sync.Mutex), exited: make(chan struct{})}
	cmd.Stdout = lockedWriter{s.logMu, s.log}
	cmd.Stderr = lockedWriter{s.logMu, s.log}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.ready() {
			break
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited before it was ready (%v); its output:\n%s", cmd.ProcessState, s.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30 s; its output:\n%s", s.output())
		}
	}
	c, err := client.Dial(addr, client.WithoutBatching(), client.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s.c = c
	return s
}

func (s *server) get(path string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (s *server) ready() bool {
	code, err := s.get("/readyz")
	return err == nil && code == http.StatusOK
}

// alive reports whether the process still runs and answers /healthz.
func (s *server) alive() error {
	select {
	case <-s.exited:
		return fmt.Errorf("server process exited: %v", s.cmd.ProcessState)
	default:
	}
	code, err := s.get("/healthz")
	if err != nil {
		return fmt.Errorf("GET /healthz: %w", err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET /healthz: status %d", code)
	}
	return nil
}

func (s *server) output() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// kill ends the process group at once (kill -9): nothing unsynced survives it
// unless the kernel already had it, as after a crash of the process.
func (s *server) kill() {
	if s.c != nil {
		s.c.Close()
	}
	select {
	case <-s.exited:
		return
	default:
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("server process group %d still running 10 s after SIGKILL", s.cmd.Process.Pid)
	}
}

// stop asks the server to shut down (SIGTERM) and waits for it; a server that
// does not exit in time is killed and the test fails.
func (s *server) stop() {
	s.t.Helper()
	if s.c != nil {
		s.c.Close()
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.t.Errorf("server still running 20 s after SIGTERM; killing it. Its output:\n%s", s.output())
		s.kill()
	}
}

// body is the deterministic body of message id, n bytes long.
func body(id string, n int) []byte {
	b := make([]byte, 0, n+len(id))
	for len(b) < n {
		b = append(b, id...)
		b = append(b, '.')
	}
	return b[:n]
}

// readAll reads a partition from its start offset up to its high watermark as
// the server reports it.
func readAll(ctx context.Context, c sluice.Client, stream string, partition int) ([]sluice.Record, error) {
	info, err := c.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	p := info.Partitions[partition]
	if p.HighWatermark == p.StartOffset {
		return nil, nil
	}
	r, err := c.NewReader(ctx, stream, sluice.ReaderConfig{Partition: partition, Start: sluice.Earliest()})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var recs []sluice.Record
	for {
		rec, err := r.Next(ctx)
		if err != nil {
			return recs, fmt.Errorf("read %s/%d after %d records (start %d, high watermark %d): %w",
				stream, partition, len(recs), p.StartOffset, p.HighWatermark, err)
		}
		rec.Key = bytes.Clone(rec.Key)
		rec.Body = bytes.Clone(rec.Body)
		recs = append(recs, rec)
		if rec.Offset >= p.HighWatermark-1 {
			return recs, nil
		}
	}
}

// publishUntilRefused publishes to stream "a" from workers goroutines at
// once, one message of bodySize bytes a call with a key of its own, until each
// has been refused errsEach times or has made maxEach calls, and returns
// every outcome.
func publishUntilRefused(ctx context.Context, s *server, workers, maxEach, errsEach, bodySize int) []published {
	var mu sync.Mutex
	var outcomes []published
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			errs := 0
			for i := range maxEach {
				key := fmt.Sprintf("w%02d-%04d", w, i)
				p := published{key: key, body: body(key, bodySize), start: time.Now()}
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
	return outcomes
}
