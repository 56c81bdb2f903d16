package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	svc "github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// Limits of a Token.
const (
	// MinTokenSecretBytes and MaxTokenSecretBytes bound Token.Secret: long
	// enough not to be guessed, short enough for a header.
	MinTokenSecretBytes = 16
	MaxTokenSecretBytes = 4096
	// MaxTokenNameBytes bounds Token.Name.
	MaxTokenNameBytes = 64
	// MaxTokens bounds Options.Tokens, and MaxTokenPatterns the patterns of one
	// permission of a token: each call compares its token against every token.
	MaxTokens        = 1000
	MaxTokenPatterns = 1000
	// maxPatternBytes is the longest stream name (sluice's limit) plus room
	// for stars.
	maxPatternBytes = 256
)

// Permission is what a token may do on a stream.
type Permission string

// The permissions. Each is granted on its own: admin does not imply publish or
// consume.
const (
	// Publish: Publish, PublishBatch, PublishStream.
	Publish Permission = "publish"
	// Consume: Read, SubscribeLive, every call of ConsumerService, and reading
	// a subscription's dead letters and parked keys.
	Consume Permission = "consume"
	// Admin: creating, updating and deleting streams, subscriptions and
	// schedules, seeking subscriptions, redriving and purging dead letters.
	Admin Permission = "admin"
)

// Token is a bearer token and what it may do. A client sends it as
// "Authorization: Bearer <Secret>" (client.WithToken).
//
// Publish, Consume and Admin list the stream-name patterns on which the token
// has that permission. A pattern is a stream name in which '*' stands for any
// run of characters, including none and including dots; every other character
// stands for itself, and the pattern must match the whole name: "orders" only
// orders, "orders.*" orders.eu and orders.eu.dlq but not orders, "*.dlq" every
// dead-letter stream, "*" every stream.
//
// Reading a stream's or a subscription's description (GetStream, ListStreams,
// GetSubscription, ListSubscriptions) needs any one of the three on the stream.
type Token struct {
	// Name identifies the token in errors and logs; the secret never appears.
	// Required, unique, 1..MaxTokenNameBytes characters of [A-Za-z0-9._-].
	Name string
	// Secret is the token itself: MinTokenSecretBytes..MaxTokenSecretBytes
	// (16..4096) printable ASCII characters without spaces, unique. The server
	// keeps only its SHA-256, and compares in constant time.
	Secret string
	// Publish, Consume and Admin are the patterns of each permission, at most
	// MaxTokenPatterns each; a token needs at least one pattern in all.
	Publish, Consume, Admin []string
}

func (t *Token) patterns(p Permission) []string {
	switch p {
	case Publish:
		return t.Publish
	case Consume:
		return t.Consume
	case Admin:
		return t.Admin
	}
	return nil
}

var permissions = []Permission{Publish, Consume, Admin}

// validate checks the token; field is its place in Options ("Options.Tokens[2]").
func (t *Token) validate(field string) error {
	if t.Name == "" || len(t.Name) > MaxTokenNameBytes || strings.Trim(t.Name, nameChars) != "" {
		return &sluice.InvalidError{Field: field + ".Name",
			Reason: fmt.Sprintf("%q: want 1..%d characters of [A-Za-z0-9._-]", t.Name, MaxTokenNameBytes)}
	}
	if n := len(t.Secret); n < MinTokenSecretBytes || n > MaxTokenSecretBytes {
		return &sluice.InvalidError{Field: field + ".Secret",
			Reason: fmt.Sprintf("%d bytes outside [MinTokenSecretBytes=%d, MaxTokenSecretBytes=%d]", n, MinTokenSecretBytes, MaxTokenSecretBytes)}
	}
	for i := 0; i < len(t.Secret); i++ {
		if b := t.Secret[i]; b <= ' ' || b > '~' {
			return &sluice.InvalidError{Field: field + ".Secret", Reason: fmt.Sprintf("byte %d is not printable ASCII (spaces are not allowed either)", i)}
		}
	}
	n := 0
	for _, p := range permissions {
		pats := t.patterns(p)
		f := field + "." + strings.ToUpper(string(p[:1])) + string(p[1:])
		if len(pats) > MaxTokenPatterns {
			return &sluice.InvalidError{Field: f, Reason: fmt.Sprintf("%d patterns, over MaxTokenPatterns=%d", len(pats), MaxTokenPatterns)}
		}
		for i, pat := range pats {
			if pat == "" || len(pat) > maxPatternBytes || strings.Trim(pat, nameChars+"*") != "" {
				return &sluice.InvalidError{Field: fmt.Sprintf("%s[%d]", f, i),
					Reason: fmt.Sprintf("%q: want 1..%d characters of [A-Za-z0-9._-] and '*'", pat, maxPatternBytes)}
			}
		}
		n += len(pats)
	}
	if n == 0 {
		return &sluice.InvalidError{Field: field, Reason: "grants nothing: give it publish, consume or admin patterns"}
	}
	return nil
}

// nameChars are the characters of a stream name and of a token name.
const nameChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

// validateTokens checks every token and that names and secrets are unique.
func validateTokens(tokens []Token) error {
	if len(tokens) > MaxTokens {
		return &sluice.InvalidError{Field: "Options.Tokens", Reason: fmt.Sprintf("%d tokens, over MaxTokens=%d", len(tokens), MaxTokens)}
	}
	names := make(map[string]int, len(tokens))
	secrets := make(map[string]int, len(tokens))
	for i := range tokens {
		t := &tokens[i]
		field := fmt.Sprintf("Options.Tokens[%d]", i)
		if err := t.validate(field); err != nil {
			return err
		}
		if j, dup := names[t.Name]; dup {
			return &sluice.InvalidError{Field: field + ".Name", Reason: fmt.Sprintf("%q already names Tokens[%d]", t.Name, j)}
		}
		if j, dup := secrets[t.Secret]; dup {
			return &sluice.InvalidError{Field: field + ".Secret", Reason: fmt.Sprintf("the same as the secret of Tokens[%d]", j)}
		}
		names[t.Name], secrets[t.Secret] = i, i
	}
	return nil
}

// matchPattern reports whether the stream name matches the pattern: '*'
// matches any run of characters, anything else itself, over the whole name.
func matchPattern(pattern, name string) bool {
	// Greedy matching with backtracking to the last star: linear in practice,
	// at worst len(pattern)*len(name), both bounded.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// authToken is a configured token as the server keeps it.
type authToken struct {
	name string
	sum  [sha256.Size]byte
	tok  Token // the patterns; Secret cleared
}

// may reports whether the token has permission p on the stream.
func (t *authToken) may(p Permission, stream string) bool {
	for _, pat := range t.tok.patterns(p) {
		if matchPattern(pat, stream) {
			return true
		}
	}
	return false
}

// sees reports whether the token has any permission on the stream.
func (t *authToken) sees(stream string) bool {
	for _, p := range permissions {
		if t.may(p, stream) {
			return true
		}
	}
	return false
}

// authenticator checks the bearer token of a request against the configured
// ones. Its zero value (no tokens) is never used: without tokens there is no
// authentication.
type authenticator struct {
	tokens []authToken
}

func newAuthenticator(tokens []Token) *authenticator {
	a := &authenticator{tokens: make([]authToken, len(tokens))}
	for i, t := range tokens {
		a.tokens[i] = authToken{name: t.Name, sum: sha256.Sum256([]byte(t.Secret)), tok: t}
		a.tokens[i].tok.Secret = ""
	}
	return a
}

// authenticate returns the token the request's Authorization header names,
// or an unauthenticated error.
func (a *authenticator) authenticate(h http.Header) (*authToken, error) {
	v := h.Get("Authorization")
	if v == "" {
		return nil, unauthenticated(`no token: send "Authorization: Bearer <token>"`)
	}
	scheme, secret, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return nil, unauthenticated(`the Authorization header is not "Bearer <token>"`)
	}
	// Comparing fixed-size digests, all of them, takes the same time whichever
	// token matches, or none, and whatever the secret's length.
	sum := sha256.Sum256([]byte(secret))
	var found *authToken
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
			found = &a.tokens[i]
		}
	}
	if found == nil {
		return nil, unauthenticated("unknown token")
	}
	return found, nil
}

func unauthenticated(reason string) *connect.Error {
	ce := connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: %s", sluice.ErrUnauthenticated, reason))
	ce.Meta().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	return ce
}

func permissionDenied(t *authToken, what, stream string) *connect.Error {
	return connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("%w: token %q lacks %s on stream %q", sluice.ErrPermissionDenied, t.name, what, stream))
}

// anyPermission is the pseudo-permission of the calls that describe a stream:
// any one of the three will do.
const anyPermission Permission = ""

// ruleKind says how a procedure finds the stream it acts on.
type ruleKind int

const (
	// byField: the stream is the request's field at path.
	byField ruleKind = iota
	// filterStreams: ListStreams, whose answer keeps the streams the token
	// has any permission on.
	filterStreams
	// filterSchedules: ListSchedules, whose answer keeps the schedules of
	// streams the token has admin on.
	filterSchedules
	// bySchedule: the stream of the schedule the request's name field names.
	bySchedule
	// anyToken: any valid token (ListDrills, which names no stream).
	anyToken
	// drillStreams: every permission on the scratch streams of a drill's
	// live run, checked on their common prefix (RunDrill).
	drillStreams
)

// rule is the permission a procedure needs, and where its stream is.
type rule struct {
	perm Permission
	kind ruleKind
	// path is the field that holds the stream name (byField) or the schedule
	// name (bySchedule), dotted through nested messages.
	path string
	// laterMayOmit: on a client or bidi stream, requests after the first
	// may leave the stream empty, and then belong to the first's (Consume).
	laterMayOmit bool
}

// rules is the permission every procedure needs. A procedure missing from it
// is refused to every token (TestRulesCoverEveryProcedure keeps it complete).
var rules = map[string]rule{
	svc.StreamServiceCreateStreamProcedure: {perm: Admin, path: "config.name"},
	svc.StreamServiceUpdateStreamProcedure: {perm: Admin, path: "config.name"},
	svc.StreamServiceDeleteStreamProcedure: {perm: Admin, path: "name"},
	svc.StreamServiceListStreamsProcedure:  {perm: anyPermission, kind: filterStreams},
	svc.StreamServiceGetStreamProcedure:    {perm: anyPermission, path: "name"},

	svc.PublishServicePublishProcedure:       {perm: Publish, path: "stream"},
	svc.PublishServicePublishBatchProcedure:  {perm: Publish, path: "stream"},
	svc.PublishServicePublishStreamProcedure: {perm: Publish, path: "stream"},

	svc.ReadServiceReadProcedure:          {perm: Consume, path: "stream"},
	svc.ReadServiceSubscribeLiveProcedure: {perm: Consume, path: "stream"},

	svc.SubscriptionServiceCreateSubscriptionProcedure: {perm: Admin, path: "stream"},
	svc.SubscriptionServiceDeleteSubscriptionProcedure: {perm: Admin, path: "stream"},
	svc.SubscriptionServiceListSubscriptionsProcedure:  {perm: anyPermission, path: "stream"},
	svc.SubscriptionServiceGetSubscriptionProcedure:    {perm: anyPermission, path: "stream"},
	svc.SubscriptionServiceSeekSubscriptionProcedure:   {perm: Admin, path: "stream"},
	svc.SubscriptionServiceListParkedKeysProcedure:     {perm: Consume, path: "stream"},
	svc.SubscriptionServiceListDeadLettersProcedure:    {perm: Consume, path: "stream"},
	svc.SubscriptionServiceGetDeadLetterProcedure:      {perm: Consume, path: "stream"},
	svc.SubscriptionServiceRedriveDeadLettersProcedure: {perm: Admin, path: "stream"},
	svc.SubscriptionServicePurgeDeadLettersProcedure:   {perm: Admin, path: "stream"},

	svc.ConsumerServiceConsumeProcedure: {perm: Consume, path: "consumer.stream", laterMayOmit: true},
	svc.ConsumerServiceFetchProcedure:   {perm: Consume, path: "consumer.stream"},
	svc.ConsumerServiceAckProcedure:     {perm: Consume, path: "consumer.stream"},
	svc.ConsumerServiceNackProcedure:    {perm: Consume, path: "consumer.stream"},
	svc.ConsumerServiceTermProcedure:    {perm: Consume, path: "consumer.stream"},
	svc.ConsumerServiceExtendProcedure:  {perm: Consume, path: "consumer.stream"},

	svc.ScheduleServiceCreateScheduleProcedure: {perm: Admin, path: "config.stream"},
	svc.ScheduleServicePauseScheduleProcedure:  {perm: Admin, kind: bySchedule, path: "name"},
	svc.ScheduleServiceDeleteScheduleProcedure: {perm: Admin, kind: bySchedule, path: "name"},
	svc.ScheduleServiceListSchedulesProcedure:  {perm: Admin, kind: filterSchedules},

	svc.DrillServiceListDrillsProcedure: {kind: anyToken},
	svc.DrillServiceRunDrillProcedure:   {perm: Admin, kind: drillStreams},
}

// stringField returns the string at a dotted path of m ("consumer.stream"),
// "" when a message on the way is unset. The paths in rules are checked
// against the API's descriptors by a test, so a missing field is a bug.
func stringField(m proto.Message, path string) string {
	r := m.ProtoReflect()
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			panic(fmt.Sprintf("server: %s has no field %q", r.Descriptor().FullName(), name))
		}
		if i == len(parts)-1 {
			return r.Get(fd).String()
		}
		if !r.Has(fd) {
			return ""
		}
		r = r.Get(fd).Message()
	}
	return ""
}

// authInterceptor authenticates every call and checks the permission its
// procedure needs on the stream its requests name.
type authInterceptor struct {
	s *Server
	a *authenticator
}

// check returns nil when tok may call procedure with req, the request (or,
// on a stream, one request) of the call.
func (i authInterceptor) check(ctx context.Context, tok *authToken, r rule, req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("server: request %T is not a protobuf message", req))
	}
	switch r.kind {
	case filterStreams, filterSchedules:
		return nil // the answer is filtered
	case anyToken:
		return nil
	case drillStreams:
		for _, p := range permissions {
			if !tok.may(p, drillStreamPrefix) {
				return permissionDenied(tok, string(p)+" (a live drill needs all three)", drillStreamPrefix+"*")
			}
		}
		return nil
	case bySchedule:
		name := stringField(m, r.path)
		stream, found, err := i.scheduleStream(ctx, name)
		if err != nil {
			return err
		}
		if !found {
			return nil // not_found from the handler
		}
		if !tok.may(r.perm, stream) {
			return permissionDenied(tok, string(r.perm), stream)
		}
		return nil
	}
	stream := stringField(m, r.path)
	if r.perm == anyPermission {
		if !tok.sees(stream) {
			return permissionDenied(tok, "any permission", stream)
		}
		return nil
	}
	if !tok.may(r.perm, stream) {
		return permissionDenied(tok, string(r.perm), stream)
	}
	return nil
}

// scheduleStream is the stream the named schedule publishes to.
func (i authInterceptor) scheduleStream(ctx context.Context, name string) (string, bool, error) {
	infos, err := i.s.b.ListSchedules(ctx)
	if err != nil {
		return "", false, connectError(err)
	}
	for _, info := range infos {
		if info.Config.Name == name {
			return info.Config.Stream, true, nil
		}
	}
	return "", false, nil
}

// filter removes from an answer what the token may not see.
func filter(tok *authToken, r rule, res any) {
	switch r.kind {
	case filterStreams:
		if l, ok := res.(*sluicev1.ListStreamsResponse); ok {
			kept := l.Streams[:0]
			for _, s := range l.Streams {
				if tok.sees(s.GetConfig().GetName()) {
					kept = append(kept, s)
				}
			}
			l.Streams = kept
		}
	case filterSchedules:
		if l, ok := res.(*sluicev1.ListSchedulesResponse); ok {
			kept := l.Schedules[:0]
			for _, s := range l.Schedules {
				if tok.may(Admin, s.GetConfig().GetStream()) {
					kept = append(kept, s)
				}
			}
			l.Schedules = kept
		}
	}
}

// ruleOf is the rule of a procedure; an unknown one is refused.
func ruleOf(procedure string) (rule, error) {
	r, ok := rules[procedure]
	if !ok {
		return rule{}, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("%w: procedure %s has no permission rule", sluice.ErrPermissionDenied, procedure))
	}
	return r, nil
}

func (i authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tok, err := i.a.authenticate(req.Header())
		if err != nil {
			return nil, err
		}
		r, err := ruleOf(req.Spec().Procedure)
		if err != nil {
			return nil, err
		}
		if err := i.check(ctx, tok, r, req.Any()); err != nil {
			return nil, err
		}
		res, err := next(ctx, req)
		if err == nil {
			filter(tok, r, res.Any())
		}
		return res, err
	}
}

func (i authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		tok, err := i.a.authenticate(conn.RequestHeader())
		if err != nil {
			return err
		}
		r, err := ruleOf(conn.Spec().Procedure)
		if err != nil {
			return err
		}
		return next(ctx, &authConn{StreamingHandlerConn: conn, ctx: ctx, i: i, tok: tok, r: r})
	}
}

// authConn checks every request a stream receives before the handler sees it.
type authConn struct {
	connect.StreamingHandlerConn
	ctx      context.Context
	i        authInterceptor
	tok      *authToken
	r        rule
	received int
}

func (c *authConn) Receive(m any) error {
	if err := c.StreamingHandlerConn.Receive(m); err != nil {
		return err
	}
	c.received++
	if c.received > 1 && c.r.laterMayOmit {
		if pm, ok := m.(proto.Message); ok && stringField(pm, c.r.path) == "" {
			return nil
		}
	}
	return c.i.check(c.ctx, c.tok, c.r, m)
}

// requireToken guards a plain HTTP endpoint (/metrics): any valid token.
func (a *authenticator) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.authenticate(r.Header); err != nil {
			var ce *connect.Error
			errors.As(err, &ce)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			http.Error(w, ce.Message(), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Principal is a token the server knows, as listeners other than the API's
// (the Kafka protocol's SASL) see it: its name and what it may do.
type Principal struct{ t *authToken }

// Name is the token's name.
func (p Principal) Name() string { return p.t.name }

// May reports whether the token has the permission ("publish", "consume" or
// "admin") on the stream.
func (p Principal) May(permission, stream string) bool {
	return p.t.may(Permission(permission), stream)
}

// Authenticate finds the token whose secret this is, comparing as the API
// does (in constant time, against every token). Without tokens configured
// it fails: there is nothing to authenticate against.
func (s *Server) Authenticate(secret string) (Principal, error) {
	if s.auth == nil {
		return Principal{}, unauthenticated("the server has no tokens")
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+secret)
	t, err := s.auth.authenticate(h)
	if err != nil {
		return Principal{}, err
	}
	return Principal{t}, nil
}
