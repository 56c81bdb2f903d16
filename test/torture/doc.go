// Torture is the kill -9 part of sluice's reliability suite (issue 7): it runs a
// sluice server as a child process, publishes and consumes through the network
// client while it SIGKILLs the server at random moments and restarts it on the
// same address and data directory, and at the end checks that nothing
// acknowledged was lost, nothing acknowledged came back, order held where the
// subscription modes promise it, and poison messages were dead-lettered after
// exactly their delivery limit.
//
//	go run ./test/torture --duration 60s
//	go run ./test/torture --kills 1000 --kill-min 200ms --kill-max 1s
//
// It ends with one line,
//
//	TORTURE published=N acked=N delivered=N lost=0 duplicates=D order_violations=0 kills=K
//
// preceded by the first few violations of each kind, and exits 1 when any
// check failed (2 when the run itself could not be carried out).
//
// # Workload
//
// One stream of 4 partitions. Producers publish one message at a time, each
// with a unique id in its body and as its IdempotencyKey; a publish that fails
// (the server is down, the outcome is unknown) is retried with the same key
// until it succeeds, so a message is stored at most once and its position is
// known exactly. Most messages carry one of the producer's keys (in order: the
// next message of a key is published once the previous one was acknowledged),
// some none, and a few are poison: they have a key of their own and every
// consumer Nacks them. Five subscriptions each see every message (fan-out):
// "queue" (queue mode, two consumers), "keyed" (key_ordered, two consumers),
// "group" (partitioned, a group of two members), "fan-a" and "fan-b" (queue
// mode, one consumer each). Consumers Ack everything else at once (AckMany).
//
// After the kills the producers stop, the server is stopped with SIGTERM and
// started again (the clean restart), and the consumers drain until every
// subscription's backlog is 0 or --drain-timeout passes.
//
// # Counts
//
//   - published: messages the producers started to publish; acked: those whose
//     publish returned a position. The others ("maybe") may or may not be
//     stored; they are checked when delivered but never counted as lost.
//   - delivered: messages that every subscription delivered at least once;
//     duplicates: deliveries beyond the first of a message on a subscription,
//     summed over the subscriptions (allowed: at-least-once).
//   - lost: (acknowledged message, subscription) pairs where the subscription
//     never delivered the message and did not dead-letter it either.
//
// # Checks (each must be 0; see checker.go)
//
//   - lost, as above.
//   - acked then redelivered: a consumer's Ack returned nil, and was sent before
//     the delivery's lease deadline, yet the subscription delivered the message
//     again afterwards. A copy handed out before the acked delivery can reach
//     its consumer after the Ack (a rebalance revoked its lease while it was on
//     its way, or it expired): the subscription did not deliver it again, and
//     its settlements fail with ErrStaleLease. Such a copy, a lower fencing
//     token and a deadline no later than the acked delivery's, is counted as
//     fenced_copies (a duplicate); any other delivery after the Ack is a
//     violation.
//   - order, key_ordered: a message of a key is delivered (the first time or
//     again) only when the previous message of the key (in publish order, which
//     is offset order: same key, same partition) is settled; the checker asks
//     that an Ack of it was started (answered nil, or with an unknown outcome,
//     or not answered yet) before the delivery was received, or that the
//     subscription dead-lettered it. It implies that the first deliveries of a
//     key come in offset order.
//   - order, partitioned: within a partition the first delivery of each offset
//     comes in offset order: when offset o is first delivered, every lower
//     offset of the partition was delivered already, or was dead-lettered.
//     Redeliveries may repeat earlier offsets (a failed message rewinds the
//     partition), so only first deliveries are checked.
//   - dead letters: every poison message is in each subscription's dead-letter
//     stream; every dead letter has Deliveries equal to the subscription's
//     MaxDeliveries and no longer an attempt history; no delivery has a
//     Deliveries count above it. A message dead-lettered twice is reported,
//     not failed (dead letters are published at least once).
//   - integrity: every body is one the driver wrote, and a message is stored
//     at one position only (a retried publish was deduplicated).
//
// Memory is about 150 bytes a published message: ids are indexes into
// slices, not strings.
package main
