package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
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
	dir := t.TempDir()
	ca, caKey := newCA(t, "test CA")
	serverCert := issue(t, ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	clientCert := issue(t, ca, caKey, "cli", x509.ExtKeyUsageClientAuth)
	otherCA, _ := newCA(t, "another CA")
	files := map[string][]byte{
		"ca.pem": pemCert(ca.Raw), "other-ca.pem": pemCert(otherCA.Raw),
		"client.pem": pemCert(clientCert.Certificate[0]), "client-key.pem": pemKey(t, clientCert.PrivateKey),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	const secret, readerSecret = "admin-secret-0123456789", "reader-secret-0123456789"
	addr := startTLSServer(t, &server.Options{
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		Tokens: []server.Token{
			{Name: "admin", Secret: secret, Admin: []string{"*"}, Publish: []string{"*"}, Consume: []string{"*"}},
			{Name: "reader", Secret: readerSecret, Consume: []string{"*"}},
		},
	})
	tlsFlags := []string{"--server", addr, "--ca-cert", path("ca.pem"), "--cert", path("client.pem"), "--key", path("client-key.pem")}
	for _, tc := range []struct {
		name string
		args []string
		hint string
	}{
		{"no TLS", []string{"--server", addr}, "--ca-cert"},
		{"an untrusted server", []string{"--server", addr, "--ca-cert", path("other-ca.pem")}, "--ca-cert FILE"},
		{"no client certificate", []string{"--server", addr, "--ca-cert", path("ca.pem")}, "--cert FILE and --key FILE"},
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
	env := []string{"SLUICE_SERVER=https://" + addr, "SLUICE_TOKEN=" + secret, "SLUICE_CA_CERT=" + path("ca.pem"),
		"SLUICE_CERT=" + path("client.pem"), "SLUICE_KEY=" + path("client-key.pem")}
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
	r = runCLI(t, nil, "", "--server", addr, "--cert", path("client.pem"), "stream", "list")
	if r.code != 1 || !strings.Contains(r.errOut, "--cert and --key go together") {
		t.Fatalf("--cert without --key: exit %d %q", r.code, r.errOut)
	}
}

// startTLSServer serves a fresh broker with opts on a free port until the test
// ends, and returns its address.
func startTLSServer(t *testing.T, opts *server.Options) string {
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

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue signs a certificate for name (an IP address for a server) with ca.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
