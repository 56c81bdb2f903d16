package logstore

import "errors"

var (
	// ErrClosed is returned by operations on a closed partition.
	ErrClosed = errors.New("logstore: partition closed")
	// ErrFailed is returned once a write or sync failed: the partition accepts no
	// more writes until it is reopened. The error that caused it is wrapped too.
	ErrFailed = errors.New("logstore: partition failed, writes stopped")
	// ErrOutOfRange is returned for a read before the log start or past the end.
	ErrOutOfRange = errors.New("logstore: offset out of range")
	// ErrCorrupt is returned when stored data fails verification. The data is not
	// returned, and a sealed segment is quarantined.
	ErrCorrupt = errors.New("logstore: corrupt data")
)
