package subscription

import (
	"context"
	"slices"
	"time"
)

// group is the membership of a partitioned subscription. It lives in memory only:
// members are live processes that rejoin after a restart; what the group has done
// is in the floors, which are durable.
type group struct {
	members    map[string]int64 // member -> last seen, unix ms
	owners     []string         // per partition: its member, "" when unassigned
	generation int64
}

// owner returns the member that owns partition i.
func (s *Sub) owner(i int) string {
	if i < len(s.grp.owners) {
		return s.grp.owners[i]
	}
	return ""
}

// touchLocked records that member is alive, adding it to the group.
func (s *Sub) touchLocked(member string, now time.Time) {
	if s.cfg.Mode != ModePartitioned {
		return
	}
	_, known := s.grp.members[member]
	s.grp.members[member] = ms(now)
	if !known {
		s.rebalanceLocked()
	}
}

// expireMembersLocked removes members that have not fetched within Session.
func (s *Sub) expireMembersLocked(now time.Time) {
	if s.cfg.Mode != ModePartitioned {
		return
	}
	changed := false
	for m, seen := range s.grp.members {
		if seen+s.cfg.Session.Milliseconds() <= ms(now) {
			delete(s.grp.members, m)
			changed = true
			s.log.Info("subscription: member left the group (session expired)", "subscription", s.cfg.Name, "member", m)
		}
	}
	if changed || len(s.grp.owners) != len(s.parts()) {
		s.rebalanceLocked()
	}
}

// nextMemberExpiry is when the first member's session ends.
func (s *Sub) nextMemberExpiry() (int64, bool) {
	var first int64
	ok := false
	for _, seen := range s.grp.members {
		if t := seen + s.cfg.Session.Milliseconds(); !ok || t < first {
			first, ok = t, true
		}
	}
	return first, ok
}

// Leave removes member from a partitioned subscription's group at once.
func (s *Sub) Leave(member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.grp.members[member]; ok {
		delete(s.grp.members, member)
		s.rebalanceLocked()
		s.broadcastLocked()
	}
}

// rebalanceLocked assigns the partitions to the live members, sticky: a member keeps
// its partitions unless it has more than its share, and only the partitions of
// departed members and the excess move. A partition that changes hands loses its
// leases; its new owner starts at its first unsettled offset, in order.
func (s *Sub) rebalanceLocked() {
	n := len(s.parts())
	for len(s.grp.owners) < n {
		s.grp.owners = append(s.grp.owners, "")
	}
	old := slices.Clone(s.grp.owners)
	members := make([]string, 0, len(s.grp.members))
	for m := range s.grp.members {
		members = append(members, m)
	}
	slices.Sort(members)
	owned := map[string][]int{}
	for i, o := range s.grp.owners {
		if _, live := s.grp.members[o]; live {
			owned[o] = append(owned[o], i)
		} else {
			s.grp.owners[i] = ""
		}
	}
	if len(members) > 0 {
		// Shares: n/M each, one more for n%M members, given to those that already
		// hold the most so that fewer partitions move.
		byLoad := slices.Clone(members)
		slices.SortStableFunc(byLoad, func(a, b string) int { return len(owned[b]) - len(owned[a]) })
		share := map[string]int{}
		for k, m := range byLoad {
			share[m] = n / len(members)
			if k < n%len(members) {
				share[m]++
			}
		}
		for _, m := range members {
			for len(owned[m]) > share[m] {
				last := owned[m][len(owned[m])-1]
				owned[m] = owned[m][:len(owned[m])-1]
				s.grp.owners[last] = ""
			}
		}
		for i := range s.grp.owners {
			if s.grp.owners[i] != "" {
				continue
			}
			for _, m := range members {
				if len(owned[m]) < share[m] {
					owned[m] = append(owned[m], i)
					s.grp.owners[i] = m
					break
				}
			}
		}
	}
	for i := range s.grp.owners {
		if s.grp.owners[i] != old[i] {
			s.revokeLocked(i, 0)
		}
	}
	s.grp.generation++
}

// revokeLocked ends every lease in partition i on an offset at or after from: the
// messages go back, in order, to whoever owns the partition next.
// A revoked delivery does not count against the message's MaxDeliveries.
func (s *Sub) revokeLocked(i int, from int64) {
	ps := s.partLocked(i)
	var evs []event
	for off, pd := range ps.pend {
		if off >= from && pd.lease != 0 {
			s.releaseLocked(pd)
			evs = append(evs, event{kind: evRevoke, partition: i, offset: off})
		}
	}
	// A journal failure stops the subscription (journalLocked records it).
	s.journalLocked(context.Background(), evs...)
}

// MemberInfo is a member of a partitioned subscription's group.
type MemberInfo struct {
	Name       string
	Partitions []int
	LastSeen   int64 // unix ms
}

// Members returns the group of a partitioned subscription and its generation,
// which changes with every rebalance.
func (s *Sub) Members() ([]MemberInfo, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []MemberInfo
	for m, seen := range s.grp.members {
		mi := MemberInfo{Name: m, LastSeen: seen}
		for i, o := range s.grp.owners {
			if o == m {
				mi.Partitions = append(mi.Partitions, i)
			}
		}
		out = append(out, mi)
	}
	slices.SortFunc(out, func(a, b MemberInfo) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, s.grp.generation
}
