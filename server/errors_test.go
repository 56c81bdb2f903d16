package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

func TestConnectError(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("sluice: op %q: %w", "x", err) }
	full := &sluice.StreamFullError{Stream: "jobs", Partition: 3, Limit: "MaxBytes", Bound: 1 << 20,
		Waited: 5 * time.Second, RetryAfter: 1500 * time.Millisecond}
	own := connect.NewError(connect.CodeInvalidArgument, errors.New("unmarshal: bad"))
	for _, tc := range []struct {
		name string
		err  error
		code connect.Code
		// message is a substring of the error's message.
		message string
	}{
		{"invalid", wrap(&sluice.InvalidError{Field: "StreamConfig.Retention.MaxAge", Reason: "-1s is negative"}),
			connect.CodeInvalidArgument, "invalid config.retention.max_age: -1s is negative"},
		{"invalid batch message", &sluice.InvalidError{Field: "msgs[2].IdempotencyKey", Reason: "300 bytes, limit MaxIdempotencyKeyBytes=256"},
			connect.CodeInvalidArgument, "invalid messages[2].idempotency_key: 300 bytes, limit MaxIdempotencyKeyBytes=256"},
		{"invalid sentinel", wrap(sluice.ErrInvalid), connect.CodeInvalidArgument, "invalid argument"},
		{"stream full", wrap(full), connect.CodeResourceExhausted, "stream jobs partition 3 full: at MaxBytes=1048576"},
		{"stream full sentinel", sluice.ErrStreamFull, connect.CodeResourceExhausted, "stream full"},
		{"stream not found", fmt.Errorf("%w: %q", sluice.ErrStreamNotFound, "orders"), connect.CodeNotFound, `stream not found: "orders"`},
		{"subscription not found", wrap(sluice.ErrSubscriptionNotFound), connect.CodeNotFound, "subscription not found"},
		{"schedule not found", wrap(sluice.ErrScheduleNotFound), connect.CodeNotFound, "schedule not found"},
		{"dead letter not found", wrap(sluice.ErrDeadLetterNotFound), connect.CodeNotFound, "dead letter not found"},
		{"stream exists", fmt.Errorf("%w: %q", sluice.ErrStreamExists, "orders"), connect.CodeAlreadyExists, `stream already exists: "orders"`},
		{"subscription exists", wrap(sluice.ErrSubscriptionExists), connect.CodeAlreadyExists, "subscription already exists"},
		{"schedule exists", wrap(sluice.ErrScheduleExists), connect.CodeAlreadyExists, "schedule already exists"},
		{"stale lease", wrap(sluice.ErrStaleLease), connect.CodeFailedPrecondition, "lease not held"},
		{"closed", sluice.ErrClosed, connect.CodeUnavailable, "sluice: closed"},
		{"partition failed", wrap(sluice.ErrPartitionFailed), connect.CodeUnavailable, "writes stopped"},
		{"subscription failed", wrap(sluice.ErrSubscriptionFailed), connect.CodeUnavailable, "subscription stopped"},
		{"corrupt", wrap(sluice.ErrCorrupt), connect.CodeDataLoss, "corrupt"},
		{"canceled", wrap(context.Canceled), connect.CodeCanceled, "context canceled"},
		{"deadline", wrap(context.DeadlineExceeded), connect.CodeDeadlineExceeded, "deadline exceeded"},
		{"connect error kept", wrap(own), connect.CodeInvalidArgument, "unmarshal: bad"},
		{"anything else", errors.New("disk on fire"), connect.CodeInternal, "disk on fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := connectError(tc.err)
			if ce.Code() != tc.code || !strings.Contains(ce.Message(), tc.message) {
				t.Fatalf("got %v %q, want %v containing %q", ce.Code(), ce.Message(), tc.code, tc.message)
			}
		})
	}

	t.Run("field violation detail", func(t *testing.T) {
		ce := connectError(&sluice.InvalidError{Field: "Message.DeliverAt", Reason: "too far"})
		if fv := fieldViolation(t, ce); fv.GetField() != "message.deliver_at" || fv.GetReason() != "too far" {
			t.Fatalf("detail %v", fv)
		}
	})
	t.Run("stream full details", func(t *testing.T) {
		ce := connectError(wrap(full))
		var sf *sluicev1.StreamFull
		var ri *sluicev1.RetryInfo
		for _, d := range ce.Details() {
			v, err := d.Value()
			if err != nil {
				t.Fatal(err)
			}
			switch v := v.(type) {
			case *sluicev1.StreamFull:
				sf = v
			case *sluicev1.RetryInfo:
				ri = v
			}
		}
		if sf.GetStream() != "jobs" || sf.GetPartition() != 3 || sf.GetLimit() != "max_bytes" || sf.GetBound() != 1<<20 ||
			sf.GetWaited().AsDuration() != 5*time.Second {
			t.Fatalf("StreamFull %v", sf)
		}
		if ri.GetRetryAfter().AsDuration() != 1500*time.Millisecond {
			t.Fatalf("RetryInfo %v", ri)
		}
		if got := ce.Meta().Get("Retry-After"); got != "2" {
			t.Fatalf("Retry-After %q, want 2 (seconds, rounded up)", got)
		}
	})
}

func TestAPIField(t *testing.T) {
	for in, want := range map[string]string{
		"StreamConfig.Name":             "config.name",
		"StreamConfig.Retention.MaxAge": "config.retention.max_age",
		"StreamConfig.DedupeMaxKeys":    "config.dedupe_max_keys",
		"Message":                       "message",
		"Message.IdempotencyKey":        "message.idempotency_key",
		"msgs":                          "messages",
		"msgs[12].Headers":              "messages[12].headers",
		"ReaderConfig.Partition":        "partition",
		"ReaderConfig.FetchBytes":       "fetch_bytes",
		"MaxMessages":                   "max_messages",
		"config.retention.max_age":      "config.retention.max_age",
		"limit":                         "limit",
		"ConsumerID":                    "consumer_id",
		"HTTPServer":                    "http_server",
	} {
		if got := apiField(in); got != want {
			t.Errorf("apiField(%q) = %q, want %q", in, got, want)
		}
	}
}
