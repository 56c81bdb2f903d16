package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicemq/sluice"
)

// errorCode maps a broker error to the Kafka error code a client acts on.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, sluice.ErrStreamNotFound):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, sluice.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, sluice.ErrStreamFull):
		// The stream refused the publish (its overflow policy): nothing was
		// stored. POLICY_VIOLATION is not retried by clients, as a shed
		// publish should not be hammered.
		return kerr.PolicyViolation.Code
	case errors.Is(err, sluice.ErrPartitionFailed):
		return kerr.KafkaStorageError.Code
	case errors.Is(err, sluice.ErrCorrupt), errors.Is(err, errCorrupt):
		return kerr.CorruptMessage.Code
	case errors.Is(err, errMagic):
		return kerr.UnsupportedForMessageFormat.Code
	case errors.Is(err, errTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, sluice.ErrInvalid):
		return kerr.InvalidRecord.Code
	case errors.Is(err, sluice.ErrClosed), errors.Is(err, context.Canceled):
		return kerr.NotLeaderForPartition.Code // retriable: the client looks again
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	case errors.Is(err, sluice.ErrSubscriptionNotFound):
		return kerr.GroupIDNotFound.Code
	}
	return kerr.UnknownServerError.Code
}

// errorMessage is err's text for answers that carry one, nil for none.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
