package kafka

// groups is the group coordinator: classic (JoinGroup, SyncGroup) and
// KIP-848 consumer groups, whose committed offsets are sluice partitioned
// subscriptions.
type groups struct {
	s *Server
}

func newGroups(s *Server) *groups { return &groups{s: s} }
