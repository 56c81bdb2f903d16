package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicemq/sluice"
)

// Limits and settings of share groups.
const (
	// MaxShareGroups bounds the share groups that have members at once.
	MaxShareGroups = 1000
	// MaxShareGroupMembers bounds one share group's members, as Kafka's
	// group.share.max.size does by default.
	MaxShareGroupMembers = 200
	// MaxShareGroupTopics bounds the topics one member subscribes to: each
	// costs a subscription, a dead-letter stream and a consumer.
	MaxShareGroupTopics = 100
	// MaxShareHeldRecords bounds the records one member holds acquired and
	// not yet acknowledged (as many as Kafka's default
	// group.share.partition.max.record.locks allows a partition). A member at
	// the limit gets no more until it acknowledges some or their locks
	// expire: its ShareFetch waits, then answers without records.
	MaxShareHeldRecords = 2000
	// ShareLockDuration is how long an acquired record stays with its
	// member: the subscription's Lease, as Kafka's
	// group.share.record.lock.duration.ms by default.
	ShareLockDuration = 30 * time.Second
	// ShareDeliveryLimit is the subscription's MaxDeliveries, as Kafka's
	// group.share.delivery.count.limit by default: a record released (or
	// whose lock expired) this many times goes to the dead-letter stream.
	ShareDeliveryLimit = 5
	// ShareSessionTimeout is how long a member stays without heartbeating,
	// as Kafka's group.share.session.timeout.ms by default.
	ShareSessionTimeout = 45 * time.Second
	// ShareHeartbeatInterval is the interval members are told to heartbeat
	// at, as Kafka's group.share.heartbeat.interval.ms by default.
	ShareHeartbeatInterval = 5 * time.Second
	// MaxShareFetchWait bounds a ShareFetch's long poll: records acquired
	// early in the wait hold their lock meanwhile, and a third of it leaves
	// the client time to process them.
	MaxShareFetchWait = ShareLockDuration / 3
	// defaultShareMaxRecords is a ShareFetch's record limit when it sets
	// none (KIP-1206's default).
	defaultShareMaxRecords = 500

	// releaseDelay is the retry delay of a released record. NackOptions'
	// zero Delay means the subscription's backoff, while a Kafka release
	// makes the record available again at once: the smallest delay the
	// journal keeps (milliseconds) does that.
	releaseDelay = time.Millisecond
	// shareSettleTimeout bounds releasing a departed member's records when
	// no request carries a deadline (session expiry, shutdown).
	shareSettleTimeout = 10 * time.Second
)

// errNotShareable is a subscription a share group cannot consume through.
var errNotShareable = errors.New("kafka: subscription cannot serve a share group")

// shareGroups coordinates KIP-932 share groups, each a sluice queue
// subscription per topic.
//
// # The mapping
//
//   - A share group G consuming topic T is the sluice subscription named G
//     on stream T, in queue mode. It is created when a member of G first
//     subscribes to T (or AlterShareGroupOffsets names T), with Lease
//     ShareLockDuration (the acquisition lock) and MaxDeliveries
//     ShareDeliveryLimit, and starts at the stream's earliest message
//     (Kafka's share.auto.offset.reset defaults to latest), unless the
//     group's configs say otherwise (share.record.lock.duration.ms,
//     share.delivery.count.limit, share.auto.offset.reset: see
//     shareConfigs). So a Kafka share consumer gets sluice's per-message
//     acknowledgements, its retries, the delivery limit and the
//     dead-letter stream "<T>.<G>.dlq" (see groupDeadLetter for long
//     names), and the console shows the same subscription. A
//     subscription G that already exists is used if it hands each message
//     to one consumer under a lease (queue or key-ordered mode, at-least-once
//     delivery); a partitioned one (a Kafka consumer group G) is refused
//     with INCONSISTENT_GROUP_PROTOCOL.
//   - Membership (ShareGroupHeartbeat) lives in memory: a member subscribes
//     to topic names and is assigned every partition of every one of them
//     that exists, since the subscription hands each message to one
//     consumer whatever its partition. A member that does not heartbeat for
//     ShareSessionTimeout leaves.
//   - Each member consumes through one sluice Consumer per topic, named
//     after its member id. ShareFetch acquires records (sluice deliveries)
//     and answers them as RecordBatch v2 with their acquired ranges and
//     delivery counts; the member holds each under its lease.
//     Acknowledgements (piggybacked on ShareFetch, or ShareAcknowledge)
//     settle them: accept is Ack, release is Nack for immediate redelivery
//     (counted against the delivery limit when redelivered), reject is
//     Term (the dead-letter stream), renew extends the lease.
//   - A member's share session (ShareSessionEpoch 0 opens, -1 closes)
//     holds the partitions it fetches. Records acquired under a session
//     that is closed or replaced, or by a member that leaves, are released
//     at once, as the client will not acknowledge them.
//
// Consuming needs the "consume" permission on the topic; joining a share
// group creates its subscription (and the dead-letter stream) without
// "admin", as joining creates a group in Kafka.
type shareGroups struct {
	s *Server
	// sessionTimeout is ShareSessionTimeout; tests shorten it before the
	// first member joins.
	sessionTimeout time.Duration

	mu     sync.Mutex
	groups map[string]*shareGroup
	// configs are the groups' configs (groupconfig.go), nil until one is
	// set.
	configs shareConfigs
	closed  bool
	// stop ends the sweeper, which closes swept when it returns; both nil
	// until the first member joins.
	stop  chan struct{}
	swept chan struct{}
}

// shareGroup is one share group's members.
type shareGroup struct {
	id string
	// epoch counts membership and assignment changes; a member's epoch is
	// the group epoch of its last assignment change.
	epoch   int32
	members map[string]*shareMember
}

// shareMember is one member of a share group. Its fields are guarded by
// shareGroups.mu.
type shareMember struct {
	id       string
	consumer string // the name of its sluice consumers
	group    *shareGroup
	epoch    int32
	topics   []string         // subscribed topic names, sorted
	assigned map[string]int32 // topic → partitions last assigned
	expires  time.Time        // when it leaves unless it heartbeats
	clientID string
	host     string

	// ctx ends when the member leaves, which ends its fetch's wait.
	ctx    context.Context
	cancel context.CancelFunc
	gone   bool

	consumers map[string]sluice.Consumer // by topic
	held      map[heldKey]heldRecord
	// unsent are held records not answered yet: acquired from a partition
	// the session did not name, for a later fetch that names it.
	unsent map[heldKey]struct{}
	// turn rotates which topic a fetch serves first.
	turn int
	// reserved counts records a fetch in progress may still add to held.
	reserved int
	// room is closed (and replaced) when held shrinks: it wakes a fetch
	// waiting for room under MaxShareHeldRecords.
	room    chan struct{}
	session *shareSession
}

// heldKey names an acquired record.
type heldKey struct {
	topic     string
	partition int32
	offset    int64
}

// heldRecord is an acquired record and the consumer that settles it.
type heldRecord struct {
	topic string
	c     sluice.Consumer
	d     sluice.Delivery
}

// sharePart is a topic partition of a share session.
type sharePart struct {
	topic     string
	partition int32
}

// shareSession is a member's share session.
type shareSession struct {
	// next is the epoch the member's next request carries.
	next  int32
	parts map[sharePart]struct{}
}

func newShareGroups(s *Server) *shareGroups {
	return &shareGroups{s: s, sessionTimeout: ShareSessionTimeout, groups: map[string]*shareGroup{}}
}

// close ends the share groups at Shutdown, after every connection ended:
// it stops the sweeper, releases the records every member holds and closes
// their consumers.
func (g *shareGroups) close() {
	g.mu.Lock()
	g.closed = true
	var gone []*shareMember
	for _, grp := range g.groups {
		for _, m := range grp.members {
			gone = append(gone, m)
			g.detachLocked(m)
		}
	}
	clear(g.groups)
	stop, swept := g.stop, g.swept
	g.stop = nil
	g.mu.Unlock()
	if stop != nil {
		close(stop)
		<-swept
	}
	g.depart(gone, "the Kafka server shut down")
}

// nextEpoch is the epoch after e: positive, wrapping past the largest.
func nextEpoch(e int32) int32 {
	if e <= 0 || e == 1<<31-1 {
		return 1
	}
	return e + 1
}

// memberLocked returns a group's member, or an UNKNOWN_MEMBER_ID error.
func (g *shareGroups) memberLocked(group, id string) (*shareMember, *shareError) {
	grp := g.groups[group]
	if grp == nil {
		return nil, &shareError{kerr.UnknownMemberID.Code, fmt.Sprintf("share group %q has no members", group)}
	}
	m := grp.members[id]
	if m == nil {
		return nil, &shareError{kerr.UnknownMemberID.Code, fmt.Sprintf("member %q is not in share group %q (it left, or its session of %v expired)", id, group, g.sessionTimeout)}
	}
	return m, nil
}

// shareError is a Kafka error code with its message.
type shareError struct {
	code int16
	msg  string
}

// detachLocked removes m from its group (and an empty group from g), and
// marks it gone: what it holds is for the caller to release, with depart.
func (g *shareGroups) detachLocked(m *shareMember) {
	if m.gone {
		return
	}
	m.gone = true
	m.cancel()
	grp := m.group
	delete(grp.members, m.id)
	grp.epoch = nextEpoch(grp.epoch)
	if len(grp.members) == 0 && g.groups[grp.id] == grp {
		delete(g.groups, grp.id)
	}
}

// depart releases what departed members hold and closes their consumers.
func (g *shareGroups) depart(ms []*shareMember, why string) {
	if len(ms) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shareSettleTimeout)
	defer cancel()
	for _, m := range ms {
		g.mu.Lock()
		held := m.takeAllLocked()
		cons := m.consumers
		m.consumers = map[string]sluice.Consumer{}
		m.session = nil
		g.mu.Unlock()
		g.release(ctx, held, fmt.Sprintf("released: member %s of share group %q left (%s)", m.id, m.group.id, why))
		for _, c := range cons {
			c.Close()
		}
	}
}

// takeAllLocked empties m's held records and returns them.
func (m *shareMember) takeAllLocked() []heldRecord {
	if len(m.held) == 0 {
		return nil
	}
	out := make([]heldRecord, 0, len(m.held))
	for _, h := range m.held {
		out = append(out, h)
	}
	clear(m.held)
	clear(m.unsent)
	m.roomLocked()
	return out
}

// roomLocked wakes a fetch waiting for room under MaxShareHeldRecords.
func (m *shareMember) roomLocked() {
	close(m.room)
	m.room = make(chan struct{})
}

// pruneLocked forgets the held records whose lock expired: the
// subscription hands them out again, and their room is the member's again.
func (m *shareMember) pruneLocked(now time.Time) {
	n := len(m.held)
	for k, h := range m.held {
		if !h.d.Deadline.After(now) {
			delete(m.held, k)
			delete(m.unsent, k)
		}
	}
	if len(m.held) < n {
		m.roomLocked()
	}
}

// release makes records available again at once, until ctx ends. A
// record whose lease is stale went elsewhere already; the rest, and those
// that fail, come again when their lease expires.
func (g *shareGroups) release(ctx context.Context, hs []heldRecord, reason string) {
	for _, h := range hs {
		if ctx.Err() != nil {
			return
		}
		if err := h.c.Nack(ctx, h.d, sluice.NackOptions{Delay: releaseDelay, Reason: reason}); err != nil &&
			!errors.Is(err, sluice.ErrStaleLease) && !errors.Is(err, sluice.ErrClosed) {
			g.s.opts.Logger.Warn("kafka: releasing a share group record failed; it is redelivered when its lock expires",
				"topic", h.topic, "partition", h.d.Partition, "offset", h.d.Offset, "error", err)
		}
	}
}

// settleContext is ctx without its cancellation, within
// shareSettleTimeout: releasing records should not stop halfway because
// the connection that asked for it closed.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), shareSettleTimeout)
}

// startSweeperLocked starts the goroutine that expires members, once.
func (g *shareGroups) startSweeperLocked() {
	if g.stop != nil || g.closed {
		return
	}
	g.stop, g.swept = make(chan struct{}), make(chan struct{})
	go g.sweep(g.sessionTimeout, g.stop, g.swept)
}

// sweep removes the members whose session expired, until stop closes or
// the server shuts down.
func (g *shareGroups) sweep(timeout time.Duration, stop <-chan struct{}, swept chan<- struct{}) {
	defer close(swept)
	// A member leaves within an eighth of its session timeout of expiring.
	t := time.NewTicker(timeout / 8)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-g.s.ctx.Done():
			return
		case now := <-t.C:
			g.mu.Lock()
			var gone []*shareMember
			for _, grp := range g.groups {
				for _, m := range grp.members {
					if now.After(m.expires) {
						gone = append(gone, m)
					}
				}
			}
			for _, m := range gone {
				g.detachLocked(m)
			}
			g.mu.Unlock()
			g.depart(gone, fmt.Sprintf("no heartbeat for %v", timeout))
		}
	}
}

// consumerName is a member id as a sluice consumer name: the characters a
// consumer name may not hold (base64's '=' padding, '+' and '/', ...) are
// dropped, and an 'm' goes before one that would not start with a letter
// or digit.
func consumerName(memberID string) string {
	const maxLen = 128 // sluice's limit on a consumer name
	out := make([]byte, 0, len(memberID)+1)
	for i := 0; i < len(memberID) && len(out) < maxLen; i++ {
		switch b := memberID[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
			out = append(out, b)
		case b == '.' || b == '_' || b == '-':
			if len(out) == 0 {
				out = append(out, 'm')
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return "m"
	}
	return string(out[:min(len(out), maxLen)])
}

// ensureSubscription returns the number of partitions of topic after
// making sure the share group's subscription on it exists and can serve
// it. A missing topic is sluice.ErrStreamNotFound.
func (g *shareGroups) ensureSubscription(ctx context.Context, topic, group string) (int32, error) {
	b := g.s.b
	st, err := b.Stream(ctx, topic)
	if err != nil {
		return 0, err
	}
	info, err := b.Subscription(ctx, topic, group)
	if errors.Is(err, sluice.ErrSubscriptionNotFound) {
		info, err = b.CreateSubscription(ctx, topic, g.subscriptionConfig(topic, group))
		if errors.Is(err, sluice.ErrSubscriptionExists) { // another member created it meanwhile
			info, err = b.Subscription(ctx, topic, group)
		}
	}
	if err != nil {
		return 0, err
	}
	switch cfg := info.Config; {
	case cfg.Mode != sluice.QueueMode && cfg.Mode != sluice.KeyOrderedMode:
		return 0, fmt.Errorf("%w: subscription %q of stream %q is in %s mode (a Kafka consumer group's, or made so through the API); a share group needs one in queue mode",
			errNotShareable, group, topic, cfg.Mode)
	case cfg.Delivery == sluice.AtMostOnce:
		return 0, fmt.Errorf("%w: subscription %q of stream %q is at_most_once: records cannot be released or rejected",
			errNotShareable, group, topic)
	}
	return int32(len(st.Partitions)), nil
}

// consumerFor returns m's consumer of topic, opening it (and the
// subscription, if it went away) when needed.
func (g *shareGroups) consumerFor(ctx context.Context, m *shareMember, topic string) (sluice.Consumer, error) {
	g.mu.Lock()
	c, gone := m.consumers[topic], m.gone
	g.mu.Unlock()
	if gone {
		return nil, sluice.ErrClosed
	}
	if c != nil {
		return c, nil
	}
	if _, err := g.ensureSubscription(ctx, topic, m.group.id); err != nil {
		return nil, err
	}
	c, err := g.s.b.NewConsumer(ctx, topic, m.group.id, sluice.ConsumerConfig{Name: m.consumer, MaxInFlight: MaxShareHeldRecords})
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.gone {
		c.Close()
		return nil, sluice.ErrClosed
	}
	if prev := m.consumers[topic]; prev != nil { // a concurrent request opened one
		c.Close()
		return prev, nil
	}
	m.consumers[topic] = c
	return c, nil
}

// dropConsumer closes m's consumer of topic after it failed (its
// subscription or stream was deleted), so that the next fetch opens a new
// one.
func (g *shareGroups) dropConsumer(m *shareMember, topic string, c sluice.Consumer) {
	g.mu.Lock()
	if m.consumers[topic] == c {
		delete(m.consumers, topic)
	}
	g.mu.Unlock()
	c.Close()
}

// topicByID resolves a topic id to a stream the member subscribes to, or
// any stream, and its partition count.
func (g *shareGroups) topicByID(ctx context.Context, m *shareMember, id [16]byte) (string, int32, bool) {
	g.mu.Lock()
	topics := m.topics
	g.mu.Unlock()
	for _, t := range topics {
		if topicID(t) == id {
			if st, err := g.s.b.Stream(ctx, t); err == nil {
				return t, int32(len(st.Partitions)), true
			}
			return "", 0, false
		}
	}
	streams, err := g.s.b.ListStreams(ctx)
	if err != nil {
		return "", 0, false
	}
	for _, st := range streams {
		if topicID(st.Config.Name) == id {
			return st.Config.Name, int32(len(st.Partitions)), true
		}
	}
	return "", 0, false
}

// sortedTopics returns names sorted and without duplicates.
func sortedTopics(names []string) []string {
	out := append([]string(nil), names...)
	sort.Strings(out)
	n := 0
	for i, t := range out {
		if i == 0 || t != out[n-1] {
			out[n] = t
			n++
		}
	}
	return out[:n]
}
