package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProgress draws, throttles, clears and summarizes on a terminal, and
// writes nothing without one.
func TestProgress(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	p := &progress{w: &b, start: now, now: func() time.Time { return now }}
	p.update("1 message")
	now = now.Add(progressEvery / 2)
	p.update("2 messages") // too soon: not drawn
	now = now.Add(progressEvery)
	p.update("3 messages")
	if got, want := b.String(), "\r\x1b[K1 message\r\x1b[K3 messages"; got != want {
		t.Fatalf("drawn %q, want %q", got, want)
	}
	b.Reset()
	p.clear()
	p.clear()              // nothing left to clear
	p.update("4 messages") // cleared, but too soon
	now = now.Add(progressEvery)
	p.update("5 messages")
	if got, want := b.String(), "\r\x1b[K\r\x1b[K5 messages"; got != want {
		t.Fatalf("after clear %q, want %q", got, want)
	}
	if r := p.rate(100); r != "200/s" {
		t.Fatalf("rate %q for 100 in 0.5 s", r)
	}
	b.Reset()
	p.done("published 4 messages")
	if got, want := b.String(), "\r\x1b[Kpublished 4 messages\n"; got != want {
		t.Fatalf("done wrote %q, want %q", got, want)
	}

	quiet := &progress{start: now, now: time.Now} // standard error is not a terminal
	quiet.update("x")
	quiet.clear()
	quiet.done("y") // no writer: nothing to write to, and no panic
}

// TestIsTerminal tells a regular file, a pipe and the null device from a
// terminal.
func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(f) || isTerminal(w) || isTerminal(null) {
		t.Fatal("a file, a pipe or the null device taken for a terminal")
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {10 << 20, "10.0 MiB"}, {3 << 40, "3.0 TiB"}} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
