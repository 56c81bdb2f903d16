package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/sluicemq/sluice/internal/testpki"
)

// principal is a test token: it may do what its permissions say on streams
// with the prefix.
type principal struct {
	name, prefix string
	perms        map[string]bool
}

func (p principal) Name() string { return p.name }
func (p principal) May(perm, stream string) bool {
	return p.perms[perm] && strings.HasPrefix(stream, p.prefix)
}

// TestSASL: with authentication on, a client must log in with SASL/PLAIN
// and a known token; what it may then do follows the token's permissions.
func TestSASL(t *testing.T) {
	tokens := map[string]principal{
		"writer-secret-0123456789": {"writer", "orders", map[string]bool{"publish": true}},
		"reader-secret-0123456789": {"reader", "orders", map[string]bool{"consume": true}},
	}
	e := setup(t, &Options{Authenticate: func(tok string) (Principal, error) {
		p, ok := tokens[tok]
		if !ok {
			return nil, errors.New("unknown token")
		}
		return p, nil
	}})
	e.stream(t, "orders", 1)
	e.stream(t, "billing", 1)
	login := func(secret string) kgo.Opt {
		return kgo.SASL(plain.Auth{User: "any", Pass: secret}.AsMechanism())
	}

	w := e.client(t, login("writer-secret-0123456789"), kgo.DefaultProduceTopic("orders"))
	if err := w.ProduceSync(ctx(t), &kgo.Record{Value: []byte("paid")}).FirstErr(); err != nil {
		t.Fatalf("writer producing to orders: %v", err)
	}
	err := w.ProduceSync(ctx(t), &kgo.Record{Topic: "billing", Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("writer producing to billing: %v; want refused", err)
	}

	r := e.client(t, login("reader-secret-0123456789"), kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got := consumeAll(t, r, 1); string(got[0].Value) != "paid" {
		t.Fatalf("reader got %q", got[0].Value)
	}

	bad := e.client(t, login("not-a-token-at-all-000"), kgo.DefaultProduceTopic("orders"), kgo.RequestRetries(0))
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = bad.ProduceSync(c, &kgo.Record{Value: []byte("x")}).FirstErr()
	if err == nil { // kgo retries a failed login until the context ends
		t.Fatal("a client with an unknown token produced")
	}

	anon := e.client(t, kgo.DefaultProduceTopic("orders"), kgo.RequestRetries(0))
	c2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := anon.ProduceSync(c2, &kgo.Record{Value: []byte("x")}).FirstErr(); err == nil {
		t.Fatal("a client without SASL produced")
	}
	if info, _ := e.b.Stream(context.Background(), "orders"); info.Messages != 1 {
		t.Fatalf("orders holds %d messages, want 1", info.Messages)
	}
}

// TestSASLOverTLS: the token travels inside TLS, as it should in production.
func TestSASLOverTLS(t *testing.T) {
	pki := testpki.New(t)
	e := setup(t, &Options{
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.Server}, MinVersion: tls.VersionTLS12},
		Authenticate: func(tok string) (Principal, error) {
			if tok != "tls-token-0123456789abcdef" {
				return nil, errors.New("unknown token")
			}
			return principal{"ops", "", map[string]bool{"publish": true, "consume": true, "admin": true}}, nil
		},
	})
	e.stream(t, "secure", 1)
	cl := e.client(t, kgo.DialTLSConfig(&tls.Config{RootCAs: pki.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}),
		kgo.SASL(plain.Auth{User: "ops", Pass: "tls-token-0123456789abcdef"}.AsMechanism()),
		kgo.DefaultProduceTopic("secure"), kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err := cl.ProduceSync(ctx(t), &kgo.Record{Value: []byte("over tls")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := consumeAll(t, cl, 1); string(got[0].Value) != "over tls" {
		t.Fatalf("got %q", got[0].Value)
	}
}
