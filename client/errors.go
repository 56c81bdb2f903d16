package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// ErrUnimplemented is matched by the error of a call the server does not serve
// (yet): its answer was unimplemented.
var ErrUnimplemented = errors.New("client: not implemented by the server")

// ErrLimit is matched by the error of a request refused for one of the
// server's own limits (its size, the connections, the header bytes): the
// message names the limit. Unlike sluice.ErrStreamFull, a retry of the same
// request does not help.
var ErrLimit = errors.New("client: over a server limit")

// byMessage picks, among sentinels sharing a code, the one the server's message
// names; the first is the default.
var byMessage = map[connect.Code][]error{
	connect.CodeNotFound: {sluice.ErrStreamNotFound, sluice.ErrSubscriptionNotFound,
		sluice.ErrScheduleNotFound, sluice.ErrDeadLetterNotFound},
	connect.CodeAlreadyExists: {sluice.ErrStreamExists, sluice.ErrSubscriptionExists, sluice.ErrScheduleExists},
}

// codes maps the other codes to a sentinel.
var codes = map[connect.Code]error{
	connect.CodeFailedPrecondition: sluice.ErrStaleLease,
	connect.CodeDataLoss:           sluice.ErrCorrupt,
	connect.CodeUnavailable:        sluice.ErrUnavailable,
	connect.CodeUnimplemented:      ErrUnimplemented,
	connect.CodeCanceled:           context.Canceled,
	connect.CodeUnauthenticated:    sluice.ErrUnauthenticated,
	connect.CodePermissionDenied:   sluice.ErrPermissionDenied,
}

// mapError turns what a call returned into the error the embedded broker would
// have returned, wrapped with op (the procedure). It keeps the original error in
// the chain, so connect.CodeOf still works.
func mapError(op string, err error) error {
	if err == nil {
		return nil
	}
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		ce = connect.NewError(connect.CodeOf(err), err)
	}
	code := ce.Code()
	if code == connect.CodeUnknown || code == connect.CodeInternal {
		// Connect reports some transport failures without a code of their own.
		if transportError(err) {
			code = connect.CodeUnavailable
		}
	}
	switch code {
	case connect.CodeInvalidArgument:
		ie := &sluice.InvalidError{Reason: ce.Message()}
		for _, d := range ce.Details() {
			if m, derr := d.Value(); derr == nil {
				if fv, ok := m.(*sluicev1.FieldViolation); ok {
					ie.Field, ie.Reason = fv.GetField(), fv.GetReason()
				}
			}
		}
		return fmt.Errorf("client: %s: %w", op, ie)
	case connect.CodeResourceExhausted:
		if fe := streamFull(ce); fe != nil {
			return fmt.Errorf("client: %s: %w", op, fe)
		}
		// A server limit (request size, connections, header bytes): retrying
		// the same request cannot help, so it is not ErrStreamFull.
		return fmt.Errorf("client: %s: %w: %w", op, ErrLimit, err)
	case connect.CodeDeadlineExceeded:
		// The request may have gone out and been applied: the outcome is
		// unknown, and the error still matches context.DeadlineExceeded.
		return fmt.Errorf("client: %s: %w: %w: %w", op, sluice.ErrUnavailable, context.DeadlineExceeded, err)
	}
	if cands, ok := byMessage[code]; ok {
		target := cands[0]
		for _, c := range cands[1:] {
			if strings.Contains(ce.Message(), c.Error()) {
				target = c
			}
		}
		return fmt.Errorf("client: %s: %w: %w", op, target, err)
	}
	if target, ok := codes[code]; ok {
		return fmt.Errorf("client: %s: %w: %w", op, target, err)
	}
	return fmt.Errorf("client: %s: %w", op, err)
}

// transportError reports a broken or refused connection.
func transportError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &ne)
}

// streamFull rebuilds a *sluice.StreamFullError from the StreamFull and
// RetryInfo details, or from the Retry-After header; nil without a StreamFull.
func streamFull(ce *connect.Error) *sluice.StreamFullError {
	var fe *sluice.StreamFullError
	var retry time.Duration
	for _, d := range ce.Details() {
		m, err := d.Value()
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *sluicev1.StreamFull:
			fe = &sluice.StreamFullError{
				Stream:    m.GetStream(),
				Partition: int(m.GetPartition()),
				Limit:     camelCase(m.GetLimit()),
				Bound:     m.GetBound(),
				Waited:    m.GetWaited().AsDuration(),
			}
		case *sluicev1.RetryInfo:
			retry = m.GetRetryAfter().AsDuration()
		}
	}
	if fe == nil {
		return nil
	}
	if retry == 0 {
		if s, err := strconv.Atoi(ce.Meta().Get("Retry-After")); err == nil && s > 0 {
			retry = time.Duration(s) * time.Second
		}
	}
	fe.RetryAfter = retry
	return fe
}

// camelCase turns the server's "max_messages" back into the broker's
// "MaxMessages", the name StreamFullError.Limit holds in-process.
func camelCase(s string) string {
	var b strings.Builder
	for _, p := range strings.Split(s, "_") {
		if p != "" {
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}
