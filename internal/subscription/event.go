package subscription

import (
	"encoding/binary"
	"errors"
	"fmt"
)

type eventKind byte

const (
	evDeliver eventKind = 1
	evAck     eventKind = 2
	evRetry   eventKind = 3
	evDead    eventKind = 4
	evDelay   eventKind = 5  // a new message held back until its deliver-at time
	evSeek    eventKind = 6  // the partition restarts at offset: floor = next = offset
	evRedrive eventKind = 7  // a dead-lettered message is pending again
	evPurge   eventKind = 8  // dead letters before offset (in the dead-letter log) are discarded
	evHold    eventKind = 9  // key_ordered: a new message waits behind its key's earlier one
	evExhaust eventKind = 10 // no deliveries left (terminated, or its dead-lettering failed)
	evRevoke  eventKind = 11 // a delivery was taken back (rebalance, or a failure before it): it does not count
)

// maxKeyBytes bounds a key in a journal event.
const maxKeyBytes = 4 << 10

// event is one journaled state change.
type event struct {
	kind       eventKind
	partition  int
	offset     int64
	deliveries int    // evDeliver
	dlqOffset  int64  // evRedrive: the dead letter's offset
	key        string // evDeliver, evDelay, evHold, evRedrive: the message key (key_ordered)
	notBefore  int64  // evRetry, evDelay: unix ms
	at         int64  // evDeliver, evRetry: unix ms
	consumer   string // evRetry
	reason     string // evRetry
}

// maxPartition bounds the partition number an event may name.
const maxPartition = 1 << 16

var errBadEvent = errors.New("subscription: bad journal event")

func (e *event) append(b []byte) []byte {
	b = append(b, byte(e.kind))
	b = binary.AppendUvarint(b, uint64(e.partition))
	b = binary.AppendUvarint(b, uint64(e.offset))
	switch e.kind {
	case evDeliver:
		b = binary.AppendUvarint(b, uint64(e.deliveries))
		b = binary.AppendVarint(b, e.at)
		b = appendString(b, e.key)
	case evRetry:
		b = binary.AppendVarint(b, e.notBefore)
		b = binary.AppendVarint(b, e.at)
		b = appendString(b, e.consumer)
		b = appendString(b, e.reason)
	case evDelay:
		b = binary.AppendVarint(b, e.notBefore)
		b = appendString(b, e.key)
	case evRedrive:
		b = binary.AppendUvarint(b, uint64(e.dlqOffset))
		b = appendString(b, e.key)
	case evHold:
		b = appendString(b, e.key)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(limit uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.err = fmt.Errorf("%w: %s", errBadEvent, what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: %s", errBadEvent, what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(limit int, what string) string {
	n := int(d.uvarint(uint64(limit), what+" length"))
	if d.err != nil {
		return ""
	}
	if n > len(d.b) {
		d.err = fmt.Errorf("%w: %s runs past the event", errBadEvent, what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// decodeEvent decodes one event, checking every field's bounds.
func decodeEvent(b []byte) (event, error) {
	if len(b) == 0 {
		return event{}, fmt.Errorf("%w: empty", errBadEvent)
	}
	e := event{kind: eventKind(b[0])}
	d := decoder{b: b[1:]}
	e.partition = int(d.uvarint(maxPartition, "partition"))
	e.offset = int64(d.uvarint(1<<62, "offset"))
	switch e.kind {
	case evDeliver:
		e.deliveries = int(d.uvarint(1<<31, "deliveries"))
		e.at = d.varint("time")
		e.key = d.str(maxKeyBytes, "key")
	case evRetry:
		e.notBefore = d.varint("not-before")
		e.at = d.varint("time")
		e.consumer = d.str(MaxConsumerNameLen, "consumer")
		e.reason = d.str(MaxReasonBytes, "reason")
	case evDelay:
		e.notBefore = d.varint("not-before")
		e.key = d.str(maxKeyBytes, "key")
	case evRedrive:
		e.dlqOffset = int64(d.uvarint(1<<62, "dead-letter offset"))
		e.key = d.str(maxKeyBytes, "key")
	case evHold:
		e.key = d.str(maxKeyBytes, "key")
	case evAck, evDead, evSeek, evPurge, evExhaust, evRevoke:
	default:
		return event{}, fmt.Errorf("%w: kind %d", errBadEvent, e.kind)
	}
	if d.err != nil {
		return event{}, d.err
	}
	if len(d.b) != 0 {
		return event{}, fmt.Errorf("%w: %d trailing bytes", errBadEvent, len(d.b))
	}
	return e, nil
}
