package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// TestMain runs the binary itself when a test starts this test binary as a
// child with SLUICE_TEST_MAIN=1 and the binary's arguments.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// clients speak HTTP/1.1 (as curl does) and HTTP/2 without TLS (as gRPC does).
func clients() (h1, h2c *http.Client) {
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p1}, Timeout: 10 * time.Second},
		&http.Client{Transport: &http.Transport{Protocols: &p2}}
}

func postJSON(t *testing.T, c *http.Client, url, body string) map[string]any {
	t.Helper()
	res, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", url, res.StatusCode, out)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	return v
}

// TestServeShutsDownGracefully runs serve in process: it answers JSON over
// HTTP/1.1 and gRPC over h2c on one port, and on shutdown ends a read in
// progress with unavailable, stops, and releases the data directory.
func TestServeShutsDownGracefully(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, serveConfig{Data: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
			listening: func(addr string) { addrc <- addr }})
	}()
	var url string
	select {
	case addr := <-addrc:
		url = "http://" + addr
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	h1, h2c := clients()
	defer h1.CloseIdleConnections()
	defer h2c.CloseIdleConnections()

	res, err := h1.Get(url + "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", res, err)
	}
	res.Body.Close()
	postJSON(t, h1, url+"/sluice.v1.StreamService/CreateStream", `{"config": {"name": "jobs", "partitions": 2}}`)
	postJSON(t, h1, url+"/sluice.v1.PublishService/Publish", `{"stream": "jobs", "message": {"body": "aGk=", "partition": 1}}`)

	streams := sluicev1connect.NewStreamServiceClient(h2c, url, connect.WithGRPC())
	list, err := streams.ListStreams(context.Background(), connect.NewRequest(&sluicev1.ListStreamsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if s := list.Msg.GetStreams(); len(s) != 1 || s[0].GetConfig().GetName() != "jobs" || s[0].GetMessages() != 1 {
		t.Fatalf("streams over gRPC: %v", s)
	}
	read := sluicev1connect.NewReadServiceClient(h2c, url, connect.WithGRPC())
	rs, err := read.Read(context.Background(), connect.NewRequest(&sluicev1.ReadRequest{Stream: "jobs", Partition: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if !rs.Receive() || string(rs.Msg().GetRecords()[0].GetBody()) != "hi" {
		t.Fatalf("read: %v", rs.Err())
	}

	// Shut down while the read waits at the tail.
	began := time.Now()
	cancel()
	if rs.Receive() {
		t.Fatal("a record during shutdown")
	}
	if code := connect.CodeOf(rs.Err()); code != connect.CodeUnavailable {
		t.Fatalf("read ended with %v, want unavailable", rs.Err())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(shutdownGrace):
		t.Fatal("serve did not return within its grace period")
	}
	if d := time.Since(began); d > shutdownGrace/2 {
		t.Fatalf("shutdown took %v: it waited for the read", d)
	}
	b, err := sluice.Open(dir, &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("data directory after shutdown: %v", err)
	}
	defer b.Close()
	if info, err := b.Stream(context.Background(), "jobs"); err != nil || info.Messages != 1 {
		t.Fatalf("after restart: %+v %v", info, err)
	}
}

// TestServeCommand runs `sluice serve --data DIR --listen 127.0.0.1:0` as a
// process, publishes to it, and stops it with SIGTERM.
func TestServeCommand(t *testing.T) {
	child := startServe(t, serveEnv(), "--data", t.TempDir(), "--listen", "127.0.0.1:0")
	url := child.url
	h1, h2c := clients()
	defer h1.CloseIdleConnections()
	defer h2c.CloseIdleConnections()
	postJSON(t, h1, url+"/sluice.v1.StreamService/CreateStream", `{"config": {"name": "emails"}}`)
	pos := postJSON(t, h1, url+"/sluice.v1.PublishService/Publish", `{"stream": "emails", "message": {"body": "aGk="}}`)
	if _, ok := pos["position"]; !ok {
		t.Fatalf("publish answered %v", pos)
	}
	publish := sluicev1connect.NewPublishServiceClient(h2c, url, connect.WithGRPC())
	res, err := publish.Publish(context.Background(), connect.NewRequest(&sluicev1.PublishRequest{
		Stream: "emails", Message: &sluicev1.Message{Body: []byte("over gRPC")},
	}))
	if err != nil || res.Msg.GetPosition().GetOffset() != 1 {
		t.Fatalf("gRPC publish: %v %v", res, err)
	}
	h1.CloseIdleConnections()
	h2c.CloseIdleConnections()

	if all := child.stop(t); !strings.Contains(all, "msg=\"shutting down\"") || !strings.Contains(all, "msg=stopped") {
		t.Fatalf("log of a graceful stop:\n%s", all)
	}
}

// serveChild is `sluice serve` running as a child process.
type serveChild struct {
	cmd   *exec.Cmd
	url   string
	lines chan string
	log   []string
}

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

// startServe runs `sluice serve ARGS` as a child process with env (serveEnv's,
// as a rule) and waits until it listens; it is killed when the test ends. Its
// url is reachable on 127.0.0.1 whatever address it listens on.
func startServe(t *testing.T, env []string, args ...string) *serveChild {
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
	// The log says where it listens; the rest of the log is kept for failures.
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

// TestServeConsole: the console is at / of --listen, on a port of its own
// with --console-listen (the API beside it, for the page), and gone with
// --console=false.
func TestServeConsole(t *testing.T) {
	get := func(url string) (int, string) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	child := startServe(t, serveEnv(), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0")
	var consoleURL string
	re := regexp.MustCompile(`msg="console listening" addr=(http://\S+)`)
	deadline := time.After(10 * time.Second)
	for consoleURL == "" {
		for _, line := range child.log {
			if m := re.FindStringSubmatch(line); m != nil {
				consoleURL = m[1]
			}
		}
		if consoleURL != "" {
			break
		}
		select {
		case line := <-child.lines:
			child.log = append(child.log, line)
		case <-deadline:
			t.Fatalf("no console address in the log:\n%s", strings.Join(child.log, "\n"))
		}
	}
	for _, url := range []string{child.url, consoleURL} {
		if code, body := get(url + "/"); code != 200 || !strings.Contains(body, "sluice console") {
			t.Errorf("GET %s/: %d %.100q", url, code, body)
		}
	}
	h1, _ := clients()
	defer h1.CloseIdleConnections()
	postJSON(t, h1, consoleURL+"/sluice.v1.StreamService/CreateStream", `{"config": {"name": "from-the-console-port"}}`)
	h1.CloseIdleConnections()
	child.stop(t)

	off := startServe(t, serveEnv(), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--console=false")
	if code, _ := get(off.url + "/"); code != 404 {
		t.Errorf("GET / with --console=false: %d, want 404", code)
	}
	off.stop(t)
}

// logAddr waits for a log line of the child that matches re and returns the
// regexp's first group.
func (c *serveChild) logAddr(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, line := range c.log {
			if m := re.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
		select {
		case line := <-c.lines:
			c.log = append(c.log, line)
		case <-deadline:
			t.Fatalf("no line matching %v in the log:\n%s", re, strings.Join(c.log, "\n"))
		}
	}
}

// TestServeKafka: with --kafka-listen and a token, a Kafka client logs in
// with SASL/PLAIN (the token as password), produces, and the API sees the
// message; a wrong token produces nothing.
func TestServeKafka(t *testing.T) {
	const token = "kafka-serve-test-token-0123456789"
	child := startServe(t, serveEnv("SLUICE_TOKEN="+token), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0")
	addr := child.logAddr(t, regexp.MustCompile(`msg="kafka listening" addr=(\S+)`))
	h1, _ := clients()
	defer h1.CloseIdleConnections()
	call := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", child.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := call("/sluice.v1.StreamService/CreateStream", `{"config": {"name": "events", "partitions": 2}}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.SASL(plain.Auth{User: "app", Pass: token}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("from kafka")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if code, body := call("/sluice.v1.StreamService/GetStream", `{"name": "events"}`); code != 200 || !strings.Contains(body, `"messages":"1"`) {
		t.Fatalf("the stream after a Kafka produce: %d %s", code, body)
	}
	bad, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.SASL(plain.Auth{User: "app", Pass: "wrong-token-0000000000000"}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bctx, bcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer bcancel()
	if err := bad.ProduceSync(bctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err == nil {
		t.Fatal("a wrong token produced")
	}
	h1.CloseIdleConnections()
	if log := child.stop(t); !strings.Contains(log, "kafka: SASL authentication failed") {
		t.Errorf("no log of the failed login:\n%s", log)
	}
}
