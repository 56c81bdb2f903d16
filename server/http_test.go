package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// Tests with plain HTTP/1.1 and JSON, as curl sends it: what a user without a
// generated client sees.

// post sends a JSON body to a procedure and returns the status and the body.
func (e *env) post(t *testing.T, procedure, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), "POST", e.url+"/sluice.v1."+procedure, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := e.h1.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", procedure, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtoMajor != 1 {
		t.Fatalf("answered over HTTP/%d, want 1.1", res.ProtoMajor)
	}
	return res.StatusCode, out
}

// wireError is a Connect error as JSON.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"details"`
}

// postError sends a request that must fail with status and code.
func (e *env) postError(t *testing.T, procedure, body string, status int, code string) wireError {
	t.Helper()
	got, out := e.post(t, procedure, body)
	var we wireError
	if err := json.Unmarshal(out, &we); err != nil {
		t.Fatalf("%s: status %d, body %q is not a Connect error: %v", procedure, got, out, err)
	}
	if got != status || we.Code != code {
		t.Fatalf("%s: status %d code %q (%s), want %d %q", procedure, got, we.Code, we.Message, status, code)
	}
	return we
}

// detail decodes the detail of type m from we into m.
func (we wireError) detail(t *testing.T, m proto.Message) {
	t.Helper()
	name := string(m.ProtoReflect().Descriptor().FullName())
	for _, d := range we.Details {
		if d.Type != name {
			continue
		}
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(b, m); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no %s detail in %+v", name, we)
}

func TestHTTPJSONPublish(t *testing.T) {
	e := setup(t, nil)
	if code, out := e.post(t, "StreamService/CreateStream", `{"config": {"name": "emails", "partitions": 4}}`); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	body := base64.StdEncoding.EncodeToString([]byte(`{"template":"welcome"}`))
	code, out := e.post(t, "PublishService/Publish",
		`{"stream": "emails", "message": {"key": "dXNlci00Mg==", "body": "`+body+`", "headers": [{"key": "trace", "value": "YWJj"}]}}`)
	if code != 200 {
		t.Fatalf("publish: %d %s", code, out)
	}
	var res struct {
		Position struct {
			Partition int    `json:"partition"`
			Offset    string `json:"offset"` // int64 is a string in protobuf's JSON
		} `json:"position"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if res.Position.Offset != "0" {
		t.Fatalf("position %s", out)
	}
	// The same key lands in the same partition, at the next offset.
	_, out = e.post(t, "PublishService/Publish", `{"stream": "emails", "message": {"key": "dXNlci00Mg=="}}`)
	var again struct {
		Position struct {
			Partition int    `json:"partition"`
			Offset    string `json:"offset"`
		} `json:"position"`
	}
	if err := json.Unmarshal(out, &again); err != nil || again.Position.Partition != res.Position.Partition || again.Position.Offset != "1" {
		t.Fatalf("second publish %s (%v), first in partition %d", out, err, res.Position.Partition)
	}

	// The message as stored.
	rd, err := e.b.NewReader(ctx(t), "emails", sluice.ReaderConfig{Partition: res.Position.Partition})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rec, err := rd.Next(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(rec.Key) != "user-42" || string(rec.Body) != `{"template":"welcome"}` || len(rec.Headers) != 1 || string(rec.Headers[0].Value) != "abc" {
		t.Fatalf("stored %+v", rec)
	}
}

func TestHTTPJSONErrors(t *testing.T) {
	e := setup(t, nil)
	if code, out := e.post(t, "StreamService/CreateStream", `{"config": {"name": "full", "maxMessages": "1", "overflow": "OVERFLOW_POLICY_REJECT"}}`); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	ok := func() {
		t.Helper()
		if code, out := e.post(t, "StreamService/ListStreams", `{}`); code != 200 {
			t.Fatalf("the server stopped serving: %d %s", code, out)
		}
	}

	t.Run("malformed JSON", func(t *testing.T) {
		we := e.postError(t, "PublishService/Publish", `{"stream": "full", "message": {`, 400, "invalid_argument")
		if !strings.Contains(we.Message, "sluice.v1.PublishRequest") {
			t.Fatalf("message %q does not say what it could not read", we.Message)
		}
		ok()
	})
	t.Run("unknown field", func(t *testing.T) {
		we := e.postError(t, "StreamService/CreateStream", `{"config": {"name": "x", "partitons": 2}}`, 400, "invalid_argument")
		if !strings.Contains(we.Message, "partitons") {
			t.Fatalf("message %q does not name the field", we.Message)
		}
		ok()
	})
	t.Run("invalid stream name", func(t *testing.T) {
		we := e.postError(t, "StreamService/CreateStream", `{"config": {"name": "no spaces"}}`, 400, "invalid_argument")
		var fv sluicev1.FieldViolation
		we.detail(t, &fv)
		if fv.GetField() != "config.name" || !strings.Contains(we.Message, "config.name") || !strings.Contains(fv.GetReason(), "[A-Za-z0-9._-]") {
			t.Fatalf("message %q, violation %v", we.Message, &fv)
		}
	})
	t.Run("missing stream", func(t *testing.T) {
		we := e.postError(t, "PublishService/Publish", `{"stream": "nope", "message": {}}`, 404, "not_found")
		if !strings.Contains(we.Message, `"nope"`) {
			t.Fatalf("message %q does not name the stream", we.Message)
		}
	})
	t.Run("stream full", func(t *testing.T) {
		if code, out := e.post(t, "PublishService/Publish", `{"stream": "full", "message": {"body": "MQ=="}}`); code != 200 {
			t.Fatalf("first publish: %d %s", code, out)
		}
		req, _ := http.NewRequestWithContext(ctx(t), "POST", e.url+"/sluice.v1.PublishService/Publish",
			strings.NewReader(`{"stream": "full", "message": {"body": "Mg=="}}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := e.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var we wireError
		if err := json.NewDecoder(res.Body).Decode(&we); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 429 || we.Code != "resource_exhausted" || !strings.Contains(we.Message, "MaxMessages=1") {
			t.Fatalf("%d %+v", res.StatusCode, we)
		}
		if res.Header.Get("Retry-After") == "" {
			t.Fatalf("no Retry-After header: %v", res.Header)
		}
		var full sluicev1.StreamFull
		var retry sluicev1.RetryInfo
		we.detail(t, &full)
		we.detail(t, &retry)
		if full.GetStream() != "full" || full.GetLimit() != "max_messages" || full.GetBound() != 1 || retry.GetRetryAfter().AsDuration() <= 0 {
			t.Fatalf("details %v, %v", &full, &retry)
		}
	})
	t.Run("empty body", func(t *testing.T) {
		e.postError(t, "StreamService/ListStreams", ``, 400, "invalid_argument")
		ok()
	})
}

func TestHTTPJSONRequestLimit(t *testing.T) {
	e := setup(t, &Options{MaxRequestBytes: MinMaxRequestBytes})
	if code, out := e.post(t, "StreamService/CreateStream", `{"config": {"name": "blobs"}}`); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	huge := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), MinMaxRequestBytes))
	for range 2 { // and the connection or the server is not left broken
		we := e.postError(t, "PublishService/Publish", `{"stream": "blobs", "message": {"body": "`+huge+`"}}`, 429, "resource_exhausted")
		if !strings.Contains(we.Message, "MaxRequestBytes=65536") {
			t.Fatalf("message %q does not name the limit", we.Message)
		}
	}
	if code, out := e.post(t, "PublishService/Publish", `{"stream": "blobs", "message": {"body": "eA=="}}`); code != 200 {
		t.Fatalf("publish after an oversized request: %d %s", code, out)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := setup(t, nil)
	get := func(path string) int {
		t.Helper()
		res, err := e.h1.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if get("/healthz") != 200 || get("/readyz") != 200 {
		t.Fatal("not healthy and ready")
	}
	e.srv.Drain()
	if get("/healthz") != 200 || get("/readyz") != 503 {
		t.Fatal("draining: want healthy and not ready")
	}
	e2 := setup(t, nil)
	e2.b.Close()
	res, err := e2.h1.Get(e2.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 {
		t.Fatalf("closed broker: readyz %d", res.StatusCode)
	}
	we := e2.postError(t, "StreamService/ListStreams", `{}`, 503, "unavailable")
	if !strings.Contains(we.Message, "closed") {
		t.Fatalf("closed broker: %q", we.Message)
	}
}
