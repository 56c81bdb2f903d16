package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// A broker whose memory is measured runs in a process of its own: the
// harness starts its own executable again with --serve KIND --dir DIR. The
// child serves on 127.0.0.1, prints the address it serves on as its first
// line, and stops when its standard input closes (the parent ended, or closed
// it on purpose).

// Kinds of child broker.
const (
	// childSluice serves a sluice broker; the fsync policy is the stream's,
	// which the parent sets.
	childSluice     = "sluice"
	childNATS       = "nats"
	childNATSAlways = "nats-always"
)

// child is a broker running in a process the harness started.
type child struct {
	pid  int
	addr string
	stop func() error
}

// childStartTimeout bounds how long a child may take to print its address.
const childStartTimeout = 30 * time.Second

func startChild(ctx context.Context, dir, kind string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s broker process: %w", kind, err)
	}
	cmd := exec.Command(exe, "--serve", kind, "--dir", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s broker process: %w", kind, err)
	}
	exited := make(chan error, 1)
	stop := func() error {
		stdin.Close()
		t := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		defer t.Stop()
		return <-exited
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- strings.TrimSpace(line)
		io.Copy(io.Discard, r)
		exited <- cmd.Wait()
	}()
	timer := time.NewTimer(childStartTimeout)
	defer timer.Stop()
	select {
	case addr := <-lines:
		if addr == "" {
			return nil, fmt.Errorf("%s broker process ended before serving: %w", kind, stop())
		}
		return &child{pid: cmd.Process.Pid, addr: addr, stop: stop}, nil
	case <-timer.C:
		cmd.Process.Kill()
		return nil, errors.Join(fmt.Errorf("%s broker process did not serve within %v", kind, childStartTimeout), stop())
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, errors.Join(ctx.Err(), stop())
	}
}

// runChild is the child's side: serve kind from dir until standard input
// closes.
func runChild(kind, dir string) error {
	var (
		addr string
		stop func() error
		err  error
	)
	switch kind {
	case childSluice:
		addr, stop, err = serveSluice(dir)
	case childNATS, childNATSAlways:
		addr, stop, err = serveNATS(dir, kind == childNATSAlways)
	default:
		return fmt.Errorf("--serve %q: no such broker (%s, %s, %s)", kind, childSluice, childNATS, childNATSAlways)
	}
	if err != nil {
		return err
	}
	fmt.Println(addr)
	io.Copy(io.Discard, os.Stdin)
	return stop()
}
