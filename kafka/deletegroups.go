package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	register(42, &handler{name: "DeleteGroups", min: 0, max: 2, serve: (*Server).deleteGroups})
}

// deleteGroups deletes groups without members, of every type: a group G is
// its subscriptions named G (see groupSubscriptions: a consumer group's
// partitioned ones, a share group's queue ones) and, for a share group, its
// configs. Each subscription is deleted with Broker.DeleteSubscription,
// which keeps its dead-letter stream: that stream is deleted as well when
// it is the one the group's subscription was made with and nothing was
// ever dead-lettered to it, and kept (with the records the group gave up
// on, for an operator to inspect or redrive) otherwise.
//
// A group with members gets NON_EMPTY_GROUP, one with neither
// subscriptions nor configs GROUP_ID_NOT_FOUND. With authentication on,
// deleting takes the "admin" permission on every stream the group has a
// subscription on (GROUP_AUTHORIZATION_FAILED otherwise, and nothing is
// deleted).
func (s *Server) deleteGroups(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		g := kmsg.NewDeleteGroupsResponseGroup()
		g.Group = id
		g.ErrorCode = s.deleteGroup(ctx, c, id)
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func (s *Server) deleteGroup(ctx context.Context, c *conn, id string) int16 {
	if !validGroupID(id) {
		return kerr.InvalidGroupID.Code
	}
	if s.groupHasMembers(id) {
		return kerr.NonEmptyGroup.Code
	}
	subs, err := s.groupSubscriptions(ctx, id)
	if err != nil {
		return errorCode(err)
	}
	for _, sub := range subs {
		if !c.may("admin", sub.Stream) {
			return errGroupAuth
		}
	}
	s.shares.mu.Lock()
	_, configured := s.shares.configs[id]
	s.shares.mu.Unlock()
	if len(subs) == 0 && !configured {
		return kerr.GroupIDNotFound.Code
	}
	for _, sub := range subs {
		if code := s.deleteGroupSubscription(ctx, sub); code != 0 {
			return code
		}
	}
	s.shares.forgetConfigs(id)
	return 0
}

// groupHasMembers reports whether a group of any type has members (or, for
// a classic group, member ids handed out and not yet used).
func (s *Server) groupHasMembers(id string) bool {
	g := s.groups
	g.mu.Lock()
	live := (g.classic[id] != nil && g.classic[id].live()) || (g.consumer[id] != nil && len(g.consumer[id].members) > 0)
	g.mu.Unlock()
	if live {
		return true
	}
	sg := s.shares
	sg.mu.Lock()
	defer sg.mu.Unlock()
	return sg.groups[id] != nil && len(sg.groups[id].members) > 0
}

// deleteGroupSubscription deletes one subscription of a group, and its
// dead-letter stream if it is the group's own and never received anything.
// A subscription already gone is no error.
func (s *Server) deleteGroupSubscription(ctx context.Context, sub sluice.SubscriptionInfo) int16 {
	err := s.b.DeleteSubscription(ctx, sub.Stream, sub.Config.Name)
	switch {
	case errors.Is(err, sluice.ErrSubscriptionNotFound), errors.Is(err, sluice.ErrStreamNotFound):
		return 0
	case err != nil:
		s.opts.Logger.Warn("kafka: deleting a group's subscription failed", "topic", sub.Stream, "group", sub.Config.Name, "error", err)
		return errorCode(err)
	}
	s.dropEmptyDeadLetter(ctx, sub)
	return 0
}

// dropEmptyDeadLetter deletes a deleted group subscription's dead-letter
// stream when it is the name the group made it with, no message was ever
// written to it, and it has no subscriptions of its own.
func (s *Server) dropEmptyDeadLetter(ctx context.Context, sub sluice.SubscriptionInfo) {
	dlq := sub.Config.DeadLetterStream
	if dlq != groupDeadLetter(sub.Stream, sub.Config.Name) {
		return
	}
	st, err := s.b.Stream(ctx, dlq)
	if err != nil {
		return
	}
	for _, p := range st.Partitions {
		if p.HighWatermark > 0 {
			return
		}
	}
	if subs, err := s.b.ListSubscriptions(ctx, dlq); err != nil || len(subs) > 0 {
		return
	}
	if err := s.b.DeleteStream(ctx, dlq); err != nil && !errors.Is(err, sluice.ErrStreamNotFound) {
		s.opts.Logger.Warn("kafka: deleting a deleted group's empty dead-letter stream failed", "stream", dlq, "error", err)
	}
}

// errGroupNotEmpty is the message of a group operation that needs the group
// without members.
func errGroupNotEmpty(id string) string {
	return fmt.Sprintf("group %q has members: it must be empty", id)
}
