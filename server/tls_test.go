package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// testPKI is a certificate authority and what it signed: a server
// certificate for 127.0.0.1 and a client certificate.
type testPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "sluice test"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	p := &testPKI{pool: x509.NewCertPool(), server: leaf(2, x509.ExtKeyUsageServerAuth), client: leaf(3, x509.ExtKeyUsageClientAuth)}
	p.pool.AddCert(caCert)
	return p
}

// TestTLS serves over TLS: unary calls over Connect and gRPC, a stream, and
// HTTP/2 negotiated by ALPN; plain HTTP is refused.
func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	s := serveReal(t, &Options{TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}}})
	trust := &tls.Config{RootCAs: pki.pool}

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
	pki := newTestPKI(t)
	s := serveReal(t, &Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}})
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no certificate", nil, false},
		{"self-made certificate", []tls.Certificate{newTestPKI(t).client}, false},
		{"certificate from the CA", []tls.Certificate{pki.client}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial(s.addr, client.WithGRPC(), client.WithTLS(&tls.Config{RootCAs: pki.pool, Certificates: tc.certs}))
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
	pki := newTestPKI(t)
	s := serveReal(t, &Options{MaxConnections: 1, TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}}})
	held, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c, err := client.Dial(s.addr, client.WithGRPC(), client.WithTLS(&tls.Config{RootCAs: pki.pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ListStreams(ctx(t))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "MaxConnections=1") {
		t.Fatalf("over the limit: %v", err)
	}
}
