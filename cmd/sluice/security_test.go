package main

import (
	"bufio"
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
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/internal/testpki"
)

// serveEnv is the environment of a child sluice serve: this test binary's,
// without any SLUICE_* variable that would change its configuration.
func serveEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "SLUICE_TEST_MAIN=1"), extra...)
}

// startServeWith runs `sluice serve ARGS` as a child process with env and
// waits until it listens; it is killed when the test ends. Its url is
// reachable on 127.0.0.1 whatever address it listens on.
func startServeWith(t *testing.T, env []string, args ...string) *serveChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	c := &serveChild{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	addr := regexp.MustCompile(`msg=listening addr=(https?)://\S+:(\d+)`)
	deadline := time.After(30 * time.Second)
	for c.url == "" {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("sluice serve exited: %v\n%s", cmd.Wait(), strings.Join(c.log, "\n"))
			}
			c.log = append(c.log, line)
			if m := addr.FindStringSubmatch(line); m != nil {
				c.url = m[1] + "://127.0.0.1:" + m[2]
			}
		case <-deadline:
			t.Fatalf("sluice serve did not listen:\n%s", strings.Join(c.log, "\n"))
		}
	}
	return c
}

// stop sends SIGTERM and returns the whole log once the process exited with
// status 0.
func (c *serveChild) stop(t *testing.T) string {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for line := range c.lines {
		c.log = append(c.log, line)
	}
	all := strings.Join(c.log, "\n")
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("sluice serve after SIGTERM: %v\n%s", err, all)
	}
	return all
}

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
	child := startServeWith(t, serveEnv(), "--data", dir, "--listen", "0.0.0.0:0", "--insecure")
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
	child = startServeWith(t, serveEnv("SLUICE_TOKEN=env-token-0123456789"), "--data", dir, "--listen", "0.0.0.0:0")
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
	child := startServeWith(t, serveEnv(), "--config", path)
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
