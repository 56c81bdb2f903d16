package kafka

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	// v1 is KIP-932 as released (v0 was its early access).
	register(76, &handler{name: "ShareGroupHeartbeat", min: 1, max: 1, serve: (*Server).shareGroupHeartbeat})
}

// maxShareMemberIDBytes bounds a member id, which clients choose (22
// characters from franz-go and the Java client).
const maxShareMemberIDBytes = 256

// shareGroupHeartbeat joins (epoch 0), keeps (the member's epoch) or
// leaves (epoch -1) a share group. Every member is assigned every
// partition of the subscribed topics that exist; its epoch moves to the
// group's when that changes, and the answer then carries the assignment.
func (s *Server) shareGroupHeartbeat(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ShareGroupHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	resp.HeartbeatIntervalMillis = int32(ShareHeartbeatInterval / time.Millisecond)
	fail := func(code int16, format string, args ...any) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(fmt.Sprintf(format, args...))
		return resp, nil
	}
	switch {
	case req.GroupID == "":
		return fail(kerr.InvalidRequest.Code, "a share group heartbeat without a group id")
	case len(req.MemberID) > maxShareMemberIDBytes:
		return fail(kerr.InvalidRequest.Code, "member id of %d bytes, limit %d", len(req.MemberID), maxShareMemberIDBytes)
	case req.MemberEpoch < -1:
		return fail(kerr.InvalidRequest.Code, "member epoch %d: share group members join with 0 and leave with -1", req.MemberEpoch)
	case req.MemberEpoch == 0 && req.SubscribedTopicNames == nil:
		return fail(kerr.InvalidRequest.Code, "joining a share group needs SubscribedTopicNames")
	case len(req.SubscribedTopicNames) > MaxShareGroupTopics:
		return fail(kerr.InvalidRequest.Code, "%d subscribed topics, limit MaxShareGroupTopics=%d", len(req.SubscribedTopicNames), MaxShareGroupTopics)
	}
	g := s.shares
	group, id := req.GroupID, req.MemberID
	if req.MemberEpoch == -1 {
		g.mu.Lock()
		m, serr := g.memberLocked(group, id)
		if serr == nil {
			g.detachLocked(m)
		}
		g.mu.Unlock()
		if serr != nil {
			return fail(serr.code, "%s", serr.msg)
		}
		g.depart([]*shareMember{m}, "it left the group")
		resp.MemberID, resp.MemberEpoch = &id, -1
		return resp, nil
	}
	if id == "" {
		if req.MemberEpoch != 0 {
			return fail(kerr.UnknownMemberID.Code, "a heartbeat of epoch %d without a member id", req.MemberEpoch)
		}
		id = newShareMemberID()
	}

	topics := req.SubscribedTopicNames
	if topics == nil { // unchanged since the last heartbeat
		g.mu.Lock()
		m, serr := g.memberLocked(group, id)
		if serr == nil {
			topics = m.topics
		}
		g.mu.Unlock()
		if serr != nil {
			return fail(serr.code, "%s", serr.msg)
		}
	}
	topics = sortedTopics(topics)
	assign := map[string]int32{}
	for _, t := range topics {
		if !c.may("consume", t) {
			return fail(errTopicAuth, "%s may not consume topic %q", sharePrincipal(c), t)
		}
		n, err := g.ensureSubscription(ctx, t, group)
		switch {
		case err == nil:
			assign[t] = n
		case errors.Is(err, sluice.ErrStreamNotFound):
			// Assigned once it exists: every heartbeat looks again.
		case errors.Is(err, errNotShareable):
			return fail(kerr.InconsistentGroupProtocol.Code, "%v", err)
		case errors.Is(err, sluice.ErrInvalid):
			return fail(kerr.InvalidGroupID.Code, "share group %q on topic %q: %v", group, t, err)
		default:
			return fail(errorCode(err), "share group %q on topic %q: %v", group, t, err)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	grp := g.groups[group]
	var m *shareMember
	if grp != nil {
		m = grp.members[id]
	}
	switch {
	case req.MemberEpoch == 0 && m == nil:
		switch {
		case g.closed:
			return fail(kerr.CoordinatorNotAvailable.Code, "the Kafka server is shutting down")
		case grp == nil && len(g.groups) >= MaxShareGroups:
			return fail(kerr.GroupMaxSizeReached.Code, "%d share groups have members, limit MaxShareGroups=%d", len(g.groups), MaxShareGroups)
		case grp != nil && len(grp.members) >= MaxShareGroupMembers:
			return fail(kerr.GroupMaxSizeReached.Code, "share group %q has %d members, limit MaxShareGroupMembers=%d", group, len(grp.members), MaxShareGroupMembers)
		}
		if grp == nil {
			grp = &shareGroup{id: group, members: map[string]*shareMember{}}
			g.groups[group] = grp
		}
		m = &shareMember{id: id, consumer: consumerName(id), group: grp, consumers: map[string]sluice.Consumer{},
			held: map[heldKey]heldRecord{}, unsent: map[heldKey]struct{}{}, room: make(chan struct{})}
		m.ctx, m.cancel = context.WithCancel(s.ctx)
		grp.members[id] = m
		g.startSweeperLocked()
	case m == nil:
		return fail(kerr.UnknownMemberID.Code, "member %q is not in share group %q (it left, or its session of %v expired): join with epoch 0", id, group, g.sessionTimeout)
	case req.MemberEpoch > m.epoch:
		return fail(kerr.FencedMemberEpoch.Code, "member epoch %d is ahead of the group's %d", req.MemberEpoch, m.epoch)
	}
	m.expires = time.Now().Add(g.sessionTimeout)
	m.topics = topics
	m.clientID = c.clientID
	if host, _, err := net.SplitHostPort(c.nc.RemoteAddr().String()); err == nil {
		m.host = host
	}
	if req.MemberEpoch == 0 || !maps.Equal(m.assigned, assign) {
		grp.epoch = nextEpoch(grp.epoch)
		m.epoch, m.assigned = grp.epoch, assign
	}
	resp.MemberID, resp.MemberEpoch = &m.id, m.epoch
	if req.MemberEpoch != m.epoch { // joined, changed, or the last answer was lost
		a := kmsg.NewShareGroupHeartbeatResponseAssignment()
		for _, t := range slices.Sorted(maps.Keys(m.assigned)) {
			tp := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
			tp.TopicID, tp.Partitions = topicID(t), allPartitions(m.assigned[t])
			a.TopicPartitions = append(a.TopicPartitions, tp)
		}
		resp.Assignment = &a
	}
	return resp, nil
}

// allPartitions is 0..n-1.
func allPartitions(n int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// newShareMemberID generates a member id for a client that sent none.
func newShareMemberID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sharePrincipal names the connection's principal in errors.
func sharePrincipal(c *conn) string {
	if c.principal == nil {
		return "this connection"
	}
	return fmt.Sprintf("principal %q", c.principal.Name())
}
