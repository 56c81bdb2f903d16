package server

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
	"github.com/sluicemq/sluice/internal/testpki"
)

// TestTLS serves over TLS: unary calls over Connect and gRPC, a stream, and
// HTTP/2 negotiated by ALPN; plain HTTP is refused.
func TestTLS(t *testing.T) {
	pki := testpki.New(t)
	s := serveReal(t, &Options{TLS: &tls.Config{Certificates: []tls.Certificate{pki.Server}}})
	trust := &tls.Config{RootCAs: pki.Pool}

	for _, opts := range [][]client.Option{{client.WithTLS(trust)}, {client.WithTLS(trust), client.WithGRPC()}} {
		c, err := client.Dial(s.addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateStream(ctx(t), sluice.StreamConfig{Name: "secure"}); err != nil && !errors.Is(err, sluice.ErrStreamExists) {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx(t), "secure", sluice.Message{Body: []byte("over tls")}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	var p http.Protocols
	p.SetHTTP2(true)
	tr := &http.Transport{Protocols: &p, TLSClientConfig: trust}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	res, err := hc.Get("https://" + s.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Fatalf("answered over %s, want HTTP/2", res.Proto)
	}
	read := sluicev1connect.NewReadServiceClient(hc, "https://"+s.addr, connect.WithGRPC())
	rs, err := read.Read(ctx(t), connect.NewRequest(&sluicev1.ReadRequest{Stream: "secure"}))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for n < 2 && rs.Receive() {
		n += len(rs.Msg().GetRecords())
	}
	rs.Close()
	if n != 2 {
		t.Fatalf("read %d records over TLS: %v", n, rs.Err())
	}

	h1, _ := clients2()
	res, err = h1.Get("http://" + s.addr + "/healthz")
	if err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
}

// TestClientCertificates requires client certificates: a client without one
// is refused, one with a certificate from the CA is served.
func TestClientCertificates(t *testing.T) {
	pki := testpki.New(t)
	s := serveReal(t, &Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.Server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.Pool,
	}})
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no certificate", nil, false},
		{"self-made certificate", []tls.Certificate{testpki.New(t).Client}, false},
		{"certificate from the CA", []tls.Certificate{pki.Client}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial(s.addr, client.WithGRPC(), client.WithTLS(&tls.Config{RootCAs: pki.Pool, Certificates: tc.certs}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.ListStreams(ctx(t))
			if tc.ok != (err == nil) {
				t.Fatalf("ListStreams: %v", err)
			}
		})
	}
}

// TestConnectionLimitTLS: a TLS connection past MaxConnections is told so
// too, after its handshake.
func TestConnectionLimitTLS(t *testing.T) {
	pki := testpki.New(t)
	s := serveReal(t, &Options{MaxConnections: 1, TLS: &tls.Config{Certificates: []tls.Certificate{pki.Server}}})
	held, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c, err := client.Dial(s.addr, client.WithGRPC(), client.WithTLS(&tls.Config{RootCAs: pki.Pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ListStreams(ctx(t))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "MaxConnections=1") {
		t.Fatalf("over the limit: %v", err)
	}
}
