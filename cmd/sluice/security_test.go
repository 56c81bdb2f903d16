package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/internal/testpki"
)

// runServeFails runs `sluice serve ARGS`, which must exit with an error, and
// returns what it printed.
func runServeFails(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	cmd.Env = env
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill() // it listened instead of refusing
		}
	}()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("sluice serve %v: %v, want a non-zero exit\n%s", args, err, out)
	}
	return string(out)
}

// TestServeRefusesPublicAddressWithoutAuth: a non-loopback address needs
// tokens, client certificates or --insecure.
func TestServeRefusesPublicAddressWithoutAuth(t *testing.T) {
	dir := t.TempDir()
	out := runServeFails(t, serveEnv(), "--data", dir, "--listen", "0.0.0.0:0")
	for _, s := range []string{"refusing", "not a loopback address", "tokens", "SLUICE_TOKEN", "--insecure"} {
		if !strings.Contains(out, s) {
			t.Errorf("the refusal does not say %q:\n%s", s, out)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("the broker opened its data directory before refusing: %v %v", entries, err)
	}
	out = runServeFails(t, serveEnv("SLUICE_LISTEN=:0"), "--data", dir)
	if !strings.Contains(out, "refusing") {
		t.Errorf("SLUICE_LISTEN=:0 was not refused:\n%s", out)
	}

	// --insecure serves anyone, with a warning.
	child := startServe(t, serveEnv(), "--data", dir, "--listen", "0.0.0.0:0", "--insecure")
	c, err := client.Dial(child.url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListStreams(callCtx(t)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if log := child.stop(t); !strings.Contains(log, "without authentication") {
		t.Errorf("no warning of --insecure:\n%s", log)
	}

	// A token is authentication enough.
	child = startServe(t, serveEnv("SLUICE_TOKEN=env-token-0123456789"), "--data", dir, "--listen", "0.0.0.0:0")
	c, err = client.Dial(child.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListStreams(callCtx(t)); !errors.Is(err, sluice.ErrUnauthenticated) {
		t.Fatalf("without the token: %v", err)
	}
	c2, err := client.Dial(child.url, client.WithToken("env-token-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.CreateStream(callCtx(t), sluice.StreamConfig{Name: "any"}); err != nil {
		t.Fatalf("with SLUICE_TOKEN's token: %v", err)
	}
	child.stop(t)
}

// TestServeSecurity runs sluice serve with tokens and TLS with client
// certificates from a config file, and checks what each client gets, through
// the Go client (Connect and gRPC) and plain HTTP with JSON.
func TestServeSecurity(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t).Write(t, dir)
	ca, cert, key, clientCert, clientKey := pki.CA, pki.ServerCert, pki.ServerKey, pki.ClientCert, pki.ClientKey
	const (
		writer = "writer-0123456789abcdef"
		ops    = "ops-0123456789abcdef"
	)
	config := map[string]any{
		"data":   filepath.Join(dir, "data"),
		"listen": "127.0.0.1:0",
		"tls":    map[string]string{"cert": cert, "key": key, "client_ca": ca},
		"tokens": []map[string]any{
			{"name": "writer", "secret": writer, "publish": []string{"orders.*"}},
			{"name": "ops", "secret": ops, "admin": []string{"*"}},
		},
	}
	body, _ := json.Marshal(config)
	path := filepath.Join(dir, "sluice.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	child := startServe(t, serveEnv(), "--config", path)
	if !strings.HasPrefix(child.url, "https://") {
		t.Fatalf("listening on %s, want https", child.url)
	}

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
	dial := func(token string, opts ...client.Option) *client.Client {
		c, err := client.Dial(child.url, append(opts, client.WithToken(token))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if _, err := dial(ops, client.WithTLS(withCert)).CreateStream(callCtx(t), sluice.StreamConfig{Name: "orders.eu"}); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(ops, client.WithTLS(withCert)).CreateStream(callCtx(t), sluice.StreamConfig{Name: "billing"}); err != nil {
		t.Fatal(err)
	}
	for _, grpc := range []bool{false, true} {
		opts := []client.Option{client.WithTLS(withCert)}
		if grpc {
			opts = append(opts, client.WithGRPC())
		}
		w := dial(writer, opts...)
		if _, err := w.Publish(callCtx(t), "orders.eu", sluice.Message{Body: []byte("ok")}); err != nil {
			t.Fatalf("grpc=%v: %v", grpc, err)
		}
		_, err := w.Publish(callCtx(t), "billing", sluice.Message{Body: []byte("no")})
		if !errors.Is(err, sluice.ErrPermissionDenied) || connect.CodeOf(err) != connect.CodePermissionDenied ||
			!strings.Contains(err.Error(), `lacks publish on stream "billing"`) {
			t.Fatalf("grpc=%v: publish to billing: %v", grpc, err)
		}
		if _, err := dial("unknown-0123456789abcdef", opts...).ListStreams(callCtx(t)); !errors.Is(err, sluice.ErrUnauthenticated) {
			t.Fatalf("grpc=%v: unknown token: %v", grpc, err)
		}
	}
	// Without a client certificate, nothing gets through, token or not.
	if _, err := dial(ops, client.WithTLS(&tls.Config{RootCAs: pool})).ListStreams(callCtx(t)); err == nil {
		t.Fatal("served a client without a certificate")
	}

	// Plain HTTP/1.1 with JSON, as curl --cert would send it.
	var p http.Protocols
	p.SetHTTP1(true)
	tr := &http.Transport{Protocols: &p, TLSClientConfig: withCert}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for _, tc := range []struct {
		token, stream string
		status        int
		code          string
	}{
		{"", "orders.eu", 401, "unauthenticated"},
		{writer, "billing", 403, "permission_denied"},
		{writer, "orders.eu", 200, ""},
	} {
		req, _ := http.NewRequest("POST", child.url+"/sluice.v1.PublishService/Publish",
			strings.NewReader(`{"stream": "`+tc.stream+`", "message": {"body": "aGk="}}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var we struct{ Code, Message string }
		json.Unmarshal(out, &we)
		if res.StatusCode != tc.status || we.Code != tc.code {
			t.Fatalf("token %q, stream %s: %d %s", tc.token, tc.stream, res.StatusCode, out)
		}
	}
	child.stop(t)
}

// callCtx bounds one call of a test, so that a hang fails it.
func callCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}
