package drill

import (
	"errors"
	"fmt"
	"time"
)

// The whiteboard timer's limits: the user chooses a time between them.
const (
	MinTimer = 5 * time.Minute
	MaxTimer = 10 * time.Minute
)

// Drill is one design drill.
type Drill struct {
	// Number is the drill's place, 1 to 4.
	Number int
	// Slug names the drill in URLs and files: "queue-or-not", "exactly-once",
	// "poison", "task-queue-or-log".
	Slug string
	// Title is a short title.
	Title string
	// Question is the whiteboard prompt: the situation, and what to sketch.
	Question string
	// Checklist holds what a strong answer covers, one sentence an item, 6 to 9
	// items.
	Checklist []string
	// Live is one paragraph on what the live run shows.
	Live string
}

// ErrNoDrill is matched (errors.Is) by the error of Get and Run for a number
// that names no drill.
var ErrNoDrill = errors.New("drill: no such drill")

// noDrillError names the number asked for and the limits.
type noDrillError struct{ n int }

func (e *noDrillError) Error() string {
	return fmt.Sprintf("drill %d: there are drills 1 to %d", e.n, len(drills))
}

func (e *noDrillError) Is(target error) bool { return target == ErrNoDrill }

// All returns the four drills, in order.
func All() []Drill {
	out := make([]Drill, len(drills))
	for i, d := range drills {
		out[i] = d.clone()
	}
	return out
}

// Get returns drill n (1 to 4), or an error naming the limits.
func Get(n int) (Drill, error) {
	if n < 1 || n > len(drills) {
		return Drill{}, &noDrillError{n}
	}
	return drills[n-1].clone(), nil
}

// clone copies d, so that callers cannot change the drills through Checklist.
func (d Drill) clone() Drill {
	d.Checklist = append([]string(nil), d.Checklist...)
	return d
}

var drills = []Drill{
	{
		Number: 1,
		Slug:   "queue-or-not",
		Title:  "A queue between two services, or not",
		Question: "A checkout service calls a fulfilment service synchronously. Fulfilment " +
			"usually answers in 20 to 50 ms, but a few times a day it slows to seconds or fails " +
			"for a minute, and checkout's latency and error rate follow it. A colleague proposes " +
			"a queue between the two. Sketch both designs, say what the caller sees in each during " +
			"a slow spell, and decide when the queue is the right call and when it is the wrong one.",
		Checklist: []string{
			"With a queue the caller waits only for a durable publish, so its latency and availability no longer follow the downstream's.",
			"It suits work whose result the caller does not need in order to answer, so the response means \"accepted\", not \"done\".",
			"The backlog absorbs a slow spell or an outage and the worker drains it at its own pace, which turns errors into delay.",
			"The queue must be bounded, and its depth and the age of its oldest message watched, or a long outage becomes an unbounded delay.",
			"The consumers' concurrency caps the load on the downstream, which is protected from spikes and retry storms.",
			"When the caller needs the answer now (a price, an authorisation, a read), a queue adds a publish, a wait and a reply path, so call inline with a timeout, bounded retries and a circuit breaker instead.",
			"The broker is a new stateful dependency to run and monitor: it must store before it acknowledges, and its availability now bounds the caller's.",
			"Delivery becomes at-least-once, so the consumer must be idempotent, and failures go to retries with backoff and a dead-letter stream rather than to the user.",
			"The user-facing contract changes: the outcome reaches the user some other way (polling, a callback, a notification), within a delay you can state.",
		},
		Live: "A simulated downstream answers in 20 to 40 ms, except for a slow spell of 0.6 s " +
			"during which every call takes 400 ms and fails. Forty requests arrive 40 ms apart. " +
			"First each request calls the downstream inline; then each publishes to a stream and " +
			"returns, while one worker consumes a queue subscription and calls the downstream at " +
			"its own pace, retrying with backoff. The run compares the latency and errors the " +
			"callers see, measures the backlog's peak and how long it takes to drain after the " +
			"spell. Then ten callers that need the answer arrive 10 ms apart, and the run times " +
			"their answers inline and through the queue, with the worker answering on a reply stream.",
	},
	{
		Number: 2,
		Slug:   "exactly-once",
		Title:  "Exactly-once delivery, and what to build instead",
		Question: "An order service publishes \"charge this card\" messages and a billing worker " +
			"consumes them. The product owner asks for exactly-once delivery so that no customer " +
			"is ever charged twice. Explain why no broker can promise that across crashes, then " +
			"sketch a design that delivers at least once and still charges each order once: the " +
			"producer, the broker, the consumer and the store the charge is recorded in.",
		Checklist: []string{
			"A consumer can crash after the effect and before its acknowledgment reaches the broker, and the broker cannot tell that from a crash before the effect, so it must redeliver or risk losing the message.",
			"Acknowledging before processing (at-most-once) trades duplicates for losses; at-least-once with idempotent processing is the choice for anything that matters.",
			"Each message carries a stable identity chosen by the producer (the order id as idempotency key), not one the broker assigns, so that a retried publish is recognised too.",
			"The producer retries a publish whose outcome it did not learn, and the broker's dedupe window answers the retry with the original's position instead of storing a second message.",
			"The consumer records the ids it processed and skips repeats, and the record and the effect commit in one transaction (or the effect is naturally idempotent, like an upsert), or a crash between them still duplicates.",
			"A worker whose lease expired may still be running, so its late acknowledgment or write is rejected by its fencing token rather than trusted.",
			"The record of processed ids is kept longer than the longest way back for a message: the lease times the deliveries, the backoff, and the time a dead letter may wait for a redrive.",
			"An effect outside your transaction (a card network, an email) needs the downstream's own idempotency key, derived from the message's id.",
		},
		Live: "One order is published twice with the same idempotency key, and the stream stores " +
			"it once. Two subscriptions with a 1 s lease then consume it. In each, worker A takes " +
			"the order, charges the card (a counter) and is killed before it acknowledges; once the " +
			"lease expires, worker B receives it again. The naive handler charges twice; the " +
			"handler that goes through a ProcessedLog charges once. Worker A's late acknowledgment " +
			"with its old lease is refused.",
	},
	{
		Number: 3,
		Slug:   "poison",
		Title:  "A poisoned message",
		Question: "One message in a payment stream cannot be processed: its amount is malformed, " +
			"and the consumer fails on it every time. The payments of one account must be applied " +
			"in order. Sketch what happens to the queue without safeguards, then the design that " +
			"contains the damage: how it is retried, what waits behind it and what does not, where " +
			"it ends up, and how it is processed once the bug is fixed.",
		Checklist: []string{
			"Without a bound a message that always fails is retried forever, and in an ordered queue or partition it blocks everything behind it (head-of-line blocking).",
			"Deliveries are bounded by a maximum count, and retries are spaced by exponential backoff with jitter, so that a failure does not become a busy loop.",
			"Permanent failures (a parse error) are told apart from transient ones (a timeout) and go to the dead-letter stream at once instead of being retried.",
			"Where order matters, only the failing message's key waits, parked, while the other keys keep flowing.",
			"The dead letter keeps the message with its reason and the history of its attempts, so the failure can be understood without reproducing it.",
			"Dead letters and parked keys raise alerts, since a dead-letter stream nobody watches is silent data loss.",
			"Once the fix is deployed the dead letters are redriven into the subscription at a bounded rate, knowing that a redriven message now comes after its key's later messages.",
			"The handler stays idempotent, since a failed attempt may have had part of its effect before it failed.",
		},
		Live: "A key_ordered subscription allowing 3 deliveries, with a backoff from 100 to 400 ms, " +
			"receives 30 payments on 5 accounts; the second payment of acct-3 has a malformed amount " +
			"and the worker nacks it with the reason. The run shows acct-3 parked while the other " +
			"accounts keep flowing, the gaps between the attempts, the dead letter after exactly 3 " +
			"deliveries with its attempt history, acct-3's later payments flowing after it, and the " +
			"redrive once the fix is deployed.",
	},
	{
		Number: 4,
		Slug:   "task-queue-or-log",
		Title:  "Task queue or log",
		Question: "Two teams want \"a queue\" for order events. One sends an email per order and " +
			"wants them out as fast as a pool of workers can go. The other feeds a ledger that must " +
			"see each account's events in order, and wants to rebuild the ledger from history after " +
			"a bug. Sketch a task queue and a partitioned log, say which team gets which, and " +
			"explain why ordering differs between them.",
		Checklist: []string{
			"A task queue hands each message to any free worker and forgets it once acknowledged, and its parallelism grows with the workers, not with a partition count.",
			"With several workers of varying speed, and with retries, a task queue processes messages out of order, even those of one key.",
			"A log keeps its messages in order per partition and keeps them after they are consumed: consumers track an offset per partition and can move it back to replay.",
			"Order holds within a partition only: messages that must stay in order share a key that maps to one partition, and there is no order across partitions.",
			"A consumer group gives each partition to one member, so parallelism is capped by the partition count and a slow message delays everything behind it in its partition.",
			"A rebalance moves partitions between members, and the previous owner is fenced so that it cannot settle or write after it lost a partition.",
			"Key-ordered delivery is a middle ground: messages of one key in order, one at a time, and different keys on any free worker.",
			"Replay needs retention sized for the history to rebuild, and consumers that tolerate seeing a message again.",
		},
		Live: "A stream of 4 partitions receives 200 messages over 8 keys, each with its sequence " +
			"number within its key. A queue subscription with 4 workers of varied processing time " +
			"counts the per-key order violations in the order of processing; a key_ordered " +
			"subscription with 4 workers does the same; then a partitioned subscription with a " +
			"group of 2 members, each reading its partitions in order. Finally the partitioned " +
			"subscription is moved back to the earliest message and the group reads all 200 again.",
	},
}
