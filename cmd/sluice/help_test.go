package main

import (
	"strings"
	"testing"
)

// verbGroups are the verbs made of sub-verbs.
var verbGroups = map[string]group{"stream": streamGroup, "subscription": subscriptionGroup, "dlq": dlqGroup, "schedule": scheduleGroup}

// TestCLIHelp asks every verb and sub-verb for its help, with --help and with
// `sluice help`: usage on standard output, an example, exit status 0, and no
// server needed.
func TestCLIHelp(t *testing.T) {
	noServer := []string{"--server", "127.0.0.1:1"}
	withFlags := map[string]bool{"pub": true, "sub": true, "stats": true, "top": true, "stream create": true,
		"stream update": true, "subscription create": true, "dlq list": true, "dlq redrive": true, "schedule create": true}
	type form struct{ words []string }
	var forms []form
	for _, v := range verbs {
		switch v.name {
		case "serve", "diskcheck":
			continue // their own flags, owned with them
		}
		forms = append(forms, form{[]string{v.name}})
		for _, s := range verbGroups[v.name].subs {
			forms = append(forms, form{[]string{v.name, s.name}})
		}
	}
	for _, f := range forms {
		name := strings.Join(f.words, " ")
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, nil, "", append(append(noServer, f.words...), "--help")...)
			if r.code != 0 || r.errOut != "" {
				t.Fatalf("%s --help: exit %d, stderr %q", name, r.code, r.errOut)
			}
			if !strings.HasPrefix(r.out, "usage: sluice "+f.words[0]) || !strings.Contains(r.out, "examples:\n  sluice "+f.words[0]) {
				t.Fatalf("%s --help lacks the usage or an example:\n%s", name, r.out)
			}
			if withFlags[name] && !strings.Contains(r.out, "flags:\n  --") {
				t.Fatalf("%s --help lists no flags:\n%s", name, r.out)
			}
			h := runCLI(t, nil, "", append(append(noServer, "help"), f.words...)...)
			if h.code != 0 || h.out != r.out {
				t.Fatalf("sluice help %s: exit %d, and not the same text as --help:\n%s", name, h.code, h.out)
			}
		})
	}

	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		r := runCLI(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.out, "verbs:") || !strings.Contains(r.out, "--token TOKEN") || !strings.Contains(r.out, "  sub ") {
			t.Fatalf("sluice %s: exit %d\n%s", args[0], r.code, r.out)
		}
	}
	if r := runCLI(t, nil, ""); r.code != 2 || !strings.Contains(r.errOut, "sluice help") {
		t.Fatalf("sluice alone: exit %d, %q", r.code, r.errOut)
	}
	if r := runCLI(t, nil, "", "serve", "--help"); r.code != 0 {
		t.Fatalf("serve --help: exit %d %q", r.code, r.errOut)
	}
}

// TestCLIUsageErrors checks that a command line that cannot run exits with
// status 2 and says what to do, before any connection.
func TestCLIUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // in standard error
	}{
		{[]string{"pub"}, []string{"sluice pub: missing the stream name", "usage: sluice pub NAME", "sluice pub --help"}},
		{[]string{"pub", "orders", "--bogus"}, []string{"not defined: --bogus", "sluice pub --help"}},
		{[]string{"stream", "create"}, []string{"sluice stream create: missing NAME", "usage: sluice stream create NAME"}},
		{[]string{"stream", "create", "a", "b"}, []string{`unexpected argument "b"`}},
		{[]string{"stream", "craete", "orders"}, []string{`unknown command "craete"`, "did you mean 'sluice stream create'?"}},
		{[]string{"stream"}, []string{"missing the command: one of create, list, info, update, delete"}},
		{[]string{"strem", "list"}, []string{`unknown verb "strem"`, "did you mean 'sluice stream'?"}},
		{[]string{"stream", "list", "--server", "x:1"}, []string{"--server is a global flag: put it before the verb"}},
		{[]string{"stream", "create", "a", "--partitions", "many"}, []string{`invalid value "many" for flag --partitions`}},
		{[]string{"stream", "create", "a", "--max-bytes", "lots"}, []string{"not a size"}},
		{[]string{"sub", "orders"}, []string{"missing --subscription SUB"}},
		{[]string{"sub", "orders", "--subscription", "s", "--mode", "fifo"}, []string{`--mode "fifo": use one of queue, key_ordered, partitioned`}},
		{[]string{"dlq", "show", "orders", "--subscription", "s"}, []string{"missing OFFSET"}},
		{[]string{"subscription", "create", "orders"}, []string{"missing SUB"}},
		{[]string{"schedule", "create", "n", "--stream", "s", "b"}, []string{"give one of --cron EXPR and --every DURATION"}},
		{[]string{"top", "--iterations", "-1"}, []string{"--iterations -1 is negative"}},
		{[]string{"help", "pubb"}, []string{"did you mean 'sluice help pub'?"}},
		{[]string{"--bogus", "stream", "list"}, []string{"not defined: --bogus", "sluice help"}},
	} {
		r := runCLI(t, nil, "", append([]string{"--server", "127.0.0.1:1"}, tc.args...)...)
		if r.code != 2 {
			t.Errorf("sluice %s: exit %d, want 2\n%s", strings.Join(tc.args, " "), r.code, r.errOut)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.errOut, w) {
				t.Errorf("sluice %s: standard error lacks %q:\n%s", strings.Join(tc.args, " "), w, r.errOut)
			}
		}
	}
}

func TestClosest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"strem", "stream"}, {"sbu", "sub"}, {"stat", "stats"}, {"publish", ""}, {"xyzzy", ""},
	} {
		if got := closest(tc.in, verbNames()); got != tc.want {
			t.Errorf("closest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
