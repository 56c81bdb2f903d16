package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCLIStats checks stats --json against what was published and consumed,
// and the text tables.
func TestCLIStats(t *testing.T) {
	s := newCLIServer(t)
	if out := s.ok("stats"); !strings.Contains(out, "no streams") {
		t.Fatalf("stats without streams: %q", out)
	}
	s.ok("stream", "create", "orders", "--partitions", "2")
	s.okIn(strings.Repeat("order\n", 10), "pub", "orders")
	s.ok("pub", "orders", "--id", "dup", "x")
	s.ok("pub", "orders", "--id", "dup", "x")
	s.ok("sub", "orders", "--subscription", "billing", "--count", "4")
	s.ok("sub", "orders", "--subscription", "fraud", "--count", "1", "--max-deliveries", "1", "--nack")

	var doc statsDoc
	if err := json.Unmarshal([]byte(s.ok("stats", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Time.IsZero() || doc.Server != s.addr {
		t.Fatalf("stats --json: time %v, server %q", doc.Time, doc.Server)
	}
	byName := map[string]streamStats{}
	for _, st := range doc.Streams {
		byName[st.Name] = st
	}
	o, ok := byName["orders"]
	if !ok || len(doc.Streams) != 3 { // orders and its two dead-letter streams
		t.Fatalf("stats --json streams: %+v", doc.Streams)
	}
	if o.Partitions != 2 || o.Messages != 11 || o.Appended != 11 || o.Bytes == 0 || o.Counters.Duplicates != 1 {
		t.Fatalf("orders: %+v", o)
	}
	subs := map[string]subscriptionStats{}
	for _, sub := range o.Subscriptions {
		subs[sub.Name] = sub
	}
	if b := subs["billing"]; b.Mode != "queue" || b.Backlog != 7 || b.InFlight != 0 || b.DeadLettered != 0 || b.LagSeconds <= 0 || b.OldestUnsettled == nil {
		t.Fatalf("billing: %+v", b)
	}
	if f := subs["fraud"]; f.Backlog != 10 || f.DeadLettered != 1 {
		t.Fatalf("fraud: %+v", f)
	}
	if dlq := byName["orders.fraud.dlq"]; dlq.Messages != 1 {
		t.Fatalf("the dead-letter stream: %+v", dlq)
	}

	text := s.ok("stats")
	for _, want := range []string{"STREAM", "orders", "SUBSCRIPTION", "billing", "fraud", "orders.fraud.dlq"} {
		if !strings.Contains(text, want) {
			t.Fatalf("stats lacks %q:\n%s", want, text)
		}
	}
	if out := s.ok("stats", "orders", "--json"); !strings.Contains(out, `"name": "orders"`) || strings.Contains(out, "dlq") {
		t.Fatalf("stats of one stream: %s", out)
	}
	if errOut := s.fails(1, "stats", "missing"); !strings.Contains(errOut, "stream not found") {
		t.Fatalf("stats of a missing stream: %q", errOut)
	}
}

// TestCLITop runs top for a few tables into a pipe: plain successive tables.
func TestCLITop(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "orders")
	s.ok("pub", "orders", "a", "b")
	s.ok("sub", "orders", "--subscription", "billing", "--count", "1")
	out := s.ok("top", "--iterations", "3", "--interval", "50ms")
	if strings.Contains(out, "\x1b") {
		t.Fatalf("top into a pipe wrote terminal escapes: %q", out)
	}
	if n := strings.Count(out, "STREAM  "); n != 3 {
		t.Fatalf("top --iterations 3 printed %d tables:\n%s", n, out)
	}
	var row []string
	for _, l := range outputLines(out) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "orders" {
			row = f
		}
	}
	// STREAM MESSAGES PUB/S SUBSCRIPTION ACK/S BACKLOG IN-FLIGHT DEAD LAG
	if len(row) != 9 || row[1] != "2" || row[2] != "0.0" || row[3] != "billing" || row[4] != "0.0" || row[5] != "1" || row[7] != "0" {
		t.Fatalf("top row %q", row)
	}
	s.fails(2, "top", "--interval", "0s")
}

// TestTopRates computes rates from two stats documents.
func TestTopRates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := statsDoc{Time: t0, Streams: []streamStats{{Name: "s", Appended: 100,
		Subscriptions: []subscriptionStats{{Name: "a", Backlog: 50}}}}}
	cur := statsDoc{Time: t0.Add(2 * time.Second), Streams: []streamStats{
		{Name: "s", Appended: 300, Messages: 300, Subscriptions: []subscriptionStats{{Name: "a", Backlog: 90}, {Name: "new", Backlog: 3}}},
		{Name: "t", Appended: 5}}}
	var b strings.Builder
	if err := printTop(&b, prev, cur, time.Second); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, l := range outputLines(b.String())[2:] {
		f := strings.Fields(l)
		got[f[0]+"/"+f[3]] = f
	}
	// 200 appended in 2 s; a's backlog grew by 40, so 160 settled.
	if f := got["s/a"]; f[2] != "100.0" || f[4] != "80.0" {
		t.Fatalf("s/a: %q", f)
	}
	if f := got["s/new"]; f[4] != "-" {
		t.Fatalf("a new subscription has no rate yet: %q", f)
	}
	if f := got["t/-"]; f[2] != "-" {
		t.Fatalf("a new stream has no rate yet: %q", f)
	}
}
