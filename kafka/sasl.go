package kafka

import (
	"bytes"
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// v1 only: after a v0 handshake the SASL bytes travel unframed, which
	// no current client needs.
	register(17, &handler{name: "SaslHandshake", min: 1, max: 1, open: true, serve: (*Server).saslHandshake})
	register(36, &handler{name: "SaslAuthenticate", min: 0, max: 2, open: true, serve: (*Server).saslAuthenticate})
}

// saslPlain is the one mechanism: PLAIN, whose password is a bearer token of
// the server. Use it over TLS: PLAIN sends the token as it is.
const saslPlain = "PLAIN"

func (s *Server) saslHandshake(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = []string{saslPlain}
	switch {
	case s.opts.Authenticate == nil:
		resp.ErrorCode = kerr.IllegalSaslState.Code // nothing to authenticate against
	case req.Mechanism != saslPlain:
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
	default:
		c.saslMechanism = saslPlain
	}
	return resp, nil
}

func (s *Server) saslAuthenticate(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if c.saslMechanism != saslPlain {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = kmsg.StringPtr("SaslHandshake with PLAIN first")
		return resp, nil
	}
	// PLAIN (RFC 4616): authzid NUL authcid NUL password.
	parts := bytes.SplitN(req.SASLAuthBytes, []byte{0}, 3)
	if len(parts) != 3 || len(parts[2]) == 0 {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("SASL/PLAIN wants authzid NUL username NUL password, the password being a token")
		return resp, nil
	}
	p, err := s.opts.Authenticate(string(parts[2]))
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("authentication failed: %v", err))
		s.opts.Logger.Warn("kafka: SASL authentication failed", "remote", c.nc.RemoteAddr().String(), "user", string(parts[1]))
		return resp, nil
	}
	c.principal = p
	return resp, nil
}
