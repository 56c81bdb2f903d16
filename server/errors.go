package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/internal/apiconv"
)

// codes maps the broker's sentinel errors, matched with errors.Is in this order
// after the typed errors (*sluice.InvalidError, *sluice.StreamFullError).
var codes = []struct {
	err  error
	code connect.Code
}{
	{sluice.ErrStreamNotFound, connect.CodeNotFound},
	{sluice.ErrSubscriptionNotFound, connect.CodeNotFound},
	{sluice.ErrScheduleNotFound, connect.CodeNotFound},
	{sluice.ErrDeadLetterNotFound, connect.CodeNotFound},
	{sluice.ErrStreamExists, connect.CodeAlreadyExists},
	{sluice.ErrSubscriptionExists, connect.CodeAlreadyExists},
	{sluice.ErrScheduleExists, connect.CodeAlreadyExists},
	{sluice.ErrInvalid, connect.CodeInvalidArgument},
	{sluice.ErrStreamFull, connect.CodeResourceExhausted},
	{sluice.ErrStaleLease, connect.CodeFailedPrecondition},
	{sluice.ErrUnauthenticated, connect.CodeUnauthenticated},
	{sluice.ErrPermissionDenied, connect.CodePermissionDenied},
	// Closing, or stopped after a failed write or fsync (fail-stop): the outcome
	// of a publish is unknown, and a retry with its idempotency key is safe.
	{sluice.ErrClosed, connect.CodeUnavailable},
	{sluice.ErrPartitionFailed, connect.CodeUnavailable},
	{sluice.ErrSubscriptionFailed, connect.CodeUnavailable},
	{sluice.ErrCorrupt, connect.CodeDataLoss},
	{context.Canceled, connect.CodeCanceled},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
}

// connectError is the one place where an error becomes what a client gets: a
// code, a message naming the request field or limit at fault, and details.
//
//	*sluice.InvalidError     invalid_argument, "invalid <field>: <reason>" with the
//	                         field as a request path, and a FieldViolation
//	*sluice.StreamFullError  resource_exhausted, StreamFull and RetryInfo details,
//	                         and a Retry-After header in seconds
//	*connect.Error           unchanged (the server's own, e.g. a malformed request)
//	the sentinels in codes   their code, the message unchanged
//	anything else            internal, the message unchanged
func connectError(err error) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var ie *sluice.InvalidError
	if errors.As(err, &ie) {
		field := apiField(ie.Field)
		ce := connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid %s: %s", field, ie.Reason))
		ce.AddDetail(detail(&sluicev1.FieldViolation{Field: field, Reason: ie.Reason}))
		return ce
	}
	var fe *sluice.StreamFullError
	if errors.As(err, &fe) {
		ce := connect.NewError(connect.CodeResourceExhausted, err)
		ce.AddDetail(detail(&sluicev1.StreamFull{
			Stream:    fe.Stream,
			Partition: int32(fe.Partition),
			Limit:     apiField(fe.Limit),
			Bound:     fe.Bound,
			Waited:    apiconv.DurationOrNil(fe.Waited),
		}))
		ce.AddDetail(detail(&sluicev1.RetryInfo{RetryAfter: durationpb.New(fe.RetryAfter)}))
		secs := max(1, int64((fe.RetryAfter+time.Second-1)/time.Second))
		ce.Meta().Set("Retry-After", strconv.FormatInt(secs, 10))
		return ce
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return connect.NewError(c.code, err)
		}
	}
	return connect.NewError(connect.CodeInternal, err)
}

// detail wraps a detail message. Marshalling a generated message cannot fail.
func detail(m proto.Message) *connect.ErrorDetail {
	d, err := connect.NewErrorDetail(m)
	if err != nil {
		panic(fmt.Sprintf("server: error detail %T: %v", m, err))
	}
	return d
}

// fieldRoots renames the first element of the broker's field names (the Go
// type or argument) to where it sits in the API's requests; "" drops it, for
// configs whose fields are the request's own.
var fieldRoots = map[string]string{
	"StreamConfig":       "config",
	"SubscriptionConfig": "config",
	"ScheduleConfig":     "config",
	"ConsumerConfig":     "consumer",
	"MaxInFlight":        "consumer.max_in_flight",
	"DeadLetterQuery":    "query",
	"RedriveOptions":     "",
	"extend":             "by",
	"Message":            "message",
	"msgs":               "messages",
	"ReaderConfig":       "",
	"LiveConfig":         "",
}

// apiField turns a field as the broker names it ("StreamConfig.Retention.MaxAge",
// "msgs[3].Key") into the path of the request field a client sent
// ("config.retention.max_age", "messages[3].key"). A path already in that form
// is returned unchanged.
func apiField(f string) string {
	parts := strings.Split(f, ".")
	out := make([]string, 0, len(parts))
	for i, p := range parts {
		name, index := p, ""
		if j := strings.IndexByte(p, '['); j >= 0 {
			name, index = p[:j], p[j:]
		}
		if i == 0 {
			if root, ok := fieldRoots[name]; ok {
				if root == "" && len(parts) > 1 {
					continue
				}
				name = root
			}
		}
		out = append(out, snakeCase(name)+index)
	}
	return strings.Join(out, ".")
}

// snakeCase turns "DedupeMaxKeys" into "dedupe_max_keys" and "ID" into "id".
func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			nextLower := i > 0 && i+1 < len(r) && unicode.IsUpper(r[i-1]) && unicode.IsLower(r[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// invalid is a request field the server itself refuses, before the broker sees
// it; field is already a request path.
func invalid(field, format string, args ...any) error {
	return &sluice.InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
