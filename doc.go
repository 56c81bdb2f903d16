// Package sluice is a durable message broker and task queue that runs inside your
// program or as a server.
//
// Open runs the broker in-process on a data directory:
//
//	b, err := sluice.Open("data", nil)
//	...
//	defer b.Close()
//	_, err = b.CreateStream(ctx, sluice.StreamConfig{Name: "emails", Partitions: 4})
//	pos, err := b.Publish(ctx, "emails", sluice.Message{Key: []byte("user-42"), Body: body})
//
// A stream is a named, partitioned, append-only log of messages. Publish returns
// the partition and offset of the message only once it is on disk (by default after
// fdatasync, shared by every concurrent publisher of the partition: group commit).
// A Reader reads one partition from an offset, a time, the earliest or the latest
// message, and follows the tail as new messages arrive.
//
// *Broker implements Client; the network client implements the same interface, so
// code written against the embedded broker runs unchanged against a server.
package sluice
