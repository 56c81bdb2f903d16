package subscription

// Floor returns the offset of partition part below which every message is
// settled (acknowledged or dead-lettered): what a work-queue stream may count as
// done.
func (s *Sub) Floor(part int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if part < 0 || part >= len(s.state) {
		return 0
	}
	return s.state[part].floor
}
