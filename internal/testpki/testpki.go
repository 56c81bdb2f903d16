// Package testpki makes the certificates the tests of TLS need: a certificate
// authority, a server certificate for 127.0.0.1 and a client certificate, all
// valid for an hour around now, in memory or as PEM files.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a certificate authority and what it signed.
type PKI struct {
	// Pool trusts the authority.
	Pool *x509.CertPool
	// Server is for 127.0.0.1 (server auth), Client for client auth.
	Server, Client tls.Certificate
	caDER          []byte
}

// New makes a fresh PKI.
func New(t testing.TB) *PKI {
	t.Helper()
	now := time.Now()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := &PKI{Pool: x509.NewCertPool(), caDER: caDER,
		Server: leaf("server", 2, x509.ExtKeyUsageServerAuth), Client: leaf("client", 3, x509.ExtKeyUsageClientAuth)}
	p.Pool.AddCert(caCert)
	return p
}

// Files are the paths of a PKI written as PEM.
type Files struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// Write writes the PKI into dir as PEM files (keys in PKCS #8, mode 0600).
func (p *PKI) Write(t testing.TB, dir string) Files {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pair := func(name string, c tls.Certificate) (string, string) {
		kder, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", c.Certificate[0]), write(name+"-key.pem", "PRIVATE KEY", kder)
	}
	var f Files
	f.CA = write("ca.pem", "CERTIFICATE", p.caDER)
	f.ServerCert, f.ServerKey = pair("server", p.Server)
	f.ClientCert, f.ClientKey = pair("client", p.Client)
	return f
}
