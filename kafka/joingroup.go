package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(11, &handler{name: "JoinGroup", min: 0, max: 9, serve: (*Server).joinGroup})
}

// consumerProtocolType is the protocol type of Kafka consumers, whose
// metadata names the topics subscribed.
const consumerProtocolType = "consumer"

// joinRequest is a JoinGroup with its timeouts decoded.
type joinRequest struct {
	*kmsg.JoinGroupRequest
	session, rebalance time.Duration
	instanceID         string
	topics             []string
	clientID, host     string
}

// joinGroup admits a member to a classic group and answers once the
// group's next generation starts. A first join without a member id (v4+,
// not static) is answered MEMBER_ID_REQUIRED with the id to rejoin with.
func (s *Server) joinGroup(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.JoinGroupRequest)
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	fail := func(code int16) (kmsg.Response, error) {
		resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, req.MemberID
		return resp, nil
	}
	if !validGroupID(req.Group) {
		return fail(kerr.InvalidGroupID.Code)
	}
	jr := &joinRequest{JoinGroupRequest: req, clientID: c.clientID, host: c.clientHost()}
	jr.session = time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if jr.session < MinSessionTimeout || jr.session > MaxSessionTimeout {
		return fail(kerr.InvalidSessionTimeout.Code)
	}
	jr.rebalance = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 || req.RebalanceTimeoutMillis <= 0 {
		jr.rebalance = jr.session // v0 has one timeout for both
	}
	jr.rebalance = min(jr.rebalance, MaxRebalanceTimeout)
	if req.InstanceID != nil {
		jr.instanceID = *req.InstanceID
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 || len(req.Protocols) > MaxGroupProtocols {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	size := 0
	for _, p := range req.Protocols {
		size += len(p.Name) + len(p.Metadata)
	}
	if size > MaxMemberMetadataBytes {
		s.opts.Logger.Warn("kafka: JoinGroup refused: protocol metadata over MaxMemberMetadataBytes", "group", req.Group, "bytes", size, "limit", MaxMemberMetadataBytes)
		return fail(kerr.GroupMaxSizeReached.Code)
	}
	if req.ProtocolType == consumerProtocolType {
		// The consumer protocol names the topics: joining needs the
		// permission to consume each.
		seen := map[string]bool{}
		for _, p := range req.Protocols {
			var md kmsg.ConsumerMemberMetadata
			if md.ReadFrom(p.Metadata) != nil {
				continue
			}
			for _, t := range md.Topics {
				if !seen[t] {
					seen[t] = true
					jr.topics = append(jr.topics, t)
				}
			}
		}
		for _, t := range jr.topics {
			if !c.may("consume", t) {
				return fail(kerr.GroupAuthorizationFailed.Code)
			}
		}
	}

	wait, res := s.groups.join(jr)
	if wait != nil {
		select {
		case res = <-wait:
		case <-ctx.Done():
			return nil, ctx.Err() // the connection is closing: nobody to answer
		}
	}
	resp.ErrorCode, resp.MemberID = res.code, res.memberID
	if res.code != 0 {
		resp.Generation = -1
		return resp, nil
	}
	resp.Generation, resp.LeaderID, resp.Members, resp.SkipAssignment = res.generation, res.leader, res.members, res.skip
	resp.Protocol = kmsg.StringPtr(res.protocol)
	resp.ProtocolType = kmsg.StringPtr(req.ProtocolType)
	return resp, nil
}

// join admits the member and returns either the channel its answer comes
// on or, when it is answered at once, the answer.
func (g *groups) join(jr *joinRequest) (chan joinResult, joinResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := func(code int16) (chan joinResult, joinResult) {
		return nil, joinResult{code: code, generation: -1, memberID: jr.MemberID}
	}
	if g.closed {
		return now(kerr.CoordinatorNotAvailable.Code)
	}
	if g.consumer[jr.Group] != nil {
		return now(kerr.InconsistentGroupProtocol.Code) // a KIP-848 group
	}
	grp := g.classic[jr.Group]
	if grp == nil {
		if jr.MemberID != "" {
			return now(kerr.UnknownMemberID.Code) // a member of a group forgotten (a restart)
		}
		if g.countLocked() >= MaxGroups {
			g.s.opts.Logger.Warn("kafka: new group refused: MaxGroups reached", "group", jr.Group, "limit", MaxGroups)
			return now(kerr.GroupMaxSizeReached.Code)
		}
		grp = &classicGroup{id: jr.Group, members: map[string]*classicMember{}, static: map[string]string{}, pending: map[string]*time.Timer{}}
		g.classic[jr.Group] = grp
	}
	defer g.forgetIfIdleLocked(grp) // if this join failed and left no one

	if jr.MemberID == "" {
		if jr.instanceID != "" {
			if oldID, ok := grp.static[jr.instanceID]; ok {
				return g.replaceStaticLocked(grp, grp.members[oldID], jr)
			}
			return g.addMemberLocked(grp, newMemberID(jr.clientID), jr)
		}
		if jr.Version >= 4 { // KIP-394: the member rejoins with the id
			if len(grp.members)+len(grp.pending) >= MaxGroupMembers {
				return g.tooManyLocked(grp, jr)
			}
			id := newMemberID(jr.clientID)
			grp.pending[id] = time.AfterFunc(jr.session, func() { g.expirePending(grp, id) })
			return nil, joinResult{code: kerr.MemberIDRequired.Code, generation: -1, memberID: id}
		}
		return g.addMemberLocked(grp, newMemberID(jr.clientID), jr)
	}
	if t, ok := grp.pending[jr.MemberID]; ok {
		if jr.instanceID != "" && grp.static[jr.instanceID] != "" {
			return now(kerr.FencedInstanceID.Code)
		}
		t.Stop()
		delete(grp.pending, jr.MemberID)
		return g.addMemberLocked(grp, jr.MemberID, jr)
	}
	m := grp.members[jr.MemberID]
	if jr.instanceID != "" {
		if id, ok := grp.static[jr.instanceID]; ok && id != jr.MemberID {
			return now(kerr.FencedInstanceID.Code)
		}
	}
	if m == nil {
		return now(kerr.UnknownMemberID.Code)
	}
	return g.rejoinLocked(grp, m, jr)
}

func (g *groups) tooManyLocked(grp *classicGroup, jr *joinRequest) (chan joinResult, joinResult) {
	g.s.opts.Logger.Warn("kafka: JoinGroup refused: MaxGroupMembers reached", "group", grp.id, "limit", MaxGroupMembers)
	return nil, joinResult{code: kerr.GroupMaxSizeReached.Code, generation: -1, memberID: jr.MemberID}
}

// expirePending forgets a member id handed out with MEMBER_ID_REQUIRED and
// not used within the session timeout.
func (g *groups) expirePending(grp *classicGroup, id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.classic[grp.id] != grp || grp.pending[id] == nil {
		return
	}
	delete(grp.pending, id)
	g.maybeCompleteJoinLocked(grp)
	g.forgetIfIdleLocked(grp)
}

// addMemberLocked adds a new member, which waits for the next generation.
func (g *groups) addMemberLocked(grp *classicGroup, id string, jr *joinRequest) (chan joinResult, joinResult) {
	if !grp.compatible(jr.ProtocolType, jr.Protocols, nil) {
		return nil, joinResult{code: kerr.InconsistentGroupProtocol.Code, generation: -1, memberID: jr.MemberID}
	}
	if len(grp.members)+len(grp.pending) >= MaxGroupMembers {
		return g.tooManyLocked(grp, jr)
	}
	grp.seq++
	m := &classicMember{id: id, instanceID: jr.instanceID, seq: grp.seq}
	m.update(jr)
	if len(grp.members) == 0 {
		grp.protocolType = jr.ProtocolType
	}
	grp.members[id] = m
	if m.instanceID != "" {
		grp.static[m.instanceID] = id
	}
	wait := m.await()
	g.touchLocked(grp, m)
	switch grp.state {
	case stateEmpty, stateStable, stateCompleting:
		g.prepareRebalanceLocked(grp)
	case statePreparing:
		if grp.delaying {
			// Another member of a new group: wait a little more for the
			// rest, within the rebalance timeout.
			if left := time.Until(grp.delayEnd); left > 0 {
				g.armRebalanceLocked(grp, min(initialRebalanceDelay, left))
			}
		}
		g.maybeCompleteJoinLocked(grp)
	}
	return wait, joinResult{}
}

// await makes the channel a waiting JoinGroup is answered on. The caller
// keeps it: completing the join (possibly at once) clears m.joinWait.
func (m *classicMember) await() chan joinResult {
	m.joinWait = make(chan joinResult, 1)
	return m.joinWait
}

// update takes a join's protocols, timeouts and client.
func (m *classicMember) update(jr *joinRequest) {
	m.protocols, m.topics = jr.Protocols, jr.topics
	m.session, m.rebalance = jr.session, jr.rebalance
	m.clientID, m.host = jr.clientID, jr.host
}

// rejoinLocked serves a known member's JoinGroup. Kafka's rules: during a
// rebalance it waits with the others; otherwise a follower offering what it
// did gets the current generation back at once, and a leader (which may
// want to reassign) or a member whose metadata changed starts a rebalance.
func (g *groups) rejoinLocked(grp *classicGroup, m *classicMember, jr *joinRequest) (chan joinResult, joinResult) {
	if !grp.compatible(jr.ProtocolType, jr.Protocols, m) {
		return nil, joinResult{code: kerr.InconsistentGroupProtocol.Code, generation: -1, memberID: m.id}
	}
	g.touchLocked(grp, m)
	switch grp.state {
	case stateCompleting, stateStable:
		if m.sameProtocols(jr.Protocols) && (grp.state == stateCompleting || m.id != grp.leader) {
			m.update(jr)
			res := grp.joinResultFor(m)
			if m.id == grp.leader {
				res.members = grp.memberList()
			}
			return nil, res
		}
		m.update(jr)
		wait := m.await()
		g.prepareRebalanceLocked(grp)
		return wait, joinResult{}
	default: // preparing
		m.update(jr)
		if m.joinWait != nil {
			// A JoinGroup retried on another connection: the first
			// one's answer would go nowhere.
			m.joinWait <- joinResult{code: kerr.RebalanceInProgress.Code, generation: -1, memberID: m.id}
		}
		wait := m.await()
		g.maybeCompleteJoinLocked(grp)
		return wait, joinResult{}
	}
}

// replaceStaticLocked serves a static member restarting (KIP-345): its
// instance id is known, with another member id. The new id takes the old
// one's place, and its assignment, without a rebalance unless its
// metadata changed; the old id is fenced.
func (g *groups) replaceStaticLocked(grp *classicGroup, m *classicMember, jr *joinRequest) (chan joinResult, joinResult) {
	if !grp.compatible(jr.ProtocolType, jr.Protocols, m) {
		return nil, joinResult{code: kerr.InconsistentGroupProtocol.Code, generation: -1, memberID: jr.MemberID}
	}
	if m.joinWait != nil {
		m.joinWait <- joinResult{code: kerr.FencedInstanceID.Code, generation: -1, memberID: m.id}
		m.joinWait = nil
	}
	if m.syncWait != nil {
		m.syncWait <- syncResult{code: kerr.FencedInstanceID.Code}
		m.syncWait = nil
	}
	oldID, id := m.id, newMemberID(jr.clientID)
	delete(grp.members, oldID)
	m.id = id
	grp.members[id] = m
	grp.static[m.instanceID] = id
	if grp.leader == oldID {
		grp.leader = id
	}
	same := m.sameProtocols(jr.Protocols)
	m.update(jr)
	g.touchLocked(grp, m)
	switch {
	case grp.state == statePreparing:
		wait := m.await()
		g.maybeCompleteJoinLocked(grp)
		return wait, joinResult{}
	case same && grp.state == stateStable:
		// (While the generation completes, its leader may be the member
		// replaced: a rebalance is simpler than a sync without a plan.)
		res := grp.joinResultFor(m)
		if id == grp.leader && jr.Version >= 9 {
			// KIP-814: the leader learns the members without
			// reassigning them; older leaders learn nothing.
			res.members, res.skip = grp.memberList(), true
		}
		return nil, res
	default:
		wait := m.await()
		g.prepareRebalanceLocked(grp)
		return wait, joinResult{}
	}
}
