package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/testpki"
	"github.com/sluicemq/sluice/server"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"512", 512}, {"64KiB", 64 << 10}, {"1GiB", 1 << 30}, {"10MB", 10e6}, {"4k", 4 << 10},
		{"2T", 2 << 40}, {"7B", 7}, {"1 MiB", 1 << 20},
	} {
		if got, err := parseSize(tc.in); err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "lots", "-1", "1.5GiB", "GiB", "99999999999TiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) succeeded", bad)
		}
	}
}

func TestParsePosition(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want sluice.StartAt
	}{
		{"earliest", sluice.Earliest()}, {"LATEST", sluice.Latest()}, {"42", sluice.AtOffset(42)},
		{"2026-03-01T10:00:00Z", sluice.AtTime(now.Add(-2 * time.Hour))}, {"-2h", sluice.AtTime(now.Add(-2 * time.Hour))},
	} {
		got, err := parsePosition(tc.in, now)
		if err != nil || got != tc.want {
			t.Errorf("parsePosition(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "-1", "2h", "yesterday", "2026-03-01"} {
		if _, err := parsePosition(bad, now); err == nil {
			t.Errorf("parsePosition(%q) succeeded", bad)
		}
	}
}

func TestReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("a\r\n\nlong "+strings.Repeat("x", 100)+"\nlast"), 16)
	var got []string
	for {
		l, err := readLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
	}
	want := []string{"a", "", "long " + strings.Repeat("x", 100), "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", got, want)
	}
	big := bufio.NewReader(strings.NewReader(strings.Repeat("x", maxPubLine+10) + "\n"))
	if _, err := readLine(big); !errors.Is(err, errLineTooLong) {
		t.Fatalf("a line over the limit: %v", err)
	}
}

func TestHeaderFlag(t *testing.T) {
	var h headerFlag
	for _, s := range []string{"a=1", "b=x=y", "c="} {
		if err := h.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if len(h) != 3 || h[1].Key != "b" || string(h[1].Value) != "x=y" || string(h[2].Value) != "" {
		t.Fatalf("headers %+v", h)
	}
	for _, bad := range []string{"novalue", "=v"} {
		if err := h.Set(bad); err == nil {
			t.Errorf("--header %q accepted", bad)
		}
	}
}

// TestCLITLSAndToken runs the CLI against a server that speaks only TLS,
// requires a client certificate and a token: each missing piece is named in
// the error with the flag that supplies it, and the flags (or their
// environment variables) together work.
func TestCLITLSAndToken(t *testing.T) {
	pki := testpki.New(t)
	files := pki.Write(t, t.TempDir())
	other := testpki.New(t).Write(t, t.TempDir())
	const secret, readerSecret = "admin-secret-0123456789", "reader-secret-0123456789"
	addr := startAPIServer(t, &server.Options{
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Pool},
		Tokens: []server.Token{
			{Name: "admin", Secret: secret, Admin: []string{"*"}, Publish: []string{"*"}, Consume: []string{"*"}},
			{Name: "reader", Secret: readerSecret, Consume: []string{"*"}},
		},
	})
	tlsFlags := []string{"--server", addr, "--ca-cert", files.CA, "--cert", files.ClientCert, "--key", files.ClientKey}
	for _, tc := range []struct {
		name string
		args []string
		hint string
	}{
		{"no TLS", []string{"--server", addr}, "--ca-cert"},
		{"an untrusted server", []string{"--server", addr, "--ca-cert", other.CA}, "--ca-cert FILE"},
		{"no client certificate", []string{"--server", addr, "--ca-cert", files.CA}, "--cert FILE and --key FILE"},
		{"no token", tlsFlags, "--token TOKEN"},
		{"a wrong token", append(tlsFlags, "--token", "wrong-secret-0123456789"), "check --token"},
		{"a token without the permission", append(tlsFlags, "--token", readerSecret), "lacks the permission"},
	} {
		r := runCLI(t, nil, "", append(tc.args, "stream", "create", "secure")...)
		if r.code != 1 || !strings.Contains(r.errOut, tc.hint) {
			t.Errorf("%s: exit %d, want 1 and a hint with %q:\n%s", tc.name, r.code, tc.hint, r.errOut)
		}
	}
	r := runCLI(t, nil, "", append(tlsFlags, "--token", secret, "stream", "create", "secure")...)
	if r.err != nil || r.out != "created secure: 1 partitions\n" {
		t.Fatalf("with every flag: %+v", r)
	}
	env := []string{"SLUICE_SERVER=https://" + addr, "SLUICE_TOKEN=" + secret, "SLUICE_CA_CERT=" + files.CA,
		"SLUICE_CERT=" + files.ClientCert, "SLUICE_KEY=" + files.ClientKey}
	r = runCLI(t, env, "", "pub", "secure", "hello")
	if r.err != nil || r.out != "0 0\n" {
		t.Fatalf("from the environment: %+v", r)
	}
	r = runCLI(t, env, "", "sub", "secure", "--subscription", "s", "--count", "1")
	if r.err != nil || r.out != "hello\n" {
		t.Fatalf("sub over TLS: %+v", r)
	}
	// A token in the environment never shows in the help.
	if r := runCLI(t, env, "", "help"); strings.Contains(r.out, secret) {
		t.Fatal("the help prints the token")
	}
	r = runCLI(t, nil, "", "--server", addr, "--cert", files.ClientCert, "stream", "list")
	if r.code != 1 || !strings.Contains(r.errOut, "--cert and --key go together") {
		t.Fatalf("--cert without --key: exit %d %q", r.code, r.errOut)
	}
}

// startAPIServer serves a fresh broker in process with opts (TLS, tokens,
// limits) on a free port until the test ends, and returns its address.
func startAPIServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	b, err := sluice.Open(t.TempDir(), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := server.New(b, opts)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		b.Close()
	})
	return ln.Addr().String()
}
