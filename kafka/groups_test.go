package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/sluicemq/sluice"
)

// groupWait polls cond until it holds, failing the test past the timeout.
func groupWait(t *testing.T, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
		<-tick.C
	}
}

// kip848 opts a kgo client into the KIP-848 consumer protocol: kgo
// v1.21 uses it only when asked through its context, and when the broker
// serves ConsumerGroupHeartbeat v1.
func kip848() kgo.Opt {
	return kgo.WithContext(context.WithValue(context.Background(), "opt_in_kafka_next_gen_balancer_beta", true))
}

// groupMember is a kgo group consumer that tracks the partitions it owns
// and, once started, polls in the background: every record goes to the
// collector, and what was polled is committed after each poll.
type groupMember struct {
	name string
	cl   *kgo.Client

	mu    sync.Mutex
	owned map[int32]bool

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

func (e *env) groupMember(t *testing.T, name, group, topic string, opts ...kgo.Opt) *groupMember {
	t.Helper()
	m := &groupMember{name: name, owned: map[int32]bool{}}
	drop := func(_ context.Context, cl *kgo.Client, ps map[string][]int32) {
		m.mu.Lock()
		for _, p := range ps[topic] {
			delete(m.owned, p)
		}
		m.mu.Unlock()
	}
	all := []kgo.Opt{
		kgo.SeedBrokers(e.addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(300 * time.Millisecond),
		kgo.HeartbeatInterval(250 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			for _, p := range ps[topic] {
				m.owned[p] = true
			}
			m.mu.Unlock()
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, ps map[string][]int32) {
			// Commit what was processed before letting go, as consumers
			// without autocommit do.
			cl.CommitUncommittedOffsets(ctx)
			drop(ctx, cl, ps)
		}),
		kgo.OnPartitionsLost(drop),
	}
	if testing.Verbose() {
		all = append(all, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, func() string { return name + " " })))
	}
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	t.Cleanup(m.close)
	return m
}

func (m *groupMember) ownedNow() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.owned))
}

// start polls in the background until close.
func (m *groupMember) start(col *groupCollector) {
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.done = cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		for {
			fs := m.cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) { col.add(m.name, r) })
			if fs.NumRecords() > 0 {
				m.cl.CommitUncommittedOffsets(ctx) // a rebalance may refuse it: the next owner reads again
			}
		}
	}()
}

// close stops polling and closes the client, which leaves the group.
func (m *groupMember) close() {
	m.once.Do(func() {
		if m.stop != nil {
			m.stop()
			<-m.done
		}
		m.cl.Close()
	})
}

// groupCollector counts the records consumed, by value.
type groupCollector struct {
	mu    sync.Mutex
	seen  map[string]int
	total int
	by    map[string]int // records per member
}

func newGroupCollector() *groupCollector {
	return &groupCollector{seen: map[string]int{}, by: map[string]int{}}
}

func (c *groupCollector) add(member string, r *kgo.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[string(r.Value)]++
	c.total++
	c.by[member]++
}

// counts returns the distinct records seen and the deliveries.
func (c *groupCollector) counts() (unique, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), c.total
}

func (c *groupCollector) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d distinct records, %d deliveries, per member %v", len(c.seen), c.total, c.by)
}

// missing lists the values of [from, to) not seen.
func (c *groupCollector) missing(from, to int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i := from; i < to; i++ {
		if v := groupValue(i); c.seen[v] == 0 {
			out = append(out, v)
		}
	}
	return out
}

func groupValue(i int) string { return fmt.Sprintf("record-%05d", i) }

// groupProduce produces records [from, to), keyed to spread partitions.
func groupProduce(t *testing.T, p *kgo.Client, from, to int) {
	t.Helper()
	var rs []*kgo.Record
	for i := from; i < to; i++ {
		rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(groupValue(i))})
	}
	if err := p.ProduceSync(ctx(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// groupCaughtUp reports whether the group's subscription on the topic has
// committed every partition to its high watermark, with what it found.
func (e *env) groupCaughtUp(topic, group string) (bool, string) {
	st, err := e.b.Stream(context.Background(), topic)
	if err != nil {
		return false, err.Error()
	}
	sub, err := e.b.Subscription(context.Background(), topic, group)
	if err != nil {
		return false, err.Error()
	}
	if sub.Config.Mode != sluice.PartitionedMode || len(sub.Partitions) != len(st.Partitions) {
		return false, fmt.Sprintf("subscription %+v", sub.Config)
	}
	for i, p := range sub.Partitions {
		if p.Floor != st.Partitions[i].HighWatermark || p.Backlog != 0 {
			return false, fmt.Sprintf("partition %d: floor %d backlog %d, high watermark %d", i, p.Floor, p.Backlog, st.Partitions[i].HighWatermark)
		}
	}
	if sub.Backlog != 0 {
		return false, fmt.Sprintf("backlog %d", sub.Backlog)
	}
	return true, ""
}

// groupSplit waits until the members own every one of n partitions
// between them, each at least one, none twice.
func groupSplit(t *testing.T, n int, ms ...*groupMember) {
	t.Helper()
	var last string
	groupWait(t, 15*time.Second, func() string { return "partitions not split among the members: " + last }, func() bool {
		owners := map[int32]int{}
		last = ""
		for _, m := range ms {
			owned := m.ownedNow()
			last += fmt.Sprintf("%s=%v ", m.name, owned)
			if len(owned) == 0 {
				return false
			}
			for _, p := range owned {
				owners[p]++
			}
		}
		if len(owners) != n {
			return false
		}
		for _, k := range owners {
			if k != 1 {
				return false
			}
		}
		return true
	})
}

// testGroupConsume: two members share a 4-partition topic and consume
// every record exactly once between them; a third joins and the first
// leaves, and no record is lost across either rebalance; the committed
// offsets are the group's subscription's floors.
func testGroupConsume(t *testing.T, opts ...kgo.Opt) {
	e := setup(t, nil)
	const topic, group, n = "orders", "g", 300
	e.stream(t, topic, 4)
	p := e.client(t, kgo.DefaultProduceTopic(topic))
	col := newGroupCollector()
	m1 := e.groupMember(t, "m1", group, topic, opts...)
	m2 := e.groupMember(t, "m2", group, topic, opts...)
	m1.start(col)
	m2.start(col)
	groupSplit(t, 4, m1, m2)

	groupProduce(t, p, 0, n)
	groupWait(t, 10*time.Second, col.summary, func() bool { u, _ := col.counts(); return u == n })
	if u, total := col.counts(); total != u {
		t.Fatalf("without a rebalance every record once: %s", col.summary())
	}
	var why string
	groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })

	m3 := e.groupMember(t, "m3", group, topic, opts...)
	m3.start(col)
	groupProduce(t, p, n, 2*n)
	groupSplit(t, 4, m1, m2, m3)
	groupWait(t, 10*time.Second, func() string { return fmt.Sprintf("missing %v", col.missing(0, 2*n)) }, func() bool { u, _ := col.counts(); return u == 2*n })
	groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })

	m1.close()
	groupProduce(t, p, 2*n, 3*n)
	groupSplit(t, 4, m2, m3)
	groupWait(t, 10*time.Second, func() string { return fmt.Sprintf("missing %v", col.missing(0, 3*n)) }, func() bool { u, _ := col.counts(); return u == 3*n })
	groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })
	t.Log(col.summary())
}

// TestGroupClassic: testGroupConsume with the classic protocol (JoinGroup,
// SyncGroup, kgo's cooperative-sticky balancer).
func TestGroupClassic(t *testing.T) {
	testGroupConsume(t)
}

// TestGroupKIP848: testGroupConsume with the KIP-848 protocol: the
// coordinator assigns, and the group is described as a consumer group.
func TestGroupKIP848(t *testing.T) {
	testGroupConsume(t, kip848())
}

// TestGroupKIP848Describe: a kgo member opted into KIP-848 is in a
// consumer group, which ConsumerGroupDescribe and ListGroups show.
func TestGroupKIP848Describe(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "events", 2)
	m := e.groupMember(t, "m", "g848", "events", kip848())
	m.start(newGroupCollector())
	groupSplit(t, 2, m)
	cl := e.client(t)
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{"g848", "nope"}
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	g := resp.Groups[0]
	if g.ErrorCode != 0 || g.State != "Stable" || len(g.Members) != 1 || g.AssignorName != assignorUniform {
		t.Fatalf("ConsumerGroupDescribe: %+v", g)
	}
	if a := g.Members[0].Assignment.TopicPartitions; len(a) != 1 || a[0].Topic != "events" || len(a[0].Partitions) != 2 {
		t.Fatalf("member's assignment %+v", a)
	}
	if resp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %+v", resp.Groups[1])
	}
	lg := kmsg.NewPtrListGroupsRequest()
	lr, err := lg.RequestWith(ctx(t), cl)
	if err != nil || len(lr.Groups) != 1 || lr.Groups[0].GroupType != groupTypeConsumer || lr.Groups[0].GroupState != "Stable" {
		t.Fatalf("ListGroups: %v %+v", err, lr)
	}
}

// TestGroupResume: a consumer that restarts (a new client in the same
// group) resumes from the committed offsets, reading nothing twice.
func TestGroupResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{{"classic", nil}, {"kip848", []kgo.Opt{kip848()}}} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, nil)
			const topic, group = "events", "resumer"
			e.stream(t, topic, 2)
			p := e.client(t, kgo.DefaultProduceTopic(topic))
			groupProduce(t, p, 0, 100)
			first := newGroupCollector()
			a := e.groupMember(t, "a", group, topic, tc.opts...)
			a.start(first)
			groupWait(t, 10*time.Second, first.summary, func() bool { u, _ := first.counts(); return u == 100 })
			var why string
			groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })
			a.close()

			groupProduce(t, p, 100, 150)
			again := newGroupCollector()
			b := e.groupMember(t, "b", group, topic, tc.opts...)
			b.start(again)
			groupWait(t, 10*time.Second, again.summary, func() bool { u, _ := again.counts(); return u == 50 })
			if missing := again.missing(100, 150); len(missing) != 0 {
				t.Fatalf("after the restart, want the 20 new records once each: %s", again.summary())
			}
			groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })
			if u, total := again.counts(); u != 50 || total != 50 {
				t.Fatalf("the restarted consumer read committed records again: %s", again.summary())
			}
		})
	}
}

// groupProto sends raw group requests, as a client library would.
type groupProto struct {
	t  *testing.T
	cl *kgo.Client
	// rebalance is the rebalance timeout members join with; 5 s if zero.
	rebalance time.Duration
}

func (p *groupProto) join(group, member, instance string, session time.Duration) *kmsg.JoinGroupResponse {
	p.t.Helper()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = group, member, consumerProtocolType
	rebalance := p.rebalance
	if rebalance == 0 {
		rebalance = 5 * time.Second
	}
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = int32(session/time.Millisecond), int32(rebalance/time.Millisecond)
	if instance != "" {
		req.InstanceID = kmsg.StringPtr(instance)
	}
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = []string{"orders"}
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name, proto.Metadata = "range", md.AppendTo(nil)
	req.Protocols = append(req.Protocols, proto)
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

// joinNew joins as a new member, rejoining with the id MEMBER_ID_REQUIRED
// hands out.
func (p *groupProto) joinNew(group string, session time.Duration) *kmsg.JoinGroupResponse {
	p.t.Helper()
	first := p.join(group, "", "", session)
	if first.ErrorCode != kerr.MemberIDRequired.Code || first.MemberID == "" {
		p.t.Fatalf("first join: %+v, want MEMBER_ID_REQUIRED with an id", first)
	}
	resp := p.join(group, first.MemberID, "", session)
	if resp.ErrorCode != 0 || resp.MemberID != first.MemberID {
		p.t.Fatalf("join with the id handed out: %+v", resp)
	}
	return resp
}

func (p *groupProto) sync(group, member string, gen int32, assign []byte) *kmsg.SyncGroupResponse {
	p.t.Helper()
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	if assign != nil {
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = member, assign
		req.GroupAssignment = append(req.GroupAssignment, a)
	}
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

func (p *groupProto) heartbeat(group, member, instance string, gen int32) int16 {
	p.t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	if instance != "" {
		req.InstanceID = kmsg.StringPtr(instance)
	}
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.ErrorCode
}

// commit commits offset in partitions 0..n-1 of orders and returns the
// first partition's code.
func (p *groupProto) commit(group, member string, gen int32, offset int64) int16 {
	p.t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = "orders", topicID("orders")
	for i := range int32(4) {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = i, offset
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// fetched returns the committed offsets of orders' partitions.
func (p *groupProto) fetched(group string) []int64 {
	p.t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.TopicID, rt.Partitions = "orders", topicID("orders"), []int32{0, 1, 2, 3}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []int64
	for _, part := range resp.Groups[0].Topics[0].Partitions {
		out = append(out, part.Offset)
	}
	return out
}

func (p *groupProto) describe(group string) kmsg.DescribeGroupsResponseGroup {
	p.t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.Groups[0]
}

// TestGroupClassicProtocol drives the classic protocol by hand: member
// ids, a generation, stale generations and unknown members, the
// committed offsets as the subscription's floors, session expiry, static
// membership and leaving.
func TestGroupClassicProtocol(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 4)
	p := e.client(t, kgo.DefaultProduceTopic("orders"))
	groupProduce(t, p, 0, 100)
	gp := &groupProto{t: t, cl: e.client(t)}

	j := gp.joinNew("raw", 10*time.Second)
	if j.Generation != 1 || j.LeaderID != j.MemberID || len(j.Members) != 1 || j.Protocol == nil || *j.Protocol != "range" {
		t.Fatalf("lone member's join: %+v", j)
	}
	if s := gp.sync("raw", j.MemberID, j.Generation, []byte("plan")); s.ErrorCode != 0 || string(s.MemberAssignment) != "plan" {
		t.Fatalf("leader's sync: %+v", s)
	}
	if d := gp.describe("raw"); d.State != "Stable" || len(d.Members) != 1 || string(d.Members[0].MemberAssignment) != "plan" {
		t.Fatalf("described: %+v", d)
	}
	for _, tc := range []struct {
		what   string
		code   int16
		expect int16
	}{
		{"heartbeat", gp.heartbeat("raw", j.MemberID, "", j.Generation), 0},
		{"heartbeat of an unknown member", gp.heartbeat("raw", "nobody", "", j.Generation), kerr.UnknownMemberID.Code},
		{"heartbeat of an unknown group", gp.heartbeat("nogroup", "nobody", "", 1), kerr.UnknownMemberID.Code},
		{"heartbeat of a stale generation", gp.heartbeat("raw", j.MemberID, "", j.Generation-1), kerr.IllegalGeneration.Code},
		{"commit of a stale generation", gp.commit("raw", j.MemberID, j.Generation-1, 5), kerr.IllegalGeneration.Code},
		{"commit of an unknown member", gp.commit("raw", "nobody", j.Generation, 5), kerr.UnknownMemberID.Code},
		{"commit without a group while the group has members", gp.commit("raw", "", -1, 5), kerr.UnknownMemberID.Code},
		{"commit", gp.commit("raw", j.MemberID, j.Generation, 7), 0},
		{"commit of a bad group id", gp.commit("bad group!", "", -1, 5), kerr.InvalidGroupID.Code},
		{"commit of a simple consumer", gp.commit("simple", "", -1, 3), 0},
	} {
		if tc.code != tc.expect {
			t.Errorf("%s: error %d, want %d", tc.what, tc.code, tc.expect)
		}
	}
	sub, err := e.b.Subscription(context.Background(), "orders", "raw")
	if err != nil || sub.Config.Mode != sluice.PartitionedMode {
		t.Fatalf("the group's subscription: %+v %v", sub, err)
	}
	for _, part := range sub.Partitions {
		if part.Floor != 7 {
			t.Fatalf("partition %d's floor %d, committed 7", part.ID, part.Floor)
		}
	}
	if got := gp.fetched("raw"); !slices.Equal(got, []int64{7, 7, 7, 7}) {
		t.Fatalf("OffsetFetch: %v, want 7s", got)
	}
	if got := gp.fetched("never"); !slices.Equal(got, []int64{-1, -1, -1, -1}) {
		t.Fatalf("OffsetFetch of a group without commits: %v", got)
	}
	bad := kmsg.NewPtrOffsetFetchRequest()
	bad.Groups = []kmsg.OffsetFetchRequestGroup{kmsg.NewOffsetFetchRequestGroup()}
	bad.Groups[0].Group = "bad group!"
	if r, err := bad.RequestWith(ctx(t), gp.cl); err != nil || r.Groups[0].ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("OffsetFetch of a bad group id: %+v %v", r, err)
	}
	if _, err := e.b.CreateSubscription(context.Background(), "orders", sluice.SubscriptionConfig{Name: "queue"}); err != nil {
		t.Fatal(err)
	}
	if code := gp.commit("queue", "", -1, 1); code != kerr.InvalidGroupID.Code {
		t.Fatalf("commit to a queue subscription's name: %d, want INVALID_GROUP_ID", code)
	}

	// Listing: the live group, and the simple consumer's, which has
	// committed offsets only.
	lr, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx(t), gp.cl)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, g := range lr.Groups {
		states[g.Group] = g.GroupState
	}
	if states["raw"] != "Stable" || states["simple"] != "Empty" {
		t.Fatalf("ListGroups: %v", states)
	}

	// A static member restarting takes its old place without a
	// rebalance; the old member id is fenced.
	s1 := gp.join("static", "", "i1", 10*time.Second)
	if s1.ErrorCode != 0 || gp.sync("static", s1.MemberID, s1.Generation, []byte("mine")).ErrorCode != 0 {
		t.Fatalf("static join: %+v", s1)
	}
	s2 := gp.join("static", "", "i1", 10*time.Second)
	if s2.ErrorCode != 0 || s2.MemberID == s1.MemberID || s2.Generation != s1.Generation || !s2.SkipAssignment {
		t.Fatalf("static rejoin: %+v (first %+v)", s2, s1)
	}
	if code := gp.heartbeat("static", s1.MemberID, "i1", s1.Generation); code != kerr.FencedInstanceID.Code {
		t.Fatalf("old static member's heartbeat: %d, want FENCED_INSTANCE_ID", code)
	}
	if s := gp.sync("static", s2.MemberID, s2.Generation, nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "mine" {
		t.Fatalf("new static member's sync: %+v", s)
	}

	// A member whose session expires is removed.
	x := gp.joinNew("expiring", MinSessionTimeout)
	gp.sync("expiring", x.MemberID, x.Generation, []byte{})
	groupWait(t, 10*time.Second, func() string { return "member still in the group" }, func() bool {
		return len(gp.describe("expiring").Members) == 0
	})

	// A rebalance waits for the known members up to the rebalance
	// timeout; one that does not rejoin is removed.
	slow := &groupProto{t: t, cl: gp.cl, rebalance: time.Second}
	sa := slow.joinNew("slow", 10*time.Second)
	slow.sync("slow", sa.MemberID, sa.Generation, []byte{})
	first := slow.join("slow", "", "", 10*time.Second)
	joined := make(chan *kmsg.JoinGroupResponse, 1)
	go func() {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.ProtocolType = "slow", first.MemberID, consumerProtocolType
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 1000
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
		resp, err := req.RequestWith(context.Background(), gp.cl)
		if err != nil {
			resp = nil
		}
		joined <- resp
	}()
	groupWait(t, 5*time.Second, func() string { return "no rebalance for the second member" }, func() bool {
		return slow.heartbeat("slow", sa.MemberID, "", sa.Generation) == kerr.RebalanceInProgress.Code
	})
	select {
	case sb := <-joined:
		if sb == nil || sb.ErrorCode != 0 || sb.Generation != sa.Generation+1 || sb.LeaderID != first.MemberID || len(sb.Members) != 1 {
			t.Fatalf("join after the rebalance timeout: %+v", sb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the rebalance did not end at its timeout")
	}
	if code := slow.heartbeat("slow", sa.MemberID, "", sa.Generation); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the member that did not rejoin: %d, want UNKNOWN_MEMBER_ID", code)
	}

	// Leaving: the group is left with its committed offsets, Empty.
	lv := kmsg.NewPtrLeaveGroupRequest()
	lv.Group = "raw"
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID = j.MemberID
	lv.Members = append(lv.Members, lm)
	if lr, err := lv.RequestWith(ctx(t), gp.cl); err != nil || lr.ErrorCode != 0 || lr.Members[0].ErrorCode != 0 {
		t.Fatalf("LeaveGroup: %+v %v", lr, err)
	}
	if d := gp.describe("raw"); d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after leaving: %+v", d)
	}
	if code := gp.heartbeat("raw", j.MemberID, "", j.Generation); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat after leaving: %d", code)
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.ProtocolType = "bad group!", 10000, consumerProtocolType
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
	if jr, err := join.RequestWith(ctx(t), gp.cl); err != nil || jr.ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("join of a bad group id: %+v %v", jr, err)
	}
}

// cgProto sends raw ConsumerGroupHeartbeats for one member.
type cgProto struct {
	t      *testing.T
	cl     *kgo.Client
	group  string
	member string
	regex  string // subscribe by regex instead of to orders
}

// hb heartbeats at epoch, reporting owned (nil: unchanged).
func (p *cgProto) hb(epoch int32, owned []int32) *kmsg.ConsumerGroupHeartbeatResponse {
	p.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.MemberEpoch = p.group, p.member, epoch
	if epoch == 0 && p.regex != "" {
		req.SubscribedTopicRegex = kmsg.StringPtr(p.regex)
		req.RebalanceTimeoutMillis = 5000
	} else if epoch == 0 {
		req.SubscribedTopicNames = []string{"orders"}
		req.RebalanceTimeoutMillis = 5000
	}
	if owned != nil {
		t := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		t.TopicID, t.Partitions = topicID("orders"), owned
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if len(owned) > 0 {
			req.Topics = append(req.Topics, t)
		}
	}
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

// cgAssigned is the response's assignment of orders; nil when it has none.
func cgAssigned(resp *kmsg.ConsumerGroupHeartbeatResponse) []int32 {
	if resp.Assignment == nil {
		return nil
	}
	out := []int32{}
	for _, t := range resp.Assignment.Topics {
		out = append(out, t.Partitions...)
	}
	slices.Sort(out)
	return out
}

// TestGroupKIP848Protocol drives KIP-848 by hand: a member joins and gets
// every partition; a second joins and gets its half only once the first
// reports it revoked; stale epochs are fenced, unknown members refused,
// commits checked against the member epoch; a leave frees the partitions.
func TestGroupKIP848Protocol(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 4)
	groupProduce(t, e.client(t, kgo.DefaultProduceTopic("orders")), 0, 100)
	cl := e.client(t)
	a := &cgProto{t: t, cl: cl, group: "raw848", member: "member-a"}
	b := &cgProto{t: t, cl: cl, group: "raw848", member: "member-b"}

	ra := a.hb(0, []int32{})
	if ra.ErrorCode != 0 || ra.MemberEpoch < 1 || !slices.Equal(cgAssigned(ra), []int32{0, 1, 2, 3}) || ra.HeartbeatIntervalMillis <= 0 {
		t.Fatalf("first member's join: %+v", ra)
	}
	ea := ra.MemberEpoch
	if r := a.hb(ea+5, nil); r.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("heartbeat at a wrong epoch: %+v", r)
	}
	if r := (&cgProto{t: t, cl: cl, group: "raw848", member: "nobody"}).hb(3, nil); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of an unknown member: %+v", r)
	}
	gp := &groupProto{t: t, cl: cl}
	if code := gp.commit("raw848", "member-a", ea+1, 2); code != kerr.StaleMemberEpoch.Code {
		t.Fatalf("commit at a wrong epoch: %d, want STALE_MEMBER_EPOCH", code)
	}
	if code := gp.commit("raw848", "member-a", ea, 2); code != 0 {
		t.Fatalf("commit at the member's epoch: %d", code)
	}

	rb := b.hb(0, []int32{})
	if rb.ErrorCode != 0 || rb.MemberEpoch <= ea || len(cgAssigned(rb)) != 0 {
		t.Fatalf("second member's join, while the first holds everything: %+v", rb)
	}
	eb := rb.MemberEpoch
	ra = a.hb(ea, nil)
	kept := cgAssigned(ra)
	if ra.ErrorCode != 0 || ra.MemberEpoch != ea || len(kept) != 2 {
		t.Fatalf("first member told to revoke half: %+v (kept %v)", ra, kept)
	}
	if r := b.hb(eb, []int32{}); len(cgAssigned(r)) != 0 {
		t.Fatalf("second member got %v before the first let go", cgAssigned(r))
	}
	ra = a.hb(ea, kept)
	if ra.ErrorCode != 0 || ra.MemberEpoch != eb || !slices.Equal(cgAssigned(ra), kept) {
		t.Fatalf("first member after revoking: %+v", ra)
	}
	got := cgAssigned(b.hb(eb, []int32{}))
	if len(got) != 2 || slices.ContainsFunc(got, func(p int32) bool { return slices.Contains(kept, p) }) {
		t.Fatalf("second member got %v, first kept %v", got, kept)
	}
	if l := a.hb(-1, nil); l.ErrorCode != 0 || l.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", l)
	}
	rb = b.hb(eb, got)
	if rb.MemberEpoch <= eb || !slices.Equal(cgAssigned(rb), []int32{0, 1, 2, 3}) {
		t.Fatalf("after the first left: %+v", rb)
	}
	if r := (&cgProto{t: t, cl: cl, group: "bad group!", member: "m"}).hb(0, []int32{}); r.ErrorCode != kerr.InvalidGroupID.Code {
		t.Fatalf("bad group id: %+v", r)
	}
	if r := (&cgProto{t: t, cl: cl, group: "rx", member: "m", regex: "ord.r."}).hb(0, []int32{}); r.ErrorCode != 0 || !slices.Equal(cgAssigned(r), []int32{0, 1, 2, 3}) {
		t.Fatalf("subscribed by regex: %+v", r)
	}
	if r := (&cgProto{t: t, cl: cl, group: "rx", member: "m2", regex: "ord("}).hb(0, []int32{}); r.ErrorCode != kerr.InvalidRegularExpression.Code {
		t.Fatalf("bad regex: %+v", r)
	}
	if got := gp.fetched("raw848"); !slices.Equal(got, []int64{2, 2, 2, 2}) {
		t.Fatalf("OffsetFetch: %v", got)
	}
}

// groupServe serves a broker on dir until the returned stop is called (or
// the test ends): a broker that can be restarted on the same data.
func groupServe(t *testing.T, dir string) (*env, func()) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	b, err := sluice.Open(dir, &sluice.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(b, &Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(c); err != nil {
				t.Error(err)
			}
			<-served
			if err := b.Close(); err != nil {
				t.Errorf("close broker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &env{b: b, s: s, addr: ln.Addr().String()}, stop
}

// TestGroupBrokerRestart: committed offsets are durable; membership is
// not. After a broker restart the group's members rejoin and resume from
// what was committed.
func TestGroupBrokerRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{{"classic", nil}, {"kip848", []kgo.Opt{kip848()}}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const topic, group = "events", "durable"
			e, stop := groupServe(t, dir)
			e.stream(t, topic, 2)
			p := e.client(t, kgo.DefaultProduceTopic(topic))
			groupProduce(t, p, 0, 100)
			first := newGroupCollector()
			a := e.groupMember(t, "a", group, topic, tc.opts...)
			a.start(first)
			groupWait(t, 10*time.Second, first.summary, func() bool { u, _ := first.counts(); return u == 100 })
			var why string
			groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })
			a.close()
			stop()

			e, _ = groupServe(t, dir)
			groupProduce(t, e.client(t, kgo.DefaultProduceTopic(topic)), 100, 120)
			again := newGroupCollector()
			b := e.groupMember(t, "b", group, topic, tc.opts...)
			b.start(again)
			groupWait(t, 10*time.Second, again.summary, func() bool { u, _ := again.counts(); return u == 20 })
			groupWait(t, 10*time.Second, func() string { return why }, func() bool { ok, w := e.groupCaughtUp(topic, group); why = w; return ok })
			if u, total := again.counts(); u != 20 || total != 20 || len(again.missing(100, 120)) != 0 {
				t.Fatalf("after the restart, want the 20 new records once each: %s", again.summary())
			}
		})
	}
}

// groupPrincipal may consume the streams whose names start with prefix.
type groupPrincipal struct{ prefix string }

func (p groupPrincipal) Name() string { return "consumer of " + p.prefix }
func (p groupPrincipal) May(perm, stream string) bool {
	return perm == "consume" && strings.HasPrefix(stream, p.prefix)
}

// TestGroupPermissions: with authentication on, joining, committing and
// fetching offsets need the permission to consume each topic.
func TestGroupPermissions(t *testing.T) {
	const token = "group-reader-token-0123456789"
	e := setup(t, &Options{Authenticate: func(tok string) (Principal, error) {
		if tok != token {
			return nil, errors.New("unknown token")
		}
		return groupPrincipal{prefix: "orders"}, nil
	}})
	e.stream(t, "orders", 1)
	e.stream(t, "secret", 1)
	cl := e.client(t, kgo.SASL(plain.Auth{User: "any", Pass: token}.AsMechanism()))

	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.ProtocolType = "g", 10000, consumerProtocolType
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = []string{"orders", "secret"}
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: md.AppendTo(nil)}}
	if jr, err := join.RequestWith(ctx(t), cl); err != nil || jr.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("joining to consume a topic not permitted: %+v %v", jr, err)
	}

	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group = "g"
	for _, topic := range []string{"orders", "secret"} {
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, topicID(topic)
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rt.Partitions = append(rt.Partitions, rp)
		commit.Topics = append(commit.Topics, rt)
	}
	cr, err := commit.RequestWith(ctx(t), cl)
	if err != nil || cr.Topics[0].Partitions[0].ErrorCode != 0 || cr.Topics[1].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("OffsetCommit: %+v %v", cr, err)
	}

	fetch := kmsg.NewPtrOffsetFetchRequest()
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = "g"
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.TopicID, rt.Partitions = "secret", topicID("secret"), []int32{0}
	rg.Topics = append(rg.Topics, rt)
	fetch.Groups = append(fetch.Groups, rg)
	fr, err := fetch.RequestWith(ctx(t), cl)
	if err != nil || fr.Groups[0].Topics[0].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("OffsetFetch: %+v %v", fr, err)
	}

	hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	hb.Group, hb.MemberID, hb.SubscribedTopicNames = "g848", "m", []string{"secret"}
	hb.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if r, err := hb.RequestWith(ctx(t), cl); err != nil || r.ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("ConsumerGroupHeartbeat subscribing to a topic not permitted: %+v %v", r, err)
	}
}
