package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// Bad input of every kind gets a clear error, the server keeps serving, and
// nothing stored before it is lost.
func TestBadInput(t *testing.T) {
	e := setup(t, nil)
	if _, err := e.b.CreateStream(ctx(t), sluice.StreamConfig{Name: "keep"}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := e.b.Publish(ctx(t), "keep", sluice.Message{Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	raw := func(t *testing.T, procedure, contentType string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx(t), "POST", e.url+"/sluice.v1."+procedure, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		res, err := e.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, out
	}

	t.Run("malformed protobuf", func(t *testing.T) {
		for _, body := range [][]byte{{0xff, 0xff, 0xff}, {0x0a, 0x50, 'x'}, bytes.Repeat([]byte{0x80}, 20)} {
			code, out := raw(t, "PublishService/Publish", "application/proto", body)
			var we wireError
			if json.Unmarshal(out, &we) != nil || code != 400 || we.Code != "invalid_argument" {
				t.Fatalf("%x: %d %s", body, code, out)
			}
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		for _, body := range []string{`[]`, `{"stream": 7}`, `{"stream": "keep", "message": {"body": "not base64!"}}`,
			`{"stream": "keep", "message": {"partition": "x"}}`, "\x00\x01", `{"stream": "keep"`} {
			e.postError(t, "PublishService/Publish", body, 400, "invalid_argument")
		}
	})
	t.Run("unknown fields", func(t *testing.T) {
		we := e.postError(t, "ConsumerService/Fetch", `{"consumer": {"stream": "keep", "subscription": "s", "name": "c", "maxInFlite": 3}}`, 400, "invalid_argument")
		if !strings.Contains(we.Message, "maxInFlite") {
			t.Fatalf("%q does not name the field", we.Message)
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		if code, _ := raw(t, "PublishService/Publish", "text/plain", []byte(`{}`)); code != http.StatusUnsupportedMediaType {
			t.Fatalf("text/plain answered %d", code)
		}
	})
	t.Run("limits named", func(t *testing.T) {
		cases := []struct {
			procedure, body, field string
		}{
			{"PublishService/Publish", `{"stream": "keep", "message": {"key": "` + strings.Repeat("QUFB", sluice.MaxKeyBytes/3+1) + `"}}`, "message.key"},
			{"PublishService/Publish", `{"stream": "keep", "message": {"headers": [` + strings.Repeat(`{"key": "h"},`, sluice.MaxHeaders) + `{"key": "h"}]}}`, "message.headers"},
			{"StreamService/CreateStream", `{"config": {"name": "` + strings.Repeat("a", 129) + `"}}`, "config.name"},
			{"StreamService/CreateStream", `{"config": {"name": "x", "partitions": 5000}}`, "config.partitions"},
			{"SubscriptionService/CreateSubscription", `{"stream": "keep", "config": {"name": "a/b"}}`, "config.name"},
			{"SubscriptionService/CreateSubscription", `{"stream": "keep", "config": {"name": "s", "maxDeliveries": 5000}}`, "config.max_deliveries"},
			{"SubscriptionService/CreateSubscription", `{"stream": "keep", "config": {"name": "s", "mode": 42}}`, "config.mode"},
			{"ScheduleService/CreateSchedule", `{"config": {"name": "n", "stream": "keep", "cron": "61 * * * *"}}`, "config.cron"},
		}
		for _, c := range cases {
			we := e.postError(t, c.procedure, c.body, 400, "invalid_argument")
			var fv sluicev1.FieldViolation
			we.detail(t, &fv)
			if !strings.HasPrefix(fv.GetField(), c.field) {
				t.Errorf("%s: field %q (%s), want %s", c.procedure, fv.GetField(), we.Message, c.field)
			}
		}
	})
	t.Run("oversized batch", func(t *testing.T) {
		pub := sluicev1connect.NewPublishServiceClient(e.h2c, e.url, connect.WithGRPC())
		req := &sluicev1.PublishBatchRequest{Stream: "keep"}
		for range sluice.MaxBatchMessages + 1 {
			req.Messages = append(req.Messages, &sluicev1.Message{Body: []byte("x")})
		}
		_, err := pub.PublishBatch(ctx(t), connect.NewRequest(req))
		ce := wantCode(t, err, connect.CodeInvalidArgument)
		if fv := fieldViolation(t, ce); fv.GetField() != "messages" || !strings.Contains(fv.GetReason(), "10000") {
			t.Fatalf("violation %v", fv)
		}
	})
	t.Run("garbage gRPC frame", func(t *testing.T) {
		var frame bytes.Buffer
		frame.WriteByte(0)
		binary.Write(&frame, binary.BigEndian, uint32(3))
		frame.Write([]byte{0xff, 0xff, 0xff})
		req, _ := http.NewRequestWithContext(ctx(t), "POST", e.url+"/sluice.v1.PublishService/Publish", &frame)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		res, err := e.h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if got := res.Trailer.Get("Grpc-Status"); got != "3" { // invalid_argument
			t.Fatalf("grpc-status %q (%s)", got, res.Trailer.Get("Grpc-Message"))
		}
	})
	t.Run("a frame longer than its body", func(t *testing.T) {
		var frame bytes.Buffer
		frame.WriteByte(0)
		binary.Write(&frame, binary.BigEndian, uint32(1000))
		frame.Write([]byte{0x0a, 0x01})
		req, _ := http.NewRequestWithContext(ctx(t), "POST", e.url+"/sluice.v1.PublishService/Publish", &frame)
		req.Header.Set("Content-Type", "application/grpc")
		res, err := e.h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if got := res.Trailer.Get("Grpc-Status"); got == "" || got == "0" {
			t.Fatalf("a truncated frame answered grpc-status %q", got)
		}
	})

	// Still serving, and every message stored before is there.
	info, err := e.b.Stream(ctx(t), "keep")
	if err != nil || info.Messages != 10 {
		t.Fatalf("after the bad input: %d messages, %v", info.Messages, err)
	}
	if code, out := e.post(t, "PublishService/Publish", `{"stream": "keep", "message": {"body": "b2s="}}`); code != 200 {
		t.Fatalf("publish after the bad input: %d %s", code, out)
	}
}

// FuzzRequest sends arbitrary bodies to every procedure in JSON and in binary
// protobuf, through the server's handler in-process: no body may crash it or
// be answered with internal, and the server goes on serving.
func FuzzRequest(f *testing.F) {
	procedures := []string{}
	for _, sd := range []string{"StreamService/CreateStream", "StreamService/UpdateStream", "StreamService/DeleteStream",
		"PublishService/Publish", "PublishService/PublishBatch", "SubscriptionService/CreateSubscription",
		"SubscriptionService/SeekSubscription", "SubscriptionService/ListDeadLetters", "SubscriptionService/RedriveDeadLetters",
		"ConsumerService/Fetch", "ConsumerService/Ack", "ConsumerService/Nack", "ConsumerService/Extend",
		"ScheduleService/CreateSchedule"} {
		procedures = append(procedures, "/sluice.v1."+sd)
	}
	seeds := []proto.Message{
		&sluicev1.CreateStreamRequest{Config: &sluicev1.StreamConfig{Name: "s", Partitions: 2}},
		&sluicev1.PublishRequest{Stream: "s", Message: &sluicev1.Message{Key: []byte("k"), Body: []byte("b")}},
		&sluicev1.CreateSubscriptionRequest{Stream: "s", Config: &sluicev1.SubscriptionConfig{Name: "w"}},
		&sluicev1.FetchRequest{Consumer: &sluicev1.Consumer{Stream: "s", Subscription: "w", Name: "c"}},
	}
	for i, m := range seeds {
		b, _ := proto.Marshal(m)
		f.Add(uint8(i), false, b)
		j, _ := strictJSON{}.Marshal(m)
		f.Add(uint8(i), true, j)
	}
	f.Add(uint8(9), true, []byte(`{"config": {"name": "s", "cron": "*/5 * * * *", "stream": "s"}}`))

	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(f.TempDir(), &sluice.Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	srv, err := New(b, &Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	b.CreateStream(context.Background(), sluice.StreamConfig{Name: "s", Sync: sluice.SyncNever})
	b.CreateSubscription(context.Background(), "s", sluice.SubscriptionConfig{Name: "w"})
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, which uint8, asJSON bool, body []byte) {
		procedure := procedures[int(which)%len(procedures)]
		ct := "application/proto"
		if asJSON {
			ct = "application/json"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200e6)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "POST", procedure, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		// A Fetch waits at most this long for a delivery.
		req.Header.Set("Connect-Timeout-Ms", "50")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == 200 {
			return
		}
		var we wireError
		if err := json.Unmarshal(rec.Body.Bytes(), &we); err != nil {
			t.Fatalf("%s: status %d, body %q is not an error", procedure, rec.Code, rec.Body.Bytes())
		}
		if we.Code == "internal" || we.Code == "unknown" || we.Code == "data_loss" {
			t.Fatalf("%s: %d %s: %s", procedure, rec.Code, we.Code, we.Message)
		}
	})
}
