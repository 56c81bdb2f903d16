package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"orders", "orders", true},
		{"orders", "orders2", false},
		{"orders", "order", false},
		{"orders.*", "orders.eu", true},
		{"orders.*", "orders.eu.dlq", true},
		{"orders.*", "orders.", true},
		{"orders.*", "orders", false},
		{"orders.*", "ordersx", false},
		{"*", "anything.at-all_1", true},
		{"*", "", true},
		{"*.dlq", "orders.senders.dlq", true},
		{"*.dlq", "orders.dlq.x", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbY", false},
		{"a*b*c", "acb", false},
		{"*b", "bbb", true},
		{"a**", "a", true},
		{"", "", true},
		{"", "a", false},
	} {
		if got := matchPattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// TestRulesCoverEveryProcedure keeps the rules table in step with the API: a
// procedure added without a rule would be refused to everyone, and a path
// that names no string field would panic.
func TestRulesCoverEveryProcedure(t *testing.T) {
	services := sluicev1.File_sluice_v1_sluice_proto.Services()
	seen := map[string]bool{}
	for i := 0; i < services.Len(); i++ {
		sd := services.Get(i)
		for j := 0; j < sd.Methods().Len(); j++ {
			md := sd.Methods().Get(j)
			proc := "/" + string(sd.FullName()) + "/" + string(md.Name())
			seen[proc] = true
			r, ok := rules[proc]
			if !ok {
				t.Errorf("%s has no rule", proc)
				continue
			}
			if r.kind != byField && r.kind != bySchedule {
				continue
			}
			fields := md.Input()
			parts := strings.Split(r.path, ".")
			for k, name := range parts {
				fd := fields.Fields().ByName(protoreflect.Name(name))
				if fd == nil {
					t.Errorf("%s: %s has no field %q", proc, fields.FullName(), name)
					break
				}
				if k < len(parts)-1 {
					if fd.Kind() != protoreflect.MessageKind {
						t.Errorf("%s: %s.%s is not a message", proc, fields.FullName(), name)
						break
					}
					fields = fd.Message()
				} else if fd.Kind() != protoreflect.StringKind || fd.IsList() {
					t.Errorf("%s: %s.%s is not a string", proc, fields.FullName(), name)
				}
			}
		}
	}
	for proc := range rules {
		if !seen[proc] {
			t.Errorf("rule for %s, which the API does not have", proc)
		}
	}
}

func TestTokenValidation(t *testing.T) {
	good := Token{Name: "app", Secret: strings.Repeat("s", MinTokenSecretBytes), Publish: []string{"orders.*"}}
	for _, tc := range []struct {
		name   string
		tokens func() []Token
		field  string
	}{
		{"no name", func() []Token { t := good; t.Name = ""; return []Token{t} }, "Options.Tokens[0].Name"},
		{"bad name", func() []Token { t := good; t.Name = "a b"; return []Token{t} }, "Options.Tokens[0].Name"},
		{"short secret", func() []Token { t := good; t.Secret = "short"; return []Token{t} }, "Options.Tokens[0].Secret"},
		{"space in secret", func() []Token { t := good; t.Secret = "0123456789 abcdef"; return []Token{t} }, "Options.Tokens[0].Secret"},
		{"no grants", func() []Token { t := good; t.Publish = nil; return []Token{t} }, "Options.Tokens[0]"},
		{"bad pattern", func() []Token { t := good; t.Consume = []string{"ok", "a/b"}; return []Token{t} }, "Options.Tokens[0].Consume[1]"},
		{"empty pattern", func() []Token { t := good; t.Admin = []string{""}; return []Token{t} }, "Options.Tokens[0].Admin[0]"},
		{"same name", func() []Token { u := good; u.Secret += "x"; return []Token{good, u} }, "Options.Tokens[1].Name"},
		{"same secret", func() []Token { u := good; u.Name = "other"; return []Token{good, u} }, "Options.Tokens[1].Secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Options{Tokens: tc.tokens()}).Validate()
			var ie *sluice.InvalidError
			if !errors.As(err, &ie) || ie.Field != tc.field {
				t.Fatalf("got %v, want an invalid %s", err, tc.field)
			}
		})
	}
	if err := (&Options{Tokens: []Token{good}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// The tokens of the auth tests.
const (
	opsSecret    = "ops-0123456789abcdef"
	writerSecret = "writer-0123456789abcdef"
	readerSecret = "reader-0123456789abcdef"
	ordersSecret = "orders-admin-0123456789"
)

func authSetup(t *testing.T) *env {
	t.Helper()
	m := NewMetrics()
	e := setup(t, &Options{Metrics: m, Tokens: []Token{
		{Name: "ops", Secret: opsSecret, Admin: []string{"*"}},
		{Name: "writer", Secret: writerSecret, Publish: []string{"orders.*"}},
		{Name: "reader", Secret: readerSecret, Consume: []string{"orders.*"}},
		{Name: "orders-admin", Secret: ordersSecret, Admin: []string{"orders.*"}},
	}})
	m.Attach(e.b)
	for _, name := range []string{"orders.eu", "billing"} {
		if _, err := e.b.CreateStream(ctx(t), sluice.StreamConfig{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// call sends a JSON request over HTTP/1.1 with an Authorization header (none
// when auth is empty) and returns the status and the body.
func (e *env) call(t *testing.T, auth, path, body string) (int, []byte) {
	t.Helper()
	method := "POST"
	if body == "" {
		method = "GET"
	}
	req, err := http.NewRequestWithContext(ctx(t), method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := e.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, out
}

func TestAuthOverJSON(t *testing.T) {
	e := authSetup(t)
	const publish = "/sluice.v1.PublishService/Publish"
	msgTo := func(stream string) string { return `{"stream": "` + stream + `", "message": {"body": "aGk="}}` }
	for _, tc := range []struct {
		name, auth, path, body string
		status                 int
		code                   string
		says                   []string
	}{
		{"no token", "", publish, msgTo("orders.eu"), 401, "unauthenticated", []string{"no token", "Bearer"}},
		{"unknown token", "Bearer not-a-configured-token", publish, msgTo("orders.eu"), 401, "unauthenticated", []string{"unknown token"}},
		{"not bearer", "Basic " + writerSecret, publish, msgTo("orders.eu"), 401, "unauthenticated", []string{"Bearer <token>"}},
		{"publish allowed", "Bearer " + writerSecret, publish, msgTo("orders.eu"), 200, "", nil},
		{"scheme in any case", "bearer " + writerSecret, publish, msgTo("orders.eu"), 200, "", nil},
		{"publish elsewhere", "Bearer " + writerSecret, publish, msgTo("billing"), 403, "permission_denied",
			[]string{`token "writer"`, "lacks publish", `stream "billing"`}},
		{"consumer publishes", "Bearer " + readerSecret, publish, msgTo("orders.eu"), 403, "permission_denied",
			[]string{"lacks publish", `stream "orders.eu"`}},
		{"admin is not publish", "Bearer " + opsSecret, publish, msgTo("orders.eu"), 403, "permission_denied", []string{"lacks publish"}},
		{"publisher creates", "Bearer " + writerSecret, "/sluice.v1.StreamService/CreateStream", `{"config": {"name": "orders.us"}}`,
			403, "permission_denied", []string{"lacks admin", `stream "orders.us"`}},
		{"admin creates", "Bearer " + ordersSecret, "/sluice.v1.StreamService/CreateStream", `{"config": {"name": "orders.us"}}`, 200, "", nil},
		{"admin of other streams", "Bearer " + ordersSecret, "/sluice.v1.StreamService/DeleteStream", `{"name": "billing"}`,
			403, "permission_denied", []string{"lacks admin", `stream "billing"`}},
		{"describe own", "Bearer " + readerSecret, "/sluice.v1.StreamService/GetStream", `{"name": "orders.eu"}`, 200, "", nil},
		{"describe other", "Bearer " + readerSecret, "/sluice.v1.StreamService/GetStream", `{"name": "billing"}`,
			403, "permission_denied", []string{"any permission", `stream "billing"`}},
		{"subscription admin", "Bearer " + readerSecret, "/sluice.v1.SubscriptionService/CreateSubscription",
			`{"stream": "orders.eu", "config": {"name": "s"}}`, 403, "permission_denied", []string{"lacks admin"}},
		{"fetch elsewhere", "Bearer " + readerSecret, "/sluice.v1.ConsumerService/Fetch",
			`{"consumer": {"stream": "billing", "subscription": "s", "name": "c"}}`, 403, "permission_denied", []string{"lacks consume", `stream "billing"`}},
		{"metrics without token", "", "/metrics", "", 401, "", nil},
		{"metrics with a token", "Bearer " + readerSecret, "/metrics", "", 200, "", nil},
		{"healthz open", "", "/healthz", "", 200, "", nil},
		{"readyz open", "", "/readyz", "", 200, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := e.call(t, tc.auth, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, out, tc.status)
			}
			if tc.code == "" {
				return
			}
			var we wireError
			if err := json.Unmarshal(out, &we); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if we.Code != tc.code {
				t.Fatalf("code %q (%s), want %q", we.Code, we.Message, tc.code)
			}
			for _, s := range tc.says {
				if !strings.Contains(we.Message, s) {
					t.Errorf("message %q does not say %q", we.Message, s)
				}
			}
		})
	}
	if info, err := e.b.Stream(ctx(t), "billing"); err != nil || info.Messages != 0 {
		t.Fatalf("billing after refused publishes: %+v %v", info, err)
	}
}

// TestAuthThroughClient checks the Go client's errors, over gRPC and Connect.
func TestAuthThroughClient(t *testing.T) {
	e := authSetup(t)
	for _, p := range []struct {
		name string
		opts []client.Option
	}{{"grpc", []client.Option{client.WithGRPC()}}, {"connect", nil}} {
		t.Run(p.name, func(t *testing.T) {
			dial := func(secret string) *client.Client {
				opts := append([]client.Option{client.WithHTTPClient(e.h2c)}, p.opts...)
				if secret != "" {
					opts = append(opts, client.WithToken(secret))
				}
				c, err := client.Dial(e.url, opts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			writer := dial(writerSecret)
			if _, err := writer.Publish(ctx(t), "orders.eu", sluice.Message{Body: []byte("ok")}); err != nil {
				t.Fatal(err)
			}
			_, err := writer.Publish(ctx(t), "billing", sluice.Message{Body: []byte("no")})
			if !errors.Is(err, sluice.ErrPermissionDenied) || connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("publish to billing: %v", err)
			}
			if !strings.Contains(err.Error(), "publish") || !strings.Contains(err.Error(), `"billing"`) {
				t.Fatalf("the error does not name the permission and the stream: %v", err)
			}
			for _, c := range []*client.Client{dial(""), dial("wrong-0123456789abcdef")} {
				if _, err := c.ListStreams(ctx(t)); !errors.Is(err, sluice.ErrUnauthenticated) {
					t.Fatalf("without a valid token: %v", err)
				}
			}
			// ListStreams shows what the token may see.
			for _, tc := range []struct {
				secret string
				want   []string
			}{{writerSecret, []string{"orders.eu"}}, {opsSecret, []string{"billing", "orders.eu"}}} {
				infos, err := dial(tc.secret).ListStreams(ctx(t))
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, info := range infos {
					got = append(got, info.Config.Name)
				}
				if strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("ListStreams: %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func bearer(secret string) connect.ClientOption {
	return connect.WithInterceptors(tokenInterceptor(secret))
}

// tokenInterceptor sets the bearer token on the generated clients' calls.
type tokenInterceptor string

func (s tokenInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(s))
		return next(ctx, req)
	}
}

func (s tokenInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(s))
		return conn
	}
}

func (s tokenInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// TestAuthStreams checks every request of client and bidi streams.
func TestAuthStreams(t *testing.T) {
	e := authSetup(t)
	opts := []connect.ClientOption{connect.WithGRPC()}

	// PublishStream: a batch to a stream the token may not publish to ends
	// the call, and is not stored; the batch before it is.
	pub := sluicev1connect.NewPublishServiceClient(e.h2c, e.url, append(opts, bearer(writerSecret))...)
	ps := pub.PublishStream(ctx(t))
	if err := ps.Send(&sluicev1.PublishStreamRequest{Stream: "orders.eu", Messages: []*sluicev1.Message{{Body: []byte("1")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Receive(); err != nil {
		t.Fatal(err)
	}
	ps.Send(&sluicev1.PublishStreamRequest{Stream: "billing", Messages: []*sluicev1.Message{{Body: []byte("2")}}})
	_, err := ps.Receive()
	if ce := wantCode(t, err, connect.CodePermissionDenied); !strings.Contains(ce.Message(), `lacks publish on stream "billing"`) {
		t.Fatalf("message: %s", ce.Message())
	}
	ps.CloseRequest()
	ps.CloseResponse()
	for stream, want := range map[string]int64{"orders.eu": 1, "billing": 0} {
		if info, err := e.b.Stream(ctx(t), stream); err != nil || info.Messages != want {
			t.Fatalf("%s: %+v %v, want %d messages", stream, info, err, want)
		}
	}

	// Read: the one request is checked.
	read := sluicev1connect.NewReadServiceClient(e.h2c, e.url, append(opts, bearer(readerSecret))...)
	rs, err := read.Read(ctx(t), connect.NewRequest(&sluicev1.ReadRequest{Stream: "billing"}))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Receive() {
		t.Fatal("records from a stream the token may not read")
	}
	wantCode(t, rs.Err(), connect.CodePermissionDenied)
	rs.Close()
	rs, err = read.Read(ctx(t), connect.NewRequest(&sluicev1.ReadRequest{Stream: "orders.eu"}))
	if err != nil {
		t.Fatal(err)
	}
	if !rs.Receive() || string(rs.Msg().GetRecords()[0].GetBody()) != "1" {
		t.Fatalf("read: %v", rs.Err())
	}
	rs.Close()

	// Consume: the first request names the stream.
	if _, err := e.b.CreateSubscription(ctx(t), "billing", sluice.SubscriptionConfig{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	cons := sluicev1connect.NewConsumerServiceClient(e.h2c, e.url, append(opts, bearer(readerSecret))...)
	cs := cons.Consume(ctx(t))
	cs.Send(&sluicev1.ConsumeRequest{Consumer: &sluicev1.Consumer{Stream: "billing", Subscription: "s", Name: "c"}, Credit: 1})
	_, err = cs.Receive()
	wantCode(t, err, connect.CodePermissionDenied)
	cs.CloseRequest()
	cs.CloseResponse()

	// Without a token, a stream is refused before its first request.
	noToken := sluicev1connect.NewReadServiceClient(e.h2c, e.url, opts...)
	rs, err = noToken.Read(ctx(t), connect.NewRequest(&sluicev1.ReadRequest{Stream: "orders.eu"}))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Receive() {
		t.Fatal("records without a token")
	}
	wantCode(t, rs.Err(), connect.CodeUnauthenticated)
	rs.Close()
}

// TestAuthSchedules checks the schedule calls, whose stream is the schedule's.
func TestAuthSchedules(t *testing.T) {
	e := authSetup(t)
	for _, cfg := range []sluice.ScheduleConfig{
		{Name: "bill", Stream: "billing", Every: 3600e9, Message: sluice.Message{Body: []byte("tick")}},
		{Name: "order", Stream: "orders.eu", Every: 3600e9, Message: sluice.Message{Body: []byte("tick")}},
	} {
		if _, err := e.b.CreateSchedule(ctx(t), cfg); err != nil {
			t.Fatal(err)
		}
	}
	sched := sluicev1connect.NewScheduleServiceClient(e.h2c, e.url, connect.WithGRPC(), bearer(ordersSecret))
	_, err := sched.PauseSchedule(ctx(t), connect.NewRequest(&sluicev1.PauseScheduleRequest{Name: "bill", Paused: true}))
	if ce := wantCode(t, err, connect.CodePermissionDenied); !strings.Contains(ce.Message(), `lacks admin on stream "billing"`) {
		t.Fatal(ce)
	}
	if _, err := sched.PauseSchedule(ctx(t), connect.NewRequest(&sluicev1.PauseScheduleRequest{Name: "order", Paused: true})); err != nil {
		t.Fatal(err)
	}
	_, err = sched.DeleteSchedule(ctx(t), connect.NewRequest(&sluicev1.DeleteScheduleRequest{Name: "missing"}))
	wantCode(t, err, connect.CodeNotFound)
	list, err := sched.ListSchedules(ctx(t), connect.NewRequest(&sluicev1.ListSchedulesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if s := list.Msg.GetSchedules(); len(s) != 1 || s[0].GetConfig().GetName() != "order" {
		t.Fatalf("ListSchedules: %v", s)
	}
	_, err = sched.CreateSchedule(ctx(t), connect.NewRequest(&sluicev1.CreateScheduleRequest{Config: &sluicev1.ScheduleConfig{
		Name: "x", Stream: "billing", Cron: "* * * * *"}}))
	wantCode(t, err, connect.CodePermissionDenied)
}
