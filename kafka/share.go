package kafka

// shareGroups coordinates KIP-932 share groups, each a sluice queue
// subscription.
type shareGroups struct {
	s *Server
}

func newShareGroups(s *Server) *shareGroups { return &shareGroups{s: s} }

// close ends the share groups' consumers.
func (g *shareGroups) close() {}
