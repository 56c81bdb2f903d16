package sluice

import (
	"errors"
	"fmt"

	"github.com/sluicemq/sluice/internal/logstore"
)

// Errors returned by the broker. Test with errors.Is.
var (
	// ErrInvalid is matched by every *InvalidError.
	ErrInvalid = errors.New("sluice: invalid argument")
	// ErrStreamNotFound is returned for a stream that does not exist.
	ErrStreamNotFound = errors.New("sluice: stream not found")
	// ErrStreamExists is returned by CreateStream for a name already in use.
	ErrStreamExists = errors.New("sluice: stream already exists")
	// ErrClosed is returned once the broker (or a reader) is closed.
	ErrClosed = errors.New("sluice: closed")
	// ErrLocked is returned by Open when another process uses the data directory.
	ErrLocked = errors.New("sluice: data directory in use by another process")
	// ErrPartitionFailed is returned when a partition stopped accepting writes after
	// a failed write or fsync (fail-stop). Reopen the broker to recover.
	ErrPartitionFailed = logstore.ErrFailed
	// ErrCorrupt is returned when stored data fails its checksum. The bytes are never
	// returned as data.
	ErrCorrupt = logstore.ErrCorrupt
	// ErrOffsetOutOfRange is returned by ReadBatches for an offset outside
	// what a partition stores.
	ErrOffsetOutOfRange = logstore.ErrOutOfRange
	// ErrUnauthenticated is matched by the error of a call to a server that
	// requires a token when none, or an unknown one, was sent.
	ErrUnauthenticated = errors.New("sluice: unauthenticated")
	// ErrPermissionDenied is matched by the error of a call whose token lacks the
	// permission the call needs on its stream; the message names both.
	ErrPermissionDenied = errors.New("sluice: permission denied")
)

// InvalidError reports an argument or configuration field that breaks a rule or a
// limit. It matches ErrInvalid.
type InvalidError struct {
	Field  string // the field or argument, e.g. "StreamConfig.Partitions" or "Message.Body"
	Reason string // what is wrong, naming the limit
}

func (e *InvalidError) Error() string { return "sluice: invalid " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
