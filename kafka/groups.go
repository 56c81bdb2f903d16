package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/subscription"
)

// groups is the group coordinator: classic groups (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup) and KIP-848 consumer groups
// (ConsumerGroupHeartbeat), whose committed offsets are sluice partitioned
// subscriptions.
//
// # The mapping
//
// A Kafka consumer group G consuming topic T keeps its committed offsets in
// the sluice subscription named G on stream T, of mode partitioned. The
// subscription is created by the group's first OffsetCommit for that topic.
// OffsetCommit of partition p at offset o moves the subscription's floor in p
// to o (Broker.CommitOffset: durable when answered, clamped to the offsets
// the partition stores). OffsetFetch answers each partition's floor, or -1
// when the subscription does not exist. A partition never committed in an
// existing subscription answers its floor, the log start, rather than -1: a
// consumer resets to the earliest offset there whatever its reset policy.
// Committed offsets, backlog and lag are therefore the same in sluice's API,
// in its console and in Kafka's tools. Commit metadata is not kept (fetched
// back as ""). A group id must be a valid subscription name (1..128
// characters of [A-Za-z0-9._-], starting with a letter or digit), or the
// request gets INVALID_GROUP_ID; a group id that names a subscription of
// another mode on the topic gets INVALID_GROUP_ID too, so that a Kafka group
// never moves a queue subscription. A subscription's dead-letter stream
// (T.G.dlq, shortened with a hash when T and G are too long together: see
// groupDeadLetter) is created with it, as for any subscription.
//
// Membership (members, generations, epochs, assignments) is memory only:
// after a broker restart, members' heartbeats and commits get
// UNKNOWN_MEMBER_ID and clients rejoin, resuming from the committed offsets.
// sluice's own consumers of the same partitioned subscription form a group of
// their own: the two memberships do not see each other, so a group should be
// consumed through one protocol at a time.
//
// Lock discipline: one mutex, mu, guards every group. Timers (sessions,
// rebalances) take it when they fire and check that what they were armed
// for still holds; handlers never call the broker with it held. When the
// server shuts down, its context's cancellation stops every timer.
type groups struct {
	s *Server

	mu       sync.Mutex
	closed   bool
	classic  map[string]*classicGroup
	consumer map[string]*consumerGroup
}

// Limits and timings of the group coordinator.
const (
	// MaxGroups bounds the groups with members held in memory, classic and
	// KIP-848 together. A new group past it is refused with
	// GROUP_MAX_SIZE_REACHED (and a warning that names MaxGroups). Groups
	// with committed offsets and no members are subscriptions and cost no
	// memory here.
	MaxGroups = 10_000
	// MaxGroupMembers bounds one group's members, counting in a classic
	// group the member ids handed out with MEMBER_ID_REQUIRED and not yet
	// used. A member past it gets GROUP_MAX_SIZE_REACHED.
	MaxGroupMembers = 1000
	// MinSessionTimeout and MaxSessionTimeout bound a classic member's
	// session timeout (Kafka's group.min/max.session.timeout.ms); outside
	// them JoinGroup gets INVALID_SESSION_TIMEOUT.
	MinSessionTimeout = time.Second
	MaxSessionTimeout = 30 * time.Minute
	// MaxRebalanceTimeout bounds how long a rebalance waits for members to
	// rejoin, and a follower for its leader's assignment; a member's larger
	// rebalance timeout is clamped to it.
	MaxRebalanceTimeout = 30 * time.Minute
	// MaxMemberMetadataBytes bounds a classic member's protocol metadata,
	// summed over the protocols it offers; the leader receives every
	// member's. Past it JoinGroup gets GROUP_MAX_SIZE_REACHED.
	MaxMemberMetadataBytes = 1 << 20
	// MaxGroupProtocols bounds the protocols a classic member offers.
	MaxGroupProtocols = 64

	// initialRebalanceDelay is how long a new (empty) classic group waits
	// for more members after the first joins, and again after each one that
	// joins meanwhile (within the rebalance timeout), so that consumers
	// started together get one generation instead of one each. Kafka's
	// group.initial.rebalance.delay.ms is 3 s; clients of sluice usually
	// start on one host, so a shorter wait suffices.
	initialRebalanceDelay = 200 * time.Millisecond
	// maxMemberIDPrefix bounds the client id's share of a generated
	// member id (client id, a dash, 32 hex digits).
	maxMemberIDPrefix = 64
)

func newGroups(s *Server) *groups {
	g := &groups{s: s, classic: map[string]*classicGroup{}, consumer: map[string]*consumerGroup{}}
	context.AfterFunc(s.ctx, g.close)
	return g
}

// close stops every timer; requests waiting on a group end with their
// connections, whose contexts derive from the server's.
func (g *groups) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for _, grp := range g.classic {
		grp.stopTimers()
	}
	for _, grp := range g.consumer {
		for _, m := range grp.members {
			m.stopTimer()
		}
	}
}

// countLocked is the number of groups held in memory.
func (g *groups) countLocked() int { return len(g.classic) + len(g.consumer) }

// validGroupID reports whether id can name the group's subscriptions: what
// SubscriptionConfig's validation accepts as a name.
func validGroupID(id string) bool {
	return subscription.ValidName(id, subscription.MaxNameLen)
}

// newMemberID returns a fresh member id: the client id (shortened), a dash
// and 128 random bits, as Kafka forms them.
func newMemberID(clientID string) string {
	var b [16]byte
	rand.Read(b[:])
	if len(clientID) > maxMemberIDPrefix {
		clientID = clientID[:maxMemberIDPrefix]
	}
	return clientID + "-" + hex.EncodeToString(b[:])
}

// clientHost is the connection's remote host as Kafka shows it.
func (c *conn) clientHost() string {
	addr := c.nc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return "/" + addr
}

// classicState is a classic group's state, named as Kafka names it.
type classicState int8

const (
	stateEmpty classicState = iota
	statePreparing
	stateCompleting
	stateStable
)

func (st classicState) String() string {
	switch st {
	case statePreparing:
		return "PreparingRebalance"
	case stateCompleting:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	}
	return "Empty"
}

// classicGroup is a group of the classic protocol: members join, the
// leader assigns, everyone syncs. Guarded by groups.mu.
type classicGroup struct {
	id           string
	state        classicState
	generation   int32
	protocolType string
	protocol     string // chosen when the last join completed
	leader       string
	members      map[string]*classicMember
	static       map[string]string      // group.instance.id -> member id
	pending      map[string]*time.Timer // ids handed out with MEMBER_ID_REQUIRED
	seq          uint64                 // join order, for choosing a leader

	// delaying: the initial delay of a new group; it ends at delayEnd at
	// the latest.
	delaying bool
	delayEnd time.Time
	// rebalanceSeq identifies the armed rebalance timer: one that fires
	// after another was armed does nothing.
	rebalanceSeq   uint64
	rebalanceTimer *time.Timer
	syncTimer      *time.Timer
}

// classicMember is a member of a classic group.
type classicMember struct {
	id, instanceID     string
	clientID, host     string
	session, rebalance time.Duration
	protocols          []kmsg.JoinGroupRequestProtocol
	topics             []string // the consumer protocol's subscription, for permissions
	assignment         []byte
	seq                uint64
	synced             bool // called SyncGroup in this generation

	// joinWait and syncWait are set while a JoinGroup or a SyncGroup of
	// the member waits; they are buffered so that answering never blocks.
	joinWait chan joinResult
	syncWait chan syncResult

	timer    *time.Timer
	deadline time.Time // the session's end; the timer may fire earlier
}

// joinResult answers a waiting JoinGroup.
type joinResult struct {
	code       int16
	generation int32
	protocol   string
	leader     string
	memberID   string
	members    []kmsg.JoinGroupResponseMember
	skip       bool // SkipAssignment: a static leader replaced in place
}

// syncResult answers a waiting SyncGroup.
type syncResult struct {
	code       int16
	assignment []byte
}

func (grp *classicGroup) stopTimers() {
	if grp.rebalanceTimer != nil {
		grp.rebalanceTimer.Stop()
	}
	if grp.syncTimer != nil {
		grp.syncTimer.Stop()
	}
	for _, t := range grp.pending {
		t.Stop()
	}
	for _, m := range grp.members {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
}

// live reports whether anything keeps the group in memory.
func (grp *classicGroup) live() bool { return len(grp.members) > 0 || len(grp.pending) > 0 }

// touchLocked restarts a member's session.
func (g *groups) touchLocked(grp *classicGroup, m *classicMember) {
	m.deadline = time.Now().Add(m.session)
	if g.closed {
		return // no timer outlives the server
	}
	if m.timer == nil {
		m.timer = time.AfterFunc(m.session, func() { g.expireClassic(grp, m) })
		return
	}
	m.timer.Reset(m.session)
}

// expireClassic ends a member whose session passed without a heartbeat.
func (g *groups) expireClassic(grp *classicGroup, m *classicMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.classic[grp.id] != grp || grp.members[m.id] != m {
		return
	}
	if m.joinWait != nil || m.syncWait != nil {
		// A member waiting in JoinGroup or SyncGroup cannot heartbeat;
		// the rebalance and sync timers bound those waits.
		g.touchLocked(grp, m)
		return
	}
	if wait := time.Until(m.deadline); wait > 0 {
		m.timer.Reset(wait)
		return
	}
	g.s.opts.Logger.Info("kafka: group member's session expired", "group", grp.id, "member", m.id, "session", m.session)
	g.leaveClassicLocked(grp, m, kerr.UnknownMemberID.Code)
}

// dropMemberLocked removes a member; its waiting requests get code.
func (g *groups) dropMemberLocked(grp *classicGroup, m *classicMember, code int16) {
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.joinWait != nil {
		m.joinWait <- joinResult{code: code, generation: -1, memberID: m.id}
		m.joinWait = nil
	}
	if m.syncWait != nil {
		m.syncWait <- syncResult{code: code}
		m.syncWait = nil
	}
	delete(grp.members, m.id)
	if m.instanceID != "" && grp.static[m.instanceID] == m.id {
		delete(grp.static, m.instanceID)
	}
	if grp.leader == m.id {
		grp.leader = ""
	}
}

// leaveClassicLocked removes a member (it left, its session expired or it
// did not sync in time) and rebalances the others.
func (g *groups) leaveClassicLocked(grp *classicGroup, m *classicMember, code int16) {
	g.dropMemberLocked(grp, m, code)
	if len(grp.members) == 0 {
		g.emptyLocked(grp)
		return
	}
	switch grp.state {
	case stateStable, stateCompleting:
		g.prepareRebalanceLocked(grp)
	case statePreparing:
		g.maybeCompleteJoinLocked(grp)
	}
}

// emptyLocked turns a group without members Empty, and forgets it when no
// member id handed out is pending either.
func (g *groups) emptyLocked(grp *classicGroup) {
	grp.rebalanceSeq++
	if grp.rebalanceTimer != nil {
		grp.rebalanceTimer.Stop()
	}
	if grp.syncTimer != nil {
		grp.syncTimer.Stop()
	}
	if grp.state != stateEmpty {
		grp.generation++
	}
	grp.state, grp.protocol, grp.protocolType, grp.leader, grp.delaying = stateEmpty, "", "", "", false
	g.forgetIfIdleLocked(grp)
}

func (g *groups) forgetIfIdleLocked(grp *classicGroup) {
	if !grp.live() && g.classic[grp.id] == grp {
		delete(g.classic, grp.id)
	}
}

// maxRebalance is the longest rebalance timeout of the members.
func (grp *classicGroup) maxRebalance() time.Duration {
	d := time.Duration(0)
	for _, m := range grp.members {
		d = max(d, m.rebalance)
	}
	return min(max(d, initialRebalanceDelay), MaxRebalanceTimeout)
}

// prepareRebalanceLocked starts a rebalance: members rejoin (they learn of
// it from their heartbeats) until all have or the rebalance timeout passes.
func (g *groups) prepareRebalanceLocked(grp *classicGroup) {
	if grp.state == stateCompleting {
		for _, m := range grp.members {
			if m.syncWait != nil {
				m.syncWait <- syncResult{code: kerr.RebalanceInProgress.Code}
				m.syncWait = nil
			}
		}
	}
	if grp.syncTimer != nil {
		grp.syncTimer.Stop()
	}
	wait := grp.maxRebalance()
	if grp.state == stateEmpty {
		grp.delaying = true
		grp.delayEnd = time.Now().Add(wait)
		wait = min(initialRebalanceDelay, wait)
	}
	grp.state = statePreparing
	g.armRebalanceLocked(grp, wait)
}

func (g *groups) armRebalanceLocked(grp *classicGroup, d time.Duration) {
	if grp.rebalanceTimer != nil {
		grp.rebalanceTimer.Stop()
	}
	grp.rebalanceSeq++
	seq := grp.rebalanceSeq
	grp.rebalanceTimer = time.AfterFunc(d, func() { g.rebalanceDue(grp, seq) })
}

// rebalanceDue ends a rebalance's wait: members that did not rejoin are
// removed, and the join completes with the others.
func (g *groups) rebalanceDue(grp *classicGroup, seq uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.classic[grp.id] != grp || grp.rebalanceSeq != seq || grp.state != statePreparing {
		return
	}
	grp.delaying = false
	g.completeJoinLocked(grp)
}

// allJoined reports whether every member waits in JoinGroup and no
// handed-out member id is still to join.
func (grp *classicGroup) allJoined() bool {
	if len(grp.pending) > 0 {
		return false
	}
	for _, m := range grp.members {
		if m.joinWait == nil {
			return false
		}
	}
	return true
}

func (g *groups) maybeCompleteJoinLocked(grp *classicGroup) {
	if grp.state == statePreparing && !grp.delaying && grp.allJoined() {
		g.completeJoinLocked(grp)
	}
}

// completeJoinLocked starts a generation: it picks the protocol and the
// leader, answers every waiting JoinGroup (the leader's with every member's
// metadata) and waits for the leader's SyncGroup, at most the rebalance
// timeout.
func (g *groups) completeJoinLocked(grp *classicGroup) {
	grp.rebalanceSeq++
	if grp.rebalanceTimer != nil {
		grp.rebalanceTimer.Stop()
	}
	grp.delaying = false
	for _, m := range grp.members {
		if m.joinWait == nil {
			g.dropMemberLocked(grp, m, kerr.UnknownMemberID.Code)
		}
	}
	if len(grp.members) == 0 {
		g.emptyLocked(grp)
		return
	}
	grp.generation++
	ms := grp.ordered()
	if grp.members[grp.leader] == nil {
		grp.leader = ms[0].id
	}
	grp.protocol = grp.selectProtocol()
	grp.state = stateCompleting
	for _, m := range ms {
		m.synced, m.assignment = false, nil
		res := grp.joinResultFor(m)
		if m.id == grp.leader {
			res.members = grp.memberList()
		}
		m.joinWait <- res
		m.joinWait = nil
		g.touchLocked(grp, m)
	}
	gen := grp.generation
	grp.syncTimer = time.AfterFunc(grp.maxRebalance(), func() { g.syncDue(grp, gen) })
}

// syncDue ends a generation whose leader did not sync within the rebalance
// timeout: the members that did not sync are removed, the others rejoin.
func (g *groups) syncDue(grp *classicGroup, gen int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.classic[grp.id] != grp || grp.state != stateCompleting || grp.generation != gen {
		return
	}
	for _, m := range grp.members {
		if !m.synced {
			g.dropMemberLocked(grp, m, kerr.UnknownMemberID.Code)
		}
	}
	if len(grp.members) == 0 {
		g.emptyLocked(grp)
		return
	}
	g.prepareRebalanceLocked(grp)
}

// ordered returns the members in join order.
func (grp *classicGroup) ordered() []*classicMember {
	ms := make([]*classicMember, 0, len(grp.members))
	for _, m := range grp.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *classicMember) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return ms
}

// memberList is what the leader receives: every member with its metadata
// for the chosen protocol.
func (grp *classicGroup) memberList() []kmsg.JoinGroupResponseMember {
	var out []kmsg.JoinGroupResponseMember
	for _, m := range grp.ordered() {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		if m.instanceID != "" {
			jm.InstanceID = kmsg.StringPtr(m.instanceID)
		}
		jm.ProtocolMetadata = m.metadata(grp.protocol)
		out = append(out, jm)
	}
	return out
}

func (grp *classicGroup) joinResultFor(m *classicMember) joinResult {
	return joinResult{generation: grp.generation, protocol: grp.protocol, leader: grp.leader, memberID: m.id}
}

// metadata is the member's metadata for a protocol.
func (m *classicMember) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func (m *classicMember) supports(protocol string) bool {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return true
		}
	}
	return false
}

// selectProtocol picks the first protocol of the leader's (in its order of
// preference) that every member supports. Joins admit only members that
// share one with the others, so there is one.
func (grp *classicGroup) selectProtocol() string {
	leader := grp.members[grp.leader]
	for _, p := range leader.protocols {
		all := true
		for _, m := range grp.members {
			if !m.supports(p.Name) {
				all = false
				break
			}
		}
		if all {
			return p.Name
		}
	}
	return leader.protocols[0].Name
}

// compatible reports whether a member offering protocols may be in the
// group with the members other than except: same protocol type, and one
// protocol that all support.
func (grp *classicGroup) compatible(protocolType string, protocols []kmsg.JoinGroupRequestProtocol, except *classicMember) bool {
	others := 0
	for _, m := range grp.members {
		if m != except {
			others++
		}
	}
	if others == 0 {
		return true
	}
	if protocolType != grp.protocolType {
		return false
	}
	for _, p := range protocols {
		all := true
		for _, m := range grp.members {
			if m != except && !m.supports(p.Name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// sameProtocols reports whether a rejoining member offers what it did.
func (m *classicMember) sameProtocols(ps []kmsg.JoinGroupRequestProtocol) bool {
	return slices.EqualFunc(m.protocols, ps, func(a, b kmsg.JoinGroupRequestProtocol) bool {
		return a.Name == b.Name && string(a.Metadata) == string(b.Metadata)
	})
}

// groupTopicsLocked lists the topics a live group consumes, as far as the
// coordinator knows them, for permission checks of listing and describing.
func (g *groups) groupTopicsLocked(id string) []string {
	var out []string
	if grp := g.classic[id]; grp != nil {
		for _, m := range grp.members {
			out = append(out, m.topics...)
		}
	}
	if grp := g.consumer[id]; grp != nil {
		for _, m := range grp.members {
			out = append(out, m.names...)
			for t := range m.topics {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// permissions returns the connection's permission check as of now, for a
// group to use after the request: a later re-authentication of the
// connection does not change what it returns.
func (c *conn) permissions() func(permission, stream string) bool {
	if c.s.opts.Authenticate == nil {
		return func(string, string) bool { return true }
	}
	p := c.principal
	return func(permission, stream string) bool { return p != nil && p.May(permission, stream) }
}

// mayDescribe reports whether the connection may see a group consuming
// these topics: any of them visible will do, and a group whose topics are
// unknown is visible only without authentication.
func (c *conn) mayDescribe(topics []string) bool {
	if c.s.opts.Authenticate == nil {
		return true
	}
	for _, t := range topics {
		if c.sees(t) {
			return true
		}
	}
	return false
}

// storedGroupTopics lists the streams on which a partitioned subscription
// named id exists: the topics a group without members has committed
// offsets for.
func (s *Server) storedGroupTopics(ctx context.Context, id string) ([]string, error) {
	streams, err := s.b.ListStreams(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, st := range streams {
		info, err := s.b.Subscription(ctx, st.Config.Name, id)
		if err == nil && info.Config.Mode == sluice.PartitionedMode {
			out = append(out, st.Config.Name)
		}
	}
	return out, nil
}
