package subscription

import (
	"container/heap"
	"time"
)

// Attempt is one failed delivery of a message.
type Attempt struct {
	At       int64  `json:"at"` // unix ms
	Consumer string `json:"consumer,omitempty"`
	Error    string `json:"error,omitempty"`
}

// pending is a message in [floor, next) that is not done.
type pending struct {
	Offset     int64     `json:"offset"`
	Deliveries int       `json:"deliveries"`
	NotBefore  int64     `json:"not_before,omitempty"` // unix ms: not redelivered before
	Attempts   []Attempt `json:"attempts,omitempty"`

	// Key is the message key, kept in key_ordered mode.
	Key string `json:"key,omitempty"`

	// In flight; never persisted: after a restart every lease has expired.
	lease    uint64
	consumer string
	deadline int64 // unix ms
}

// partState is a subscription's state for one partition.
type partState struct {
	floor int64
	next  int64
	pend  map[int64]*pending
	retry timeHeap // pending messages not in flight, by NotBefore (key_ordered: heads only)

	// key_ordered: every key with a pending message, and how many pending messages
	// wait behind their key's head.
	keys map[string]*keyState
	held int

	// cache is what dispatch read last, while it has more to hand out.
	cache readCache
	// pendCache is the batch that the last retry or held message was read
	// from: released key_ordered messages and retries are often neighbours
	// (the next message of many keys sits in one batch), and reading a whole
	// batch again for each would cost that batch per message. Dropped when
	// nothing is pending.
	pendCache readCache
}

// readCache holds the verified batches that dispatch read last from a
// partition: a fetch smaller than a batch (a batch can hold thousands of
// messages) takes its messages from here instead of reading and verifying the
// whole batch again. Offsets [from, next) are in data. Stored batches never
// change, so the copy stays right; it is dropped once dispatch has passed it.
type readCache struct {
	data       []byte
	from, next int64
}

// keyState is a key's pending messages in key_ordered mode: the head, the only one
// that may be delivered, and the offsets waiting behind it, in order.
type keyState struct {
	head  int64
	queue []int64
}

func newPartState(start int64) *partState {
	return &partState{floor: start, next: start, pend: map[int64]*pending{}, keys: map[string]*keyState{}}
}

// settleKey removes off from its key's state and returns the key's new head, if
// one was waiting behind it.
func (ps *partState) settleKey(key string, off int64) (*pending, bool) {
	ks := ps.keys[key]
	if ks == nil {
		return nil, false
	}
	if ks.head != off {
		// Settled from the queue (a seek or a dead-lettering of a held message).
		for i, q := range ks.queue {
			if q == off {
				ks.queue = append(ks.queue[:i], ks.queue[i+1:]...)
				ps.held--
				break
			}
		}
		return nil, false
	}
	for len(ks.queue) > 0 {
		next := ks.queue[0]
		ks.queue = ks.queue[1:]
		ps.held--
		if pd := ps.pend[next]; pd != nil {
			ks.head = next
			return pd, true
		}
	}
	delete(ps.keys, key)
	return nil, false
}

// advance moves the floor past every done offset.
func (ps *partState) advance() {
	for ps.floor < ps.next && ps.pend[ps.floor] == nil {
		ps.floor++
	}
}

// addAttempt records a failed delivery, keeping the newest limit attempts.
func (pd *pending) addAttempt(a Attempt, limit int) {
	pd.Attempts = append(pd.Attempts, a)
	if len(pd.Attempts) > limit {
		pd.Attempts = append(pd.Attempts[:0], pd.Attempts[len(pd.Attempts)-limit:]...)
	}
}

// timeItem is a heap entry; entries are validated when popped, so stale ones (a
// lease that was extended or settled) are simply dropped.
type timeItem struct {
	at        int64 // unix ms
	partition int
	offset    int64
	lease     uint64
}

type timeHeap []timeItem

func (h timeHeap) Len() int { return len(h) }
func (h timeHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].offset < h[j].offset
}
func (h timeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)   { *h = append(*h, x.(timeItem)) }
func (h *timeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h *timeHeap) push(it timeItem) { heap.Push(h, it) }
func (h *timeHeap) pop() timeItem    { return heap.Pop(h).(timeItem) }
func (h timeHeap) peek() (timeItem, bool) {
	if len(h) == 0 {
		return timeItem{}, false
	}
	return h[0], true
}

func ms(t time.Time) int64 { return t.UnixMilli() }
