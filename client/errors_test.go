package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

func withDetails(code connect.Code, msg string, ds ...proto.Message) error {
	ce := connect.NewError(code, errors.New(msg))
	for _, d := range ds {
		ed, err := connect.NewErrorDetail(d)
		if err != nil {
			panic(err)
		}
		ce.AddDetail(ed)
	}
	return ce
}

func TestMapError(t *testing.T) {
	full := withDetails(connect.CodeResourceExhausted, "full",
		&sluicev1.StreamFull{Stream: "s", Partition: 2, Limit: "max_bytes", Bound: 100, Waited: durationpb.New(time.Second)},
		&sluicev1.RetryInfo{RetryAfter: durationpb.New(3 * time.Second)})
	for _, tc := range []struct {
		name  string
		in    error
		is    []error
		check func(t *testing.T, err error)
	}{
		{"stream not found", connect.NewError(connect.CodeNotFound, sluice.ErrStreamNotFound), []error{sluice.ErrStreamNotFound}, nil},
		{"subscription not found", connect.NewError(connect.CodeNotFound, fmt.Errorf("%w: \"x\" on \"s\"", sluice.ErrSubscriptionNotFound)), []error{sluice.ErrSubscriptionNotFound}, nil},
		{"exists", connect.NewError(connect.CodeAlreadyExists, sluice.ErrStreamExists), []error{sluice.ErrStreamExists}, nil},
		{"invalid", withDetails(connect.CodeInvalidArgument, "invalid config.partitions: -1", &sluicev1.FieldViolation{Field: "config.partitions", Reason: "-1 outside"}),
			[]error{sluice.ErrInvalid}, func(t *testing.T, err error) {
				var ie *sluice.InvalidError
				if !errors.As(err, &ie) || ie.Field != "config.partitions" || ie.Reason != "-1 outside" {
					t.Fatalf("%+v", ie)
				}
			}},
		{"stream full", full, []error{sluice.ErrStreamFull}, func(t *testing.T, err error) {
			var fe *sluice.StreamFullError
			if !errors.As(err, &fe) || fe.Stream != "s" || fe.Partition != 2 || fe.Limit != "MaxBytes" || fe.Bound != 100 ||
				fe.Waited != time.Second || fe.RetryAfter != 3*time.Second {
				t.Fatalf("%+v", fe)
			}
		}},
		{"server limit", connect.NewError(connect.CodeResourceExhausted, errors.New("request of 70000 bytes is over the server's limit MaxRequestBytes=65536")),
			[]error{ErrLimit}, func(t *testing.T, err error) {
				if errors.Is(err, sluice.ErrStreamFull) {
					t.Fatalf("%v matches ErrStreamFull: a Producer would retry it", err)
				}
			}},
		{"stale lease", connect.NewError(connect.CodeFailedPrecondition, errors.New("stale")), []error{sluice.ErrStaleLease}, nil},
		{"unavailable", connect.NewError(connect.CodeUnavailable, errors.New("shutting down")), []error{sluice.ErrUnavailable}, nil},
		{"refused", connect.NewError(connect.CodeUnavailable, syscall.ECONNREFUSED), []error{sluice.ErrUnavailable}, nil},
		{"eof", connect.NewError(connect.CodeUnknown, io.ErrUnexpectedEOF), []error{sluice.ErrUnavailable}, nil},
		{"reset", connect.NewError(connect.CodeInternal, syscall.ECONNRESET), []error{sluice.ErrUnavailable}, nil},
		{"deadline", connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded), []error{sluice.ErrUnavailable, context.DeadlineExceeded}, nil},
		{"canceled", connect.NewError(connect.CodeCanceled, context.Canceled), []error{context.Canceled}, nil},
		{"unimplemented", connect.NewError(connect.CodeUnimplemented, errors.New("no")), []error{ErrUnimplemented}, nil},
		{"data loss", connect.NewError(connect.CodeDataLoss, errors.New("crc")), []error{sluice.ErrCorrupt}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mapError("Op", tc.in)
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("%v does not match %v", err, target)
				}
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
	if mapError("Op", nil) != nil {
		t.Fatal("nil mapped to an error")
	}
	if err := mapError("Op", connect.NewError(connect.CodeInternal, errors.New("bug"))); errors.Is(err, sluice.ErrUnavailable) {
		t.Fatalf("internal mapped to unavailable: %v", err)
	}
}
