package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// subInfo is the part of `subscription info --json` the tests check.
type subInfo struct {
	Config struct {
		Name          string `json:"name"`
		Mode          string `json:"mode"`
		MaxDeliveries int    `json:"max_deliveries"`
	} `json:"config"`
	Backlog      int64 `json:"backlog"`
	InFlight     int   `json:"in_flight"`
	DeadLettered int64 `json:"dead_lettered"`
}

func (s *cliServer) subInfo(stream, sub string) subInfo {
	s.t.Helper()
	var info subInfo
	if err := json.Unmarshal([]byte(s.ok("subscription", "info", stream, sub, "--json")), &info); err != nil {
		s.t.Fatal(err)
	}
	return info
}

// TestCLISub consumes in the documented forms: --count, --timeout, a
// subscription created on first use with --mode and --max-deliveries.
func TestCLISub(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "tasks")
	s.ok("pub", "tasks", "one", "two", "three")

	if out := s.ok("sub", "tasks", "--subscription", "w", "--mode", "queue", "--max-deliveries", "3", "--count", "2"); out != "one\ntwo\n" {
		t.Fatalf("sub --count 2 printed %q", out)
	}
	if info := s.subInfo("tasks", "w"); info.Config.Mode != "queue" || info.Config.MaxDeliveries != 3 || info.Backlog != 1 || info.InFlight != 0 {
		t.Fatalf("after acking two of three: %+v", info)
	}
	if out := s.ok("sub", "tasks", "--subscription", "w", "--count", "5", "--timeout", "3s"); out != "three\n" {
		t.Fatalf("sub --timeout printed %q, want the one message left", out)
	}
	// Nothing left: the timeout ends it, successfully.
	if out := s.ok("sub", "tasks", "--subscription", "w", "--timeout", "300ms"); out != "" {
		t.Fatalf("an empty subscription printed %q", out)
	}
	if info := s.subInfo("tasks", "w"); info.Backlog != 0 {
		t.Fatalf("after sub: backlog %d, want everything acked", info.Backlog)
	}

	// Another subscription sees every message again; an existing one keeps
	// its settings and says so.
	r := s.run("", "sub", "tasks", "--subscription", "w", "--mode", "key_ordered", "--timeout", "300ms")
	if r.err != nil || !strings.Contains(r.errOut, "exists with mode queue") {
		t.Fatalf("a different --mode for an existing subscription: %v %q", r.err, r.errOut)
	}
	if out := s.ok("sub", "tasks", "--subscription", "audit", "--mode", "key_ordered", "--count", "3"); out != "one\ntwo\nthree\n" {
		t.Fatalf("a second subscription printed %q", out)
	}
	if info := s.subInfo("tasks", "audit"); info.Config.Mode != "key_ordered" {
		t.Fatalf("sub --mode key_ordered created %+v", info)
	}
	if out := s.ok("sub", "tasks", "--subscription", "groups", "--mode", "partitioned", "--count", "3", "--timeout", "30s"); out != "one\ntwo\nthree\n" {
		t.Fatalf("a partitioned subscription printed %q", out)
	}

	s.fails(2, "sub", "tasks")                                            // no --subscription
	s.fails(2, "sub", "--subscription", "w")                              // no stream
	s.fails(2, "sub", "tasks", "--subscription", "w", "--mode", "random") // bad mode
	if errOut := s.fails(1, "sub", "missing", "--subscription", "w", "--timeout", "1s"); !strings.Contains(errOut, "stream not found") {
		t.Fatalf("sub on a missing stream: %q", errOut)
	}
}

// TestCLISubCountLeasesNoMore checks that sub --count N leases N messages and
// no more: the rest stay available to other consumers at once.
func TestCLISubCountLeasesNoMore(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "jobs", "--partitions", "3")
	s.okIn(strings.Repeat("job\n", 50), "pub", "jobs")
	s.ok("sub", "jobs", "--subscription", "w", "--count", "1", "--nack")
	// Nacked: waiting for its retry, not in flight; the rest untouched.
	if info := s.subInfo("jobs", "w"); info.InFlight != 0 || info.Backlog != 50 {
		t.Fatalf("after sub --count 1 --nack: %+v; want nothing left in flight", info)
	}
	if out := s.ok("sub", "jobs", "--subscription", "w", "--count", "7"); len(outputLines(out)) != 7 {
		t.Fatalf("sub --count 7 printed %q", out)
	}
	if info := s.subInfo("jobs", "w"); info.InFlight != 0 || info.Backlog != 43 {
		t.Fatalf("after sub --count 7: %+v; want 7 acked and none leased beyond them", info)
	}
}

// TestCLIDeadLetters nacks a message into the dead-letter stream with --nack
// and --max-deliveries 1, then lists, shows, redrives and purges it.
func TestCLIDeadLetters(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "payments")
	s.ok("pub", "payments", "card-4242")
	if out := s.ok("sub", "payments", "--subscription", "charge", "--max-deliveries", "1", "--count", "1", "--nack"); out != "card-4242\n" {
		t.Fatalf("sub --nack printed %q", out)
	}
	list := outputLines(s.ok("dlq", "list", "payments", "--subscription", "charge"))
	if len(list) != 1 || !strings.Contains(list[0], "card-4242") || !strings.Contains(list[0], "source=0/0") {
		t.Fatalf("dlq list: %q; want the one dead letter with its body", list)
	}
	off := strings.SplitN(list[0], "\t", 2)[0]
	show := s.ok("dlq", "show", "payments", "--subscription", "charge", off)
	for _, want := range []string{"card-4242", "nacked with sluice sub --nack", "attempt 1"} {
		if !strings.Contains(show, want) {
			t.Fatalf("dlq show lacks %q:\n%s", want, show)
		}
	}
	var dl struct {
		Body       string
		Deliveries int
		Attempts   []struct{ Error string }
	}
	if err := json.Unmarshal([]byte(s.ok("dlq", "show", "payments", "--subscription", "charge", off, "--json")), &dl); err != nil ||
		dl.Body != "card-4242" || dl.Deliveries != 1 || len(dl.Attempts) != 1 {
		t.Fatalf("dlq show --json: %+v %v", dl, err)
	}
	if info := s.subInfo("payments", "charge"); info.DeadLettered != 1 || info.Backlog != 0 {
		t.Fatalf("after the dead letter: %+v", info)
	}

	// Redriven, it is deliverable again, and no longer listed.
	if out := s.ok("dlq", "redrive", "payments", "--subscription", "charge"); !strings.Contains(out, "redriven 1 ") {
		t.Fatalf("dlq redrive printed %q", out)
	}
	if out := s.ok("dlq", "list", "payments", "--subscription", "charge"); out != "" {
		t.Fatalf("dlq list after redrive: %q", out)
	}
	if out := s.ok("dlq", "list", "payments", "--subscription", "charge", "--all"); !strings.Contains(out, "redriven") {
		t.Fatalf("dlq list --all after redrive: %q", out)
	}
	if out := s.ok("sub", "payments", "--subscription", "charge", "--count", "1", "--timeout", "30s"); out != "card-4242\n" {
		t.Fatalf("after redrive sub printed %q; want the message again", out)
	}

	// Two more dead letters, then purged.
	s.ok("pub", "payments", "a", "b")
	s.ok("sub", "payments", "--subscription", "charge", "--count", "2", "--nack")
	var jl []map[string]any
	for _, l := range outputLines(s.ok("dlq", "list", "payments", "--subscription", "charge", "--json")) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		jl = append(jl, m)
	}
	if len(jl) != 2 || jl[0]["body"] != "a" || jl[1]["body"] != "b" {
		t.Fatalf("dlq list --json: %v", jl)
	}
	if out := s.ok("dlq", "list", "payments", "--subscription", "charge", "--limit", "1"); len(outputLines(out)) != 1 {
		t.Fatalf("dlq list --limit 1: %q", out)
	}
	if out := s.ok("dlq", "purge", "payments", "--subscription", "charge"); !strings.Contains(out, "purged") {
		t.Fatalf("dlq purge printed %q", out)
	}
	if out := s.ok("dlq", "list", "payments", "--subscription", "charge"); out != "" {
		t.Fatalf("dlq list after purge: %q", out)
	}
	if out := s.ok("dlq", "redrive", "payments", "--subscription", "charge"); !strings.Contains(out, "redriven 0 ") {
		t.Fatalf("dlq redrive after purge: %q", out)
	}
	if errOut := s.fails(1, "dlq", "show", "payments", "--subscription", "charge", "99"); !strings.Contains(errOut, "dlq list") {
		t.Fatalf("a missing dead letter says %q", errOut)
	}
	s.fails(2, "dlq", "list", "payments") // no --subscription
	s.fails(2, "dlq", "show", "payments", "--subscription", "charge", "x")
	if errOut := s.fails(1, "dlq", "list", "payments", "--subscription", "nobody"); !strings.Contains(errOut, "subscription create") {
		t.Fatalf("a missing subscription says %q", errOut)
	}
}

// TestCLISubscription creates, lists, shows, seeks and deletes subscriptions.
func TestCLISubscription(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "log", "--partitions", "2")
	s.ok("pub", "log", "--key", "a", "1", "2", "3")
	out := s.ok("subscription", "create", "log", "idx", "--mode", "key-ordered", "--max-deliveries", "2", "--lease", "1m")
	if !strings.Contains(out, "created idx on log: mode key_ordered, max deliveries 2, dead letters to log.idx.dlq") {
		t.Fatalf("subscription create printed %q", out)
	}
	s.ok("subscription", "create", "log", "--subscription", "tail", "--start", "latest")
	if errOut := s.fails(1, "subscription", "create", "log", "idx"); !strings.Contains(errOut, "already exists") {
		t.Fatalf("a second create: %q", errOut)
	}
	list := outputLines(s.ok("subscription", "list", "log"))
	if len(list) != 2 || !strings.HasPrefix(list[0], "idx\tkey_ordered\t3 backlog") || !strings.HasPrefix(list[1], "tail\tqueue\t0 backlog") {
		t.Fatalf("subscription list: %q", list)
	}
	info := s.ok("subscription", "info", "log", "idx")
	for _, want := range []string{"idx on log", "key_ordered", "up to 2", "backlog       3", "PARTITION"} {
		if !strings.Contains(info, want) {
			t.Fatalf("subscription info lacks %q:\n%s", want, info)
		}
	}

	s.ok("sub", "log", "--subscription", "idx", "--count", "3")
	if got := s.subInfo("log", "idx").Backlog; got != 0 {
		t.Fatalf("backlog %d after consuming all", got)
	}
	for _, tc := range []struct {
		to      string
		backlog int64
	}{{"earliest", 3}, {"latest", 0}, {"1", 2}, {"-1h", 3}, {"2000-01-01T00:00:00Z", 3}} {
		if out := s.ok("subscription", "seek", "log", "idx", "--to", tc.to); !strings.Contains(out, "moved idx on log to "+tc.to) {
			t.Fatalf("seek --to %s printed %q", tc.to, out)
		}
		if got := s.subInfo("log", "idx").Backlog; got != tc.backlog {
			t.Fatalf("after seek --to %s: backlog %d, want %d", tc.to, got, tc.backlog)
		}
	}
	if out := s.ok("sub", "log", "--subscription", "idx", "--count", "3"); out != "1\n2\n3\n" {
		t.Fatalf("after seek to earliest, sub printed %q; want every message again, in key order", out)
	}
	s.fails(2, "subscription", "seek", "log", "idx")                     // no --to
	s.fails(2, "subscription", "seek", "log", "idx", "--to", "tomorrow") // not a position
	s.fails(2, "subscription", "seek", "log", "idx", "--to", "1h")       // in the future
	s.fails(2, "subscription", "info", "log")                            // no SUB

	if out := s.ok("subscription", "delete", "log", "tail"); out != "deleted tail on log\n" {
		t.Fatalf("subscription delete printed %q", out)
	}
	if list := outputLines(s.ok("subscription", "list", "log")); len(list) != 1 {
		t.Fatalf("after delete: %q", list)
	}
}
