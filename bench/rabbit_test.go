package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListeningInodes(t *testing.T) {
	// Two listeners (port 5672 = 0x1628 on 127.0.0.1 and ::1), one
	// established connection from that port, one listener on another port.
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1628 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000001000000:1628 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
`
	path := filepath.Join(t.TempDir(), "tcp")
	if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	if err := listeningInodes(path, 5672, got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["1111"] || !got["4444"] {
		t.Errorf("listeners on 5672: %v, want inodes 1111 and 4444", got)
	}
}

func TestListenerPIDFindsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := listenerPID(ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Skipf("no /proc to read here: %v", err)
	}
	if pid != os.Getpid() {
		t.Errorf("listenerPID = %d, want this process, %d", pid, os.Getpid())
	}
}

func TestDialRabbitUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = dialRabbit("amqp://u:secret@" + addr + "/")
	if !errors.Is(err, errUnreachable) {
		t.Errorf("dial of a closed port: %v, want errUnreachable", err)
	}
	if err != nil && strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// TestExternalPeers runs every workload with tiny counts against the
// external peers named in SLUICE_BENCH_REDIS and SLUICE_BENCH_RABBITMQ
// (bench/peers.sh starts them); without those, it skips.
func TestExternalPeers(t *testing.T) {
	var systems []string
	if os.Getenv(redisAddrEnv) != "" {
		systems = append(systems, "redis")
	}
	if os.Getenv(rabbitURLEnv) != "" {
		systems = append(systems, "rabbitmq")
	}
	if len(systems) == 0 {
		t.Skipf("set %s and/or %s (bench/peers.sh start prints them)", redisAddrEnv, rabbitURLEnv)
	}
	st := settings{runs: 1, w1For: 100 * time.Millisecond, drainMsgs: 300, fanoutMsgs: 50,
		w3For: 300 * time.Millisecond, memMsgs: 5000, runTimeout: time.Minute}
	var md, progress strings.Builder
	sel := selection{systems: strings.Join(systems, ","), sizes: "100"}
	if err := run(st, sel, &md, &progress); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	for line := range strings.Lines(progress.String()) {
		if strings.Contains(line, "error:") || strings.HasPrefix(line, systems[0]+": skipped") ||
			strings.HasPrefix(line, systems[len(systems)-1]+": skipped") {
			t.Errorf("a run failed or a peer was skipped: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("progress:\n%s", progress.String())
	}
}
