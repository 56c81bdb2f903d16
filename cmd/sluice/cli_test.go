package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// sluiceCLI runs the binary with args (and stdin) as a user would, against the
// server at addr given as --server, and returns its standard output.
func sluiceCLI(t *testing.T, addr, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--server", addr}, args...)...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		t.Logf("sluice %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

// TestCLIStreamAndPub drives `stream create` and `pub` in the forms the README
// documents: bodies as arguments, lines on stdin, a repeated idempotency key.
func TestCLIStreamAndPub(t *testing.T) {
	srv := startServe(t, t.TempDir())
	addr := strings.TrimPrefix(srv.url, "http://")
	if out, err := sluiceCLI(t, addr, "", "stream", "create", "orders", "--partitions", "2", "--max-messages", "4",
		"--overflow", "drop-oldest", "--retention", "limits"); err != nil || !strings.Contains(out, "created orders: 2 partitions") {
		t.Fatalf("stream create: %q, %v", out, err)
	}
	out, err := sluiceCLI(t, addr, "", "pub", "orders", "--key", "k", "first", "second")
	if err != nil || out != "1 0\n1 1\n" && out != "0 0\n0 1\n" {
		t.Fatalf("pub with a key: %q, %v; want two offsets of one partition, in order", out, err)
	}
	out, err = sluiceCLI(t, addr, "a\nb\nc\n", "pub", "orders")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 3 {
		t.Fatalf("pub from stdin: %q, %v; want one line per message", out, err)
	}
	first, err := sluiceCLI(t, addr, "", "pub", "orders", "--id", "order-7", "charge")
	if err != nil {
		t.Fatal(err)
	}
	again, err := sluiceCLI(t, addr, "", "pub", "orders", "--id", "order-7", "charge")
	if err != nil || again != first {
		t.Fatalf("a repeated idempotency key printed %q, then %q; want the original position", first, again)
	}
	out, err = sluiceCLI(t, addr, "", "stream", "list")
	if err != nil || !strings.HasPrefix(out, "orders\t2 partitions\t") {
		t.Fatalf("stream list: %q, %v", out, err)
	}
	if _, err := sluiceCLI(t, addr, "", "stream", "info", "missing"); err == nil {
		t.Fatal("stream info of a missing stream succeeded")
	}
	if _, err := sluiceCLI(t, addr, "", "stream", "create", "bad name"); err == nil {
		t.Fatal("stream create with an invalid name succeeded")
	}
}
