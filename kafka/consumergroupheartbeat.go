package kafka

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// v0: the coordinator makes member ids; v1: members make their own and
	// may subscribe by regular expression.
	register(68, &handler{name: "ConsumerGroupHeartbeat", min: 0, max: 1, serve: (*Server).consumerGroupHeartbeat})
}

// Limits and timings of KIP-848 consumer groups.
const (
	// ConsumerHeartbeatInterval is the interval members are told to
	// heartbeat at. A partition that moves takes about three heartbeats
	// (its owner learns to revoke it, reports it revoked, the new owner
	// learns of it), so the interval is shorter than Kafka's 5 s default:
	// a heartbeat costs the coordinator a few map lookups.
	ConsumerHeartbeatInterval = time.Second
	// ConsumerSessionTimeout is how long a member stays without a
	// heartbeat before it is removed and its partitions reassigned, as
	// Kafka's group.consumer.session.timeout.ms default.
	ConsumerSessionTimeout = 45 * time.Second
	// MaxSubscribedTopics bounds the topic names a member subscribes to.
	MaxSubscribedTopics = 10_000
	// MaxTopicRegexBytes bounds a member's subscription regex.
	MaxTopicRegexBytes = 1024

	// defaultConsumerRebalanceTimeout is how long a member that names no
	// rebalance timeout has to revoke partitions before it is fenced.
	defaultConsumerRebalanceTimeout = 5 * time.Minute
	// consumerMetadataRefresh is how often a group looks again at its
	// topics' partitions (and at which topics its regexes match): a topic
	// created or grown is assigned within it.
	consumerMetadataRefresh = 5 * time.Second
)

// The server-side assignors (ConsumerGroupHeartbeat.ServerAssignor).
const (
	assignorUniform = "uniform" // balanced, sticky: kgo's sticky balancers ask for it
	assignorRange   = "range"   // contiguous ranges per topic, for co-partitioned topics
)

// consumerGroup is a KIP-848 group: the coordinator assigns. The group's
// epoch counts changes of membership, subscriptions and partitions; the
// target assignment is computed at it (assignmentEpoch). Each member moves
// to its target on its heartbeats: first it gives up (revokes) the
// partitions it is to lose, keeping its epoch until it reports them gone;
// then it takes the target epoch and the partitions that no other member
// still holds. A partition is thus never owned by two members. Guarded by
// groups.mu.
type consumerGroup struct {
	id              string
	epoch           int32
	assignmentEpoch int32
	members         map[string]*consumerMember
	static          map[string]string    // group.instance.id -> member id
	owner           map[topicPart]string // who holds each partition (assigned or revoking)

	// parts are the partition counts of the topics subscribed at the last
	// refresh, byID their topic ids; looked are the names and regexes it
	// resolved.
	parts     map[string]int32
	byID      map[[16]byte]string
	looked    map[string]bool
	lookedRe  map[string]bool
	refreshed time.Time
}

type topicPart struct {
	topic     string
	partition int32
}

// partSet is a set of partitions.
type partSet map[topicPart]struct{}

// consumerMember is a member of a KIP-848 group.
type consumerMember struct {
	id, instanceID, rackID string
	clientID, host         string
	epoch, prevEpoch       int32
	names                  []string // subscribed topic names, sorted
	regex                  string
	re                     *regexp.Regexp
	assignor               string
	rebalance              time.Duration
	// may is the permission check of the member's last connection: regex
	// matches it may not consume are not assigned.
	may func(permission, stream string) bool

	topics   map[string]bool // the subscription resolved: existing topics
	target   partSet         // at the group's assignment epoch
	assigned partSet         // what the member was last told it owns
	revoking partSet         // told to give up, not yet reported gone
	revokeBy time.Time       // the member is fenced if it still holds revoking then

	timer    *time.Timer
	deadline time.Time
}

func (m *consumerMember) stopTimer() {
	if m.timer != nil {
		m.timer.Stop()
	}
}

// consumerHeartbeat is a ConsumerGroupHeartbeat checked and decoded.
type consumerHeartbeat struct {
	req        *kmsg.ConsumerGroupHeartbeatRequest
	memberID   string
	instanceID string
	names      []string // nil: unchanged
	regex      *string  // nil: unchanged; "": none
	re         *regexp.Regexp
	rebalance  time.Duration // 0: unchanged
	clientID   string
	host       string
	may        func(permission, stream string) bool
	// parts are freshly looked-up partition counts (nil: none looked up),
	// for the names and regexes in lookedNames and lookedRe.
	parts       map[string]int32
	lookedNames []string
	lookedRe    []string
}

// heartbeatAnswer is what the group answers a heartbeat.
type heartbeatAnswer struct {
	code       int16
	msg        string
	memberID   string
	epoch      int32
	assignment *kmsg.ConsumerGroupHeartbeatResponseAssignment
}

// consumerGroupHeartbeat serves KIP-848 members: joining (epoch 0),
// heartbeating with their owned partitions, and leaving (epoch -1, or -2
// for a static member, which here leaves as well: its assignment is not
// kept for its return).
func (s *Server) consumerGroupHeartbeat(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ConsumerGroupHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	hb, code, msg := parseConsumerHeartbeat(c, req)
	if code != 0 {
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(msg)
		return resp, nil
	}
	if req.MemberEpoch < 0 {
		resp.ErrorCode = s.groups.leaveConsumer(req.Group, req.MemberID)
		resp.MemberID, resp.MemberEpoch = kmsg.StringPtr(req.MemberID), req.MemberEpoch
		return resp, nil
	}
	if names, res, due := s.groups.refreshDue(req.Group, hb); due {
		parts, err := s.subscribedPartitions(ctx, names, res)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			hb.parts, hb.lookedNames = parts, names
			for _, re := range res {
				hb.lookedRe = append(hb.lookedRe, re.String())
			}
		}
	}
	a := s.groups.consumerHeartbeat(hb)
	resp.ErrorCode = a.code
	if a.msg != "" {
		resp.ErrorMessage = kmsg.StringPtr(a.msg)
	}
	if a.code != 0 {
		return resp, nil
	}
	resp.MemberID, resp.MemberEpoch, resp.Assignment = kmsg.StringPtr(a.memberID), a.epoch, a.assignment
	resp.HeartbeatIntervalMillis = int32(ConsumerHeartbeatInterval / time.Millisecond)
	return resp, nil
}

// parseConsumerHeartbeat checks a request as Kafka does, and the
// permission to consume each topic named.
func parseConsumerHeartbeat(c *conn, req *kmsg.ConsumerGroupHeartbeatRequest) (*consumerHeartbeat, int16, string) {
	invalid := func(format string, args ...any) (*consumerHeartbeat, int16, string) {
		return nil, kerr.InvalidRequest.Code, fmt.Sprintf(format, args...)
	}
	if !validGroupID(req.Group) {
		return nil, kerr.InvalidGroupID.Code, fmt.Sprintf("group id %q is not 1..128 characters of [A-Za-z0-9._-] starting with a letter or digit", req.Group)
	}
	hb := &consumerHeartbeat{req: req, memberID: req.MemberID, clientID: c.clientID, host: c.clientHost(), may: c.permissions()}
	switch {
	case req.MemberEpoch < -2:
		return invalid("member epoch %d is below -2", req.MemberEpoch)
	case req.MemberEpoch == 0:
		if len(req.Topics) > 0 {
			return invalid("a joining member (epoch 0) owns no partitions: Topics must be empty")
		}
		if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
			return invalid("a joining member (epoch 0) must subscribe: SubscribedTopicNames or SubscribedTopicRegex")
		}
		if req.MemberID == "" {
			if req.Version >= 1 {
				return invalid("MemberId is required from version 1: the member makes its own")
			}
			hb.memberID = newMemberID(c.clientID)
		}
	case req.MemberID == "":
		return invalid("MemberId is required")
	}
	if req.InstanceID != nil {
		hb.instanceID = *req.InstanceID
	}
	if req.MemberEpoch < 0 {
		return hb, 0, ""
	}
	if req.SubscribedTopicNames != nil {
		if len(req.SubscribedTopicNames) > MaxSubscribedTopics {
			return invalid("%d subscribed topics, limit MaxSubscribedTopics=%d", len(req.SubscribedTopicNames), MaxSubscribedTopics)
		}
		hb.names = slices.Compact(slices.Sorted(slices.Values(req.SubscribedTopicNames)))
		if hb.names == nil {
			hb.names = []string{} // subscribed to no name, not unchanged
		}
		for _, t := range hb.names {
			if !c.may("consume", t) {
				return nil, errTopicAuth, fmt.Sprintf("not authorized to consume topic %q", t)
			}
		}
	}
	if req.SubscribedTopicRegex != nil {
		hb.regex = req.SubscribedTopicRegex
		if r := *req.SubscribedTopicRegex; r != "" {
			if len(r) > MaxTopicRegexBytes {
				return nil, kerr.InvalidRegularExpression.Code, fmt.Sprintf("regex of %d bytes, limit MaxTopicRegexBytes=%d", len(r), MaxTopicRegexBytes)
			}
			re, err := regexp.Compile("^(?:" + r + ")$")
			if err != nil {
				return nil, kerr.InvalidRegularExpression.Code, err.Error()
			}
			hb.re = re
		}
	}
	if a := req.ServerAssignor; a != nil && *a != "" && *a != assignorUniform && *a != assignorRange {
		return nil, kerr.UnsupportedAssignor.Code, fmt.Sprintf("assignor %q: the coordinator has %q and %q", *a, assignorUniform, assignorRange)
	}
	if req.RebalanceTimeoutMillis >= 0 {
		hb.rebalance = min(max(time.Duration(req.RebalanceTimeoutMillis)*time.Millisecond, time.Millisecond), MaxRebalanceTimeout)
	}
	return hb, 0, ""
}

// refreshDue reports whether the group's topics should be looked up before
// the heartbeat is served: the group is new, its last look is older than
// consumerMetadataRefresh, or the member subscribes to something not looked
// up. It returns every name and regex the group subscribes to.
func (g *groups) refreshDue(group string, hb *consumerHeartbeat) ([]string, []*regexp.Regexp, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	names := map[string]bool{}
	res := map[string]*regexp.Regexp{}
	for _, n := range hb.names {
		names[n] = true
	}
	if hb.re != nil {
		res[hb.re.String()] = hb.re
	}
	grp := g.consumer[group]
	due := grp == nil || time.Since(grp.refreshed) >= consumerMetadataRefresh
	if grp != nil {
		for n := range names {
			due = due || !grp.looked[n]
		}
		for r := range res {
			due = due || !grp.lookedRe[r]
		}
		for id, m := range grp.members {
			self := id == hb.memberID // the request replaces what it sends
			if !self || hb.names == nil {
				for _, n := range m.names {
					names[n] = true
				}
			}
			if m.re != nil && (!self || hb.regex == nil) {
				res[m.re.String()] = m.re
			}
		}
	}
	return slices.Sorted(maps.Keys(names)), slices.Collect(maps.Values(res)), due
}

// subscribedPartitions looks up the partition counts of the topics named or
// matched. Names alone are looked up one by one; a regex needs the list of
// streams.
func (s *Server) subscribedPartitions(ctx context.Context, names []string, res []*regexp.Regexp) (map[string]int32, error) {
	out := map[string]int32{}
	if len(res) == 0 {
		for _, n := range names {
			info, err := s.b.Stream(ctx, n)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				continue // not a stream (yet)
			}
			out[n] = int32(len(info.Partitions))
		}
		return out, nil
	}
	streams, err := s.b.ListStreams(ctx)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, n := range names {
		named[n] = true
	}
	for _, st := range streams {
		n := st.Config.Name
		match := named[n]
		for _, re := range res {
			match = match || re.MatchString(n)
		}
		if match {
			out[n] = int32(len(st.Partitions))
		}
	}
	return out, nil
}

// consumerHeartbeat serves a joining or heartbeating member.
func (g *groups) consumerHeartbeat(hb *consumerHeartbeat) heartbeatAnswer {
	g.mu.Lock()
	defer g.mu.Unlock()
	req := hb.req
	fail := func(code int16, format string, args ...any) heartbeatAnswer {
		return heartbeatAnswer{code: code, msg: fmt.Sprintf(format, args...)}
	}
	if g.closed {
		return fail(kerr.CoordinatorNotAvailable.Code, "the coordinator is shutting down")
	}
	now := time.Now()
	grp := g.consumer[req.Group]
	if grp == nil {
		if cl := g.classic[req.Group]; cl != nil && cl.live() {
			return fail(kerr.GroupIDNotFound.Code, "group %q is a classic group with members: KIP-848 members cannot join it until they leave", req.Group)
		}
		if req.MemberEpoch != 0 {
			return fail(kerr.UnknownMemberID.Code, "member %q is not in group %q: rejoin", hb.memberID, req.Group)
		}
		if g.countLocked() >= MaxGroups {
			g.s.opts.Logger.Warn("kafka: new group refused: MaxGroups reached", "group", req.Group, "limit", MaxGroups)
			return fail(kerr.GroupMaxSizeReached.Code, "the coordinator holds MaxGroups=%d groups", MaxGroups)
		}
		grp = &consumerGroup{id: req.Group, members: map[string]*consumerMember{}, static: map[string]string{},
			owner: map[topicPart]string{}, parts: map[string]int32{}, byID: map[[16]byte]string{}}
		g.consumer[req.Group] = grp
		defer func() {
			if len(grp.members) == 0 {
				delete(g.consumer, grp.id)
			}
		}()
	}
	if hb.parts != nil {
		grp.applyPartitions(hb, now)
	}

	m := grp.members[hb.memberID]
	if req.MemberEpoch == 0 {
		if m == nil {
			if id, ok := grp.static[hb.instanceID]; ok && hb.instanceID != "" && id != hb.memberID {
				return fail(kerr.UnreleasedInstanceID.Code, "instance id %q is held by member %q, which must leave first", hb.instanceID, id)
			}
			if len(grp.members) >= MaxGroupMembers {
				g.s.opts.Logger.Warn("kafka: member refused: MaxGroupMembers reached", "group", grp.id, "limit", MaxGroupMembers)
				return fail(kerr.GroupMaxSizeReached.Code, "group %q has MaxGroupMembers=%d members", grp.id, MaxGroupMembers)
			}
			m = &consumerMember{id: hb.memberID, instanceID: hb.instanceID, rebalance: defaultConsumerRebalanceTimeout,
				topics: map[string]bool{}, target: partSet{}, assigned: partSet{}, revoking: partSet{}}
			grp.members[m.id] = m
			if m.instanceID != "" {
				grp.static[m.instanceID] = m.id
			}
			grp.epoch++
		} else {
			// A member rejoining after a lost answer or a fence: it has
			// abandoned its partitions. It gets its assignment again.
			grp.release(m, m.revoking)
		}
	} else {
		switch {
		case m == nil:
			return fail(kerr.UnknownMemberID.Code, "member %q is not in group %q: rejoin", hb.memberID, req.Group)
		case req.MemberEpoch != m.epoch && !(req.MemberEpoch == m.prevEpoch && grp.holdsAll(m, req.Topics)):
			// The previous epoch is accepted from a member whose answer
			// was lost, as long as it claims nothing it lost since.
			return fail(kerr.FencedMemberEpoch.Code, "member epoch %d, the member's is %d", req.MemberEpoch, m.epoch)
		}
	}
	if m.update(hb) {
		grp.epoch++
	}
	if grp.resolve(m) {
		grp.epoch++
	}
	g.touchConsumerLocked(grp, m, now)
	if req.Topics != nil {
		grp.release(m, grp.unreported(m, req.Topics))
	}
	if len(m.revoking) > 0 && now.After(m.revokeBy) {
		g.removeConsumerLocked(grp, m)
		return fail(kerr.FencedMemberEpoch.Code, "member %q did not revoke its partitions within its rebalance timeout (%v)", m.id, m.rebalance)
	}
	if grp.assignmentEpoch < grp.epoch {
		grp.computeTarget()
	}
	changed := grp.reconcile(m, now)
	a := heartbeatAnswer{memberID: m.id, epoch: m.epoch}
	if changed || req.Topics != nil || req.MemberEpoch != m.epoch {
		a.assignment = m.assignmentMessage()
	}
	return a
}

// update takes the request's subscription and settings; it reports whether
// the subscription changed.
func (m *consumerMember) update(hb *consumerHeartbeat) bool {
	changed := false
	if hb.names != nil && !slices.Equal(hb.names, m.names) {
		m.names, changed = hb.names, true
	}
	if hb.regex != nil && *hb.regex != m.regex {
		m.regex, m.re, changed = *hb.regex, hb.re, true
	}
	if a := hb.req.ServerAssignor; a != nil && *a != m.assignor {
		m.assignor, changed = *a, true
	}
	if hb.rebalance > 0 {
		m.rebalance = hb.rebalance
	}
	if hb.req.RackID != nil {
		m.rackID = *hb.req.RackID
	}
	m.clientID, m.host, m.may = hb.clientID, hb.host, hb.may
	return changed
}

// applyPartitions takes freshly looked-up partition counts; a change of
// them, or of what a member's subscription resolves to, bumps the epoch.
func (grp *consumerGroup) applyPartitions(hb *consumerHeartbeat, now time.Time) {
	grp.refreshed = now
	grp.looked = map[string]bool{}
	for _, n := range hb.lookedNames {
		grp.looked[n] = true
	}
	grp.lookedRe = map[string]bool{}
	for _, r := range hb.lookedRe {
		grp.lookedRe[r] = true
	}
	if !maps.Equal(grp.parts, hb.parts) {
		grp.parts = hb.parts
		grp.byID = make(map[[16]byte]string, len(hb.parts))
		for n := range hb.parts {
			grp.byID[topicID(n)] = n
		}
		grp.epoch++
	}
	for _, m := range grp.members {
		if grp.resolve(m) {
			grp.epoch++
		}
	}
}

// resolve recomputes the topics a member's subscription covers; it reports
// whether they changed.
func (grp *consumerGroup) resolve(m *consumerMember) bool {
	topics := map[string]bool{}
	for _, n := range m.names {
		if _, ok := grp.parts[n]; ok {
			topics[n] = true
		}
	}
	if m.re != nil {
		for n := range grp.parts {
			if m.re.MatchString(n) && (m.may == nil || m.may("consume", n)) {
				topics[n] = true
			}
		}
	}
	if maps.Equal(topics, m.topics) {
		return false
	}
	m.topics = topics
	return true
}

// reported decodes the partitions a member says it owns; topics it cannot
// name (deleted since) are left out.
func (grp *consumerGroup) reported(topics []kmsg.ConsumerGroupHeartbeatRequestTopic) partSet {
	out := partSet{}
	for _, t := range topics {
		name, ok := grp.byID[t.TopicID]
		if !ok {
			continue
		}
		for _, p := range t.Partitions {
			out[topicPart{name, p}] = struct{}{}
		}
	}
	return out
}

// holdsAll reports whether every partition reported is one the member
// holds (nil reports nothing).
func (grp *consumerGroup) holdsAll(m *consumerMember, topics []kmsg.ConsumerGroupHeartbeatRequestTopic) bool {
	for p := range grp.reported(topics) {
		_, a := m.assigned[p]
		_, r := m.revoking[p]
		if !a && !r {
			return false
		}
	}
	return true
}

// unreported are the partitions being revoked from the member that it no
// longer reports: it has given them up.
func (grp *consumerGroup) unreported(m *consumerMember, topics []kmsg.ConsumerGroupHeartbeatRequestTopic) partSet {
	rep := grp.reported(topics)
	out := partSet{}
	for p := range m.revoking {
		if _, ok := rep[p]; !ok {
			out[p] = struct{}{}
		}
	}
	return out
}

// release frees partitions of the member's being revoked.
func (grp *consumerGroup) release(m *consumerMember, ps partSet) {
	for p := range ps {
		delete(m.revoking, p)
		if grp.owner[p] == m.id {
			delete(grp.owner, p)
		}
	}
}

// reconcile moves a member toward its target and reports whether its
// assignment or epoch changed.
func (grp *consumerGroup) reconcile(m *consumerMember, now time.Time) bool {
	changed := false
	for p := range m.assigned {
		if _, ok := m.target[p]; !ok {
			delete(m.assigned, p)
			m.revoking[p] = struct{}{}
			changed = true
		}
	}
	if changed {
		m.revokeBy = now.Add(m.rebalance)
	}
	if len(m.revoking) > 0 {
		return changed // the epoch moves once the member has let go
	}
	if m.epoch != grp.assignmentEpoch {
		m.prevEpoch, m.epoch = m.epoch, grp.assignmentEpoch
		changed = true
	}
	for p := range m.target {
		if _, ok := m.assigned[p]; ok {
			continue
		}
		if owner, held := grp.owner[p]; held && owner != m.id {
			continue // still being revoked from its owner: a later heartbeat
		}
		grp.owner[p] = m.id
		m.assigned[p] = struct{}{}
		changed = true
	}
	return changed
}

// assignmentMessage is the member's assignment as answered.
func (m *consumerMember) assignmentMessage() *kmsg.ConsumerGroupHeartbeatResponseAssignment {
	a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
	for _, tp := range byTopic(m.assigned) {
		t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
		t.TopicID, t.Partitions = topicID(tp.topic), tp.partitions
		a.Topics = append(a.Topics, t)
	}
	return &a
}

// topicPartitions is one topic's partitions, sorted.
type topicPartitions struct {
	topic      string
	partitions []int32
}

// byTopic groups a set by topic, sorted by topic id (as clients compare
// them) and partition.
func byTopic(ps partSet) []topicPartitions {
	m := map[string][]int32{}
	for p := range ps {
		m[p.topic] = append(m[p.topic], p.partition)
	}
	out := make([]topicPartitions, 0, len(m))
	for t, parts := range m {
		slices.Sort(parts)
		out = append(out, topicPartitions{t, parts})
	}
	slices.SortFunc(out, func(a, b topicPartitions) int {
		ia, ib := topicID(a.topic), topicID(b.topic)
		return bytes.Compare(ia[:], ib[:])
	})
	return out
}

// computeTarget assigns the group's partitions at its epoch.
func (grp *consumerGroup) computeTarget() {
	ms := slices.SortedFunc(maps.Values(grp.members), func(a, b *consumerMember) int { return strings.Compare(a.id, b.id) })
	var targets map[string]partSet
	if grp.assignor() == assignorRange {
		targets = assignRange(ms, grp.parts)
	} else {
		targets = assignUniform(ms, grp.parts, grp.owner)
	}
	for _, m := range ms {
		m.target = targets[m.id]
		if m.target == nil {
			m.target = partSet{}
		}
	}
	grp.assignmentEpoch = grp.epoch
}

// assignor is the one most members ask for; uniform on a tie or when none
// asks, as in Kafka.
func (grp *consumerGroup) assignor() string {
	votes := map[string]int{}
	for _, m := range grp.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	if votes[assignorRange] > votes[assignorUniform] {
		return assignorRange
	}
	return assignorUniform
}

// assignUniform spreads the partitions evenly over the members subscribed
// to them, keeping each where it is (prev) as far as balance allows: with
// every member subscribed alike, counts differ by at most one.
func assignUniform(ms []*consumerMember, parts map[string]int32, prev map[topicPart]string) map[string]partSet {
	out := map[string]partSet{}
	byID := map[string]*consumerMember{}
	var all []topicPart
	var subscribed []*consumerMember
	for _, m := range ms {
		byID[m.id] = m
		if len(m.topics) > 0 {
			subscribed = append(subscribed, m)
		}
	}
	if len(subscribed) == 0 {
		return out
	}
	for _, t := range slices.Sorted(maps.Keys(parts)) {
		for p := int32(0); p < parts[t]; p++ {
			all = append(all, topicPart{t, p})
		}
	}
	floor, extra := len(all)/len(subscribed), len(all)%len(subscribed)
	count := map[string]int{}
	give := func(m *consumerMember, p topicPart) {
		if out[m.id] == nil {
			out[m.id] = partSet{}
		}
		out[m.id][p] = struct{}{}
		count[m.id]++
	}
	var rest []topicPart
	for _, p := range all {
		m := byID[prev[p]]
		switch {
		case m == nil || !m.topics[p.topic]:
			rest = append(rest, p)
		case count[m.id] < floor:
			give(m, p)
		case count[m.id] == floor && extra > 0:
			extra-- // one of the members that get one more
			give(m, p)
		default:
			rest = append(rest, p)
		}
	}
	for _, p := range rest {
		var best *consumerMember
		for _, m := range subscribed {
			if m.topics[p.topic] && (best == nil || count[m.id] < count[best.id]) {
				best = m
			}
		}
		if best != nil {
			give(best, p)
		}
	}
	return out
}

// assignRange gives each topic's subscribers contiguous ranges of its
// partitions, in member id order: co-partitioned topics go alike.
func assignRange(ms []*consumerMember, parts map[string]int32) map[string]partSet {
	out := map[string]partSet{}
	for t, n := range parts {
		var subs []*consumerMember
		for _, m := range ms {
			if m.topics[t] {
				subs = append(subs, m)
			}
		}
		if len(subs) == 0 {
			continue
		}
		per, extra := int(n)/len(subs), int(n)%len(subs)
		p := int32(0)
		for i, m := range subs {
			k := per
			if i < extra {
				k++
			}
			for ; k > 0; k-- {
				if out[m.id] == nil {
					out[m.id] = partSet{}
				}
				out[m.id][topicPart{t, p}] = struct{}{}
				p++
			}
		}
	}
	return out
}

// touchConsumerLocked restarts a member's session.
func (g *groups) touchConsumerLocked(grp *consumerGroup, m *consumerMember, now time.Time) {
	m.deadline = now.Add(ConsumerSessionTimeout)
	if g.closed {
		return // no timer outlives the server
	}
	if m.timer == nil {
		m.timer = time.AfterFunc(ConsumerSessionTimeout, func() { g.expireConsumer(grp, m) })
		return
	}
	m.timer.Reset(ConsumerSessionTimeout)
}

func (g *groups) expireConsumer(grp *consumerGroup, m *consumerMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.consumer[grp.id] != grp || grp.members[m.id] != m {
		return
	}
	if wait := time.Until(m.deadline); wait > 0 {
		m.timer.Reset(wait)
		return
	}
	g.s.opts.Logger.Info("kafka: group member's session expired", "group", grp.id, "member", m.id, "session", ConsumerSessionTimeout)
	g.removeConsumerLocked(grp, m)
}

// removeConsumerLocked removes a member and frees its partitions; the
// others are reassigned at the next epoch.
func (g *groups) removeConsumerLocked(grp *consumerGroup, m *consumerMember) {
	m.stopTimer()
	grp.release(m, m.revoking)
	grp.release(m, m.assigned)
	clear(m.assigned)
	delete(grp.members, m.id)
	if m.instanceID != "" && grp.static[m.instanceID] == m.id {
		delete(grp.static, m.instanceID)
	}
	grp.epoch++
	if len(grp.members) == 0 && g.consumer[grp.id] == grp {
		delete(g.consumer, grp.id)
	}
}

// leaveConsumer removes a member that leaves (epoch -1 or -2).
func (g *groups) leaveConsumer(group, memberID string) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	grp := g.consumer[group]
	if grp == nil || g.closed {
		return kerr.UnknownMemberID.Code
	}
	m := grp.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	g.removeConsumerLocked(grp, m)
	return 0
}

// state is the group's state as KIP-848 names it.
func (grp *consumerGroup) state() string {
	switch {
	case len(grp.members) == 0:
		return "Empty"
	case grp.assignmentEpoch < grp.epoch:
		return "Assigning"
	}
	for _, m := range grp.members {
		if m.epoch != grp.assignmentEpoch || len(m.revoking) > 0 || len(m.assigned) != len(m.target) {
			return "Reconciling"
		}
	}
	return "Stable"
}
