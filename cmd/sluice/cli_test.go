package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/server"
)

// sluiceCLI runs the binary with args (and stdin) as a user would, against the
// server at addr given as --server, and returns its standard output.
func sluiceCLI(t *testing.T, addr, stdin string, args ...string) (string, error) {
	t.Helper()
	r := runCLI(t, nil, stdin, append([]string{"--server", addr}, args...)...)
	if r.err != nil {
		t.Logf("sluice %s: %v\n%s", strings.Join(args, " "), r.err, r.errOut)
	}
	return r.out, r.err
}

// cliResult is what one run of the binary printed, and how it ended.
type cliResult struct {
	out, errOut string
	code        int
	err         error
}

// runCLI runs the binary with args exactly as given (global flags included),
// stdin as its standard input and env added to the environment.
func runCLI(t *testing.T, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "SLUICE_TEST_MAIN=1"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := cliResult{out: out.String(), errOut: errOut.String(), err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running sluice %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// cliServer is a `sluice serve` child and the way to run the CLI against it.
type cliServer struct {
	t    *testing.T
	addr string
}

// newCLIServer starts `sluice serve` on a fresh data directory.
func newCLIServer(t *testing.T) *cliServer {
	srv := startServe(t, serveEnv(), "--data", t.TempDir(), "--listen", "127.0.0.1:0")
	return &cliServer{t: t, addr: strings.TrimPrefix(srv.url, "http://")}
}

// run runs `sluice --server ADDR args...`.
func (s *cliServer) run(stdin string, args ...string) cliResult {
	s.t.Helper()
	return runCLI(s.t, nil, stdin, append([]string{"--server", s.addr}, args...)...)
}

// ok runs args and fails the test unless it succeeds; it returns standard
// output.
func (s *cliServer) ok(args ...string) string {
	s.t.Helper()
	return s.okIn("", args...)
}

// okIn is ok with a standard input.
func (s *cliServer) okIn(stdin string, args ...string) string {
	s.t.Helper()
	r := s.run(stdin, args...)
	if r.err != nil {
		s.t.Fatalf("sluice %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.errOut)
	}
	return r.out
}

// fails runs args, expects exit status code, and returns standard error.
func (s *cliServer) fails(code int, args ...string) string {
	s.t.Helper()
	r := s.run("", args...)
	if r.code != code {
		s.t.Fatalf("sluice %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.out, r.errOut)
	}
	return r.errOut
}

// outputLines splits output into its lines, none for an empty output.
func outputLines(out string) []string {
	out = strings.TrimSuffix(out, "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// pubPositions parses pub's "PARTITION OFFSET" lines.
func pubPositions(t *testing.T, out string) [][2]int64 {
	t.Helper()
	var ps [][2]int64
	for _, l := range outputLines(out) {
		var p, o int64
		if _, err := fmt.Sscanf(l, "%d %d", &p, &o); err != nil {
			t.Fatalf("pub printed %q, want PARTITION OFFSET", l)
		}
		ps = append(ps, [2]int64{p, o})
	}
	return ps
}

// TestCLIStreamAndPub drives `stream create` and `pub` in the forms the README
// documents: bodies as arguments, lines on stdin, a repeated idempotency key.
func TestCLIStreamAndPub(t *testing.T) {
	srv := startServe(t, serveEnv(), "--data", t.TempDir(), "--listen", "127.0.0.1:0")
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

// TestCLIStreamLifecycle creates, shows, updates and deletes a stream, and
// checks each setting lands where the flags said.
func TestCLIStreamLifecycle(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "jobs", "--partitions", "2", "--max-messages", "100", "--overflow", "block",
		"--retention", "work", "--max-bytes", "1MiB", "--dedupe-window", "1m")
	var info struct {
		Config struct {
			Partitions  int   `json:"partitions"`
			MaxMessages int64 `json:"max_messages"`
			MaxBytes    int64 `json:"max_bytes"`
			Overflow    string
			Retention   struct {
				Policy string `json:"policy"`
				MaxAge int64  `json:"max_age"`
			} `json:"retention"`
		} `json:"config"`
		Partitions []struct{} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(s.ok("stream", "info", "jobs", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Partitions != 2 || c.MaxMessages != 100 || c.MaxBytes != 1<<20 || c.Overflow != "block" || c.Retention.Policy != "work" {
		t.Fatalf("created with %+v", c)
	}
	text := s.ok("stream", "info", "jobs")
	for _, want := range []string{"jobs", "overflow block", "retention", "work", "PARTITION"} {
		if !strings.Contains(text, want) {
			t.Fatalf("stream info lacks %q:\n%s", want, text)
		}
	}

	// Update changes what is given, and keeps the rest: --max-age keeps the
	// retention policy.
	if out := s.ok("stream", "update", "jobs", "--partitions", "3", "--max-age", "2h"); !strings.Contains(out, "updated jobs: 3 partitions") {
		t.Fatalf("stream update printed %q", out)
	}
	if err := json.Unmarshal([]byte(s.ok("stream", "info", "jobs", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.Partitions != 3 || len(info.Partitions) != 3 || c.Retention.Policy != "work" || c.Retention.MaxAge != 2*3600e9 || c.MaxMessages != 100 {
		t.Fatalf("after update: %+v", c)
	}
	if errOut := s.fails(1, "stream", "update", "jobs", "--partitions", "1"); !strings.Contains(errOut, "partitions") {
		t.Fatalf("lowering partitions: %s", errOut)
	}
	s.fails(2, "stream", "update", "jobs") // nothing to change
	s.fails(2, "stream", "create", "x", "--overflow", "sometimes")

	var list []struct {
		Config struct{ Name string } `json:"config"`
	}
	if err := json.Unmarshal([]byte(s.ok("stream", "list", "--json")), &list); err != nil || len(list) != 1 || list[0].Config.Name != "jobs" {
		t.Fatalf("stream list --json: %+v %v", list, err)
	}
	if out := s.ok("stream", "delete", "jobs"); out != "deleted jobs\n" {
		t.Fatalf("stream delete printed %q", out)
	}
	if out := s.ok("stream", "list"); out != "" {
		t.Fatalf("stream list after delete: %q", out)
	}
	if errOut := s.fails(1, "stream", "info", "jobs"); !strings.Contains(errOut, "stream not found") || !strings.Contains(errOut, "sluice stream create") {
		t.Fatalf("a missing stream says %q; want the error and what to do", errOut)
	}
}

// TestCLIPubForms publishes with headers, a delay, a file and standard input,
// and reads back what was stored with sub --json.
func TestCLIPubForms(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "events")

	// A file, one message per line, positions in input order; piped, no
	// progress on standard error.
	var file strings.Builder
	const n = 2500 // more than one batch
	for i := range n {
		fmt.Fprintf(&file, "line-%d\n", i)
	}
	path := filepath.Join(t.TempDir(), "events.txt")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.run("", "pub", "events", "--file", path)
	if r.err != nil {
		t.Fatalf("pub --file: %v\n%s", r.err, r.errOut)
	}
	ps := pubPositions(t, r.out)
	if len(ps) != n {
		t.Fatalf("pub --file printed %d positions, want %d", len(ps), n)
	}
	for i, p := range ps {
		if p != [2]int64{0, int64(i)} {
			t.Fatalf("position %d is %v, want 0 %d: one line per message, in input order", i, p, i)
		}
	}
	if r.errOut != "" {
		t.Fatalf("pub --file into a pipe wrote to standard error: %q", r.errOut)
	}

	// Standard input without a final newline, and CRLF lines.
	if ps := pubPositions(t, s.okIn("x\r\ny", "pub", "events")); len(ps) != 2 || ps[0][1] != n || ps[1][1] != n+1 {
		t.Fatalf("pub from stdin: %v", ps)
	}
	// Headers and a key, then a delayed message.
	s.ok("pub", "events", "--key", "user-1", "--header", "source=web", "--header", "trace=42", "--id", "evt-1", "with headers")
	s.ok("pub", "events", "--delay", "1h", "later")

	got := outputLines(s.ok("sub", "events", "--subscription", "read", "--json", "--count", strconv.Itoa(n+3), "--timeout", "30s"))
	if len(got) != n+3 {
		t.Fatalf("sub printed %d messages, want %d", len(got), n+3)
	}
	if out := s.ok("sub", "events", "--subscription", "read", "--timeout", "300ms"); out != "" {
		t.Fatalf("sub printed %q; want the delayed message held back", out)
	}
	var m struct {
		Partition  int
		Offset     int64
		Key        string
		Headers    map[string]string
		Body       string
		Deliveries int
	}
	if err := json.Unmarshal([]byte(got[n]), &m); err != nil || m.Body != "x" {
		t.Fatalf("CRLF line: %s %v", got[n], err)
	}
	if err := json.Unmarshal([]byte(got[n+2]), &m); err != nil {
		t.Fatal(err)
	}
	if m.Body != "with headers" || m.Key != "user-1" || m.Headers["source"] != "web" || m.Headers["trace"] != "42" ||
		m.Headers["sluice-idempotency-key"] != "evt-1" || m.Offset != n+2 || m.Deliveries != 1 {
		t.Fatalf("sub --json: %+v", m)
	}
	var sub struct {
		Delayed int `json:"delayed"`
		Backlog int `json:"backlog"`
	}
	if err := json.Unmarshal([]byte(s.ok("subscription", "info", "events", "read", "--json")), &sub); err != nil || sub.Delayed != 1 || sub.Backlog != 1 {
		t.Fatalf("the delayed message: %+v %v; want 1 delayed, the backlog", sub, err)
	}

	s.fails(2, "pub", "events", "--file", path, "body")
	s.fails(2, "pub", "events", "--header", "novalue", "x")
	if errOut := s.fails(1, "pub", "events", "--file", filepath.Join(t.TempDir(), "missing")); !strings.Contains(errOut, "--file") {
		t.Fatalf("a missing file: %s", errOut)
	}
	if errOut := s.fails(1, "pub", "nowhere", "x"); !strings.Contains(errOut, "sluice stream create") {
		t.Fatalf("publishing to a missing stream says %q; want how to create it", errOut)
	}
}

// TestCLIPubSplitsOverLimit publishes lines whose batch is over the server's
// request limit: pub sends it again in halves, and every message is stored
// once, in order.
func TestCLIPubSplitsOverLimit(t *testing.T) {
	addr := startAPIServer(t, &server.Options{MaxRequestBytes: server.MinMaxRequestBytes})
	s := &cliServer{t: t, addr: addr}
	s.ok("stream", "create", "wide")
	line := strings.Repeat("x", 200) + "\n"
	const n = 1200 // a batch of 1000 lines is about 200 KB, over 64 KiB
	path := filepath.Join(t.TempDir(), "wide.txt")
	if err := os.WriteFile(path, []byte(strings.Repeat(line, n)), 0o600); err != nil {
		t.Fatal(err)
	}
	ps := pubPositions(t, s.ok("pub", "wide", "--file", path))
	if len(ps) != n {
		t.Fatalf("pub printed %d positions, want %d", len(ps), n)
	}
	for i, p := range ps {
		if p != [2]int64{0, int64(i)} {
			t.Fatalf("position %d is %v", i, p)
		}
	}
}

// TestCLIServerFromEnvironment uses SLUICE_SERVER instead of --server, and
// reports an unreachable server with what to do.
func TestCLIServerFromEnvironment(t *testing.T) {
	s := newCLIServer(t)
	r := runCLI(t, []string{"SLUICE_SERVER=" + s.addr}, "", "stream", "create", "env")
	if r.err != nil || !strings.Contains(r.out, "created env") {
		t.Fatalf("with SLUICE_SERVER: %+v", r)
	}
	r = runCLI(t, nil, "", "--server", "127.0.0.1:1", "stream", "list")
	if r.code != 1 || !strings.Contains(r.errOut, "cannot reach the server at 127.0.0.1:1") || !strings.Contains(r.errOut, "sluice serve") {
		t.Fatalf("an unreachable server: exit %d, %q", r.code, r.errOut)
	}
}
