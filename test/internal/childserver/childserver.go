// Package childserver runs the sluice server as a child process for the
// reliability suite: built from the module once, started on a fixed
// address and data directory, killed (SIGKILL), stopped (SIGTERM) and started
// again.
package childserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds how long a started server may take to answer /readyz.
const readyTimeout = 60 * time.Second

// Server is the sluice server run as a child process, restarted on the same
// address and data directory after each kill.
type Server struct {
	// Bin is the sluice binary, Addr the address to listen on, Data the data
	// directory and LogPath the file that receives the server's output
	// (appended to across restarts).
	Bin, Addr, Data, LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts the server and waits until it answers /readyz.
func (s *Server) Start(ctx context.Context) error {
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.Bin, "serve", "--listen", s.Addr, "--data", s.Data)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv()
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		res, err := hc.Get("http://" + s.Addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("server exited before it was ready (%s); log tail:\n%s", cmd.ProcessState, s.LogTail())
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("server not ready after %v; log tail:\n%s", readyTimeout, s.LogTail())
		}
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Stop asks the server to shut down (SIGTERM) and waits, killing it after
// grace.
func (s *Server) Stop(grace time.Duration) error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		ok := s.cmd.ProcessState.Success()
		state := s.cmd.ProcessState.String()
		s.cmd = nil
		if !ok {
			return fmt.Errorf("server shutdown: %s; log tail:\n%s", state, s.LogTail())
		}
		return nil
	case <-time.After(grace):
		s.Kill()
		return fmt.Errorf("server did not stop within %v of SIGTERM", grace)
	}
}

// Exited reports whether the server died on its own.
func (s *Server) Exited() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// LogTail returns the last lines of the server's log.
func (s *Server) LogTail() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// childEnv is the environment without the SLUICE_ variables that would
// configure the server behind the flags' back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	return env
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// FindRoot returns the module root: the nearest directory from dir upwards
// whose go.mod declares github.com/sluicemq/sluice.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if f, err := os.Open(filepath.Join(d, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "module github.com/sluicemq/sluice" {
					f.Close()
					return d, nil
				}
			}
			f.Close()
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of github.com/sluicemq/sluice in %s or above it (use --root or --server-bin)", dir)
		}
	}
}

// GoTool returns the go command: the one on PATH, else the one of the
// toolchain that built this program.
func GoTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("no go command on PATH or in GOROOT")
	}
	return p, nil
}

// Build builds cmd/sluice of the module at root into dir.
func Build(ctx context.Context, root, dir string) (string, error) {
	gobin, err := GoTool()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "sluice")
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, "./cmd/sluice")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sluice: %w\n%s", err, b)
	}
	return out, nil
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// Binary returns the path of cmd/sluice built once for this test process
// (the module root found from the working directory), skipping the test when
// no go command can build it. Call RemoveBinary from TestMain after the tests
// to delete it.
func Binary(tb testing.TB) string {
	tb.Helper()
	if _, err := GoTool(); err != nil {
		tb.Skipf("the server is built for this test with the go command: %v", err)
	}
	binOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			binErr = err
			return
		}
		root, err := FindRoot(wd)
		if err != nil {
			binErr = err
			return
		}
		if binDir, binErr = os.MkdirTemp("", "sluice-bin-"); binErr != nil {
			return
		}
		binPath, binErr = Build(context.Background(), root, binDir)
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// Main runs a package's tests, then deletes the binary Binary built: call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	RemoveBinary()
	os.Exit(code)
}

// RemoveBinary deletes what Binary built, if anything.
func RemoveBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
