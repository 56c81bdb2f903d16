package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/server"
	"github.com/sluicemq/sluice/test/internal/childserver"
)

// broker is the server under soak: a child process running `sluice serve`,
// or a server inside this process.
type broker struct {
	addr string
	pid  int // whose VmRSS is sampled
	stop func() error
}

// startChild builds cmd/sluice (unless bin is set) and runs `sluice serve`
// on 127.0.0.1 with its data in dir; the broker's RSS is then its own.
func startChild(ctx context.Context, bin, dir string) (*broker, error) {
	if bin == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		root, err := childserver.FindRoot(wd)
		if err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
		if bin, err = childserver.Build(ctx, root, dir); err != nil {
			return nil, fmt.Errorf("soak: build the server: %w", err)
		}
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("soak: start the server: %w", err)
	}
	// The server logs "msg=listening addr=http://127.0.0.1:PORT".
	addrs := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		re := regexp.MustCompile(`msg=listening addr=http://(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrs <- m[1]:
				default:
				}
			} else if strings.Contains(sc.Text(), "level=ERROR") || strings.Contains(sc.Text(), "level=WARN") {
				fmt.Fprintln(os.Stderr, "server:", sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	kill := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			err = errors.Join(errors.New("soak: the server did not stop within 30 s of SIGTERM"), <-done)
		}
		<-logDone
		return err
	}
	select {
	case a := <-addrs:
		return &broker{addr: a, pid: cmd.Process.Pid, stop: kill}, nil
	case <-time.After(30 * time.Second):
		return nil, errors.Join(errors.New("soak: the server did not report its address within 30 s"), kill())
	}
}

// startInProcess serves a broker from this process, as `sluice serve` does:
// RSS and goroutines then include the harness's own.
func startInProcess(dir string) (*broker, error) {
	quiet := slog.New(slog.DiscardHandler)
	metrics := server.NewMetrics()
	b, err := sluice.Open(filepath.Join(dir, "data"), &sluice.Options{Logger: quiet, OnSync: metrics.ObserveSync})
	if err != nil {
		return nil, err
	}
	metrics.Attach(b)
	srv, err := server.New(b, &server.Options{Logger: quiet, Metrics: metrics})
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		<-served
		return errors.Join(err, b.Close())
	}
	return &broker{addr: ln.Addr().String(), pid: os.Getpid(), stop: stop}, nil
}

// rssBytes reads VmRSS from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("soak: no VmRSS in /proc status")
}

// goroutines reads go_goroutines from the server's /metrics.
func goroutines(ctx context.Context, hc *http.Client, addr string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int64(v), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("soak: no go_goroutines in /metrics")
}
