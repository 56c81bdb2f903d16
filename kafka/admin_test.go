package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

// long64 is a 64-character name, as clients that name topics and groups
// after a hash make them.
func long64(c byte) string { return strings.Repeat(string(c), 64) }

// TestGroupDeadLetterName: the dead-letter stream of a group's
// subscription is "<topic>.<group>.dlq" when that is a valid stream name,
// and a shortened name (valid, at most MaxStreamNameLen characters, the
// same for the same pair, different for different pairs) otherwise.
func TestGroupDeadLetterName(t *testing.T) {
	if got := groupDeadLetter("orders", "billing"); got != "orders.billing.dlq" {
		t.Fatalf("short names: %q", got)
	}
	a := groupDeadLetter(long64('a'), long64('b'))
	b := groupDeadLetter(long64('a'), long64('c'))
	switch {
	case !validTopic(a) || !validTopic(b):
		t.Fatalf("invalid stream names %q %q", a, b)
	case len(a) > sluice.MaxStreamNameLen:
		t.Fatalf("%d characters", len(a))
	case a == b:
		t.Fatalf("two groups share dead-letter stream %q", a)
	case a != groupDeadLetter(long64('a'), long64('b')):
		t.Fatal("not deterministic")
	case !strings.HasSuffix(a, sluice.DeadLetterSuffix) || !strings.HasPrefix(a, long64('a')+"."):
		t.Fatalf("shortened name %q does not keep the topic and the suffix", a)
	}
}

// TestGroupLongNames: a consumer group and a share group whose names and
// topic's are 64 characters each (too long together for the default
// dead-letter stream name) commit offsets and consume: their subscriptions
// get the shortened dead-letter stream instead of INVALID_GROUP_ID.
func TestGroupLongNames(t *testing.T) {
	e := setup(t, nil)
	topic := long64('t')
	e.stream(t, topic, 2)
	cl := e.client(t)

	group := long64('g')
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID(topic)
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	info, err := e.b.Subscription(context.Background(), topic, group)
	if err != nil {
		t.Fatal(err)
	}
	if want := groupDeadLetter(topic, group); info.Config.DeadLetterStream != want {
		t.Fatalf("dead-letter stream %q, want %q", info.Config.DeadLetterStream, want)
	}

	share := long64('s')
	e.shareProduce(t, topic, 2, "a", "b")
	sc := e.client(t, kgo.ShareGroup(share), kgo.ConsumeTopics(topic))
	got := 0
	for got < 2 {
		got += len(pollShare(t, sc))
	}
	if info, err := e.b.Subscription(context.Background(), topic, share); err != nil || info.Config.DeadLetterStream != groupDeadLetter(topic, share) {
		t.Fatalf("share subscription %+v, %v", info.Config, err)
	}
}

// alterGroupConfigs sends one IncrementalAlterConfigs of a group resource
// and returns its error code.
func alterGroupConfigs(t *testing.T, cl *kgo.Client, group string, op kmsg.IncrementalAlterConfigOp, kvs ...string) int16 {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	for i := 0; i < len(kvs); i += 2 {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = kvs[i], op, kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Resources[0].ErrorCode
}

// describeGroupConfigs returns a group's configs and whether each is set.
func describeGroupConfigs(t *testing.T, cl *kgo.Client, group string) (map[string]string, map[string]bool) {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Resources[0].ErrorCode; code != 0 {
		t.Fatalf("describe: %v", kerr.ErrorForCode(code))
	}
	vals, set := map[string]string{}, map[string]bool{}
	for _, c := range resp.Resources[0].Configs {
		vals[c.Name], set[c.Name] = *c.Value, c.Source == kmsg.ConfigSourceGroupConfig
	}
	return vals, set
}

// TestShareGroupConfigs: IncrementalAlterConfigs on the GROUP resource sets
// share.auto.offset.reset, share.record.lock.duration.ms and
// share.delivery.count.limit; DescribeConfigs reports them (and the
// defaults of a group never configured); the subscription the group then
// creates starts at the latest offset with that lease and delivery limit.
// Bad values, list operations, fixed configs and topic resources are
// refused, all or nothing; DELETE reverts to the default.
func TestShareGroupConfigs(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "jobs", 1)
	e.shareProduce(t, "jobs", 1, "old")
	cl := e.client(t)

	vals, set := describeGroupConfigs(t, cl, "g")
	if vals[cfgShareAutoOffsetReset] != "earliest" || vals[cfgShareLockDuration] != "30000" || vals[cfgShareDeliveryLimit] != "5" || set[cfgShareLockDuration] {
		t.Fatalf("defaults: %v %v", vals, set)
	}
	for _, bad := range [][2]string{
		{cfgShareAutoOffsetReset, "by_duration:PT1H"},
		{cfgShareLockDuration, "10"},
		{cfgShareDeliveryLimit, "11"},
		{cfgShareSessionTimeout, "1000"},
		{"consumer.session.timeout.ms", "10000"},
	} {
		if code := alterGroupConfigs(t, cl, "g", kmsg.IncrementalAlterConfigOpSet, cfgShareDeliveryLimit, "3", bad[0], bad[1]); code != kerr.InvalidConfig.Code {
			t.Fatalf("%s=%s: %v", bad[0], bad[1], kerr.ErrorForCode(code))
		}
	}
	if code := alterGroupConfigs(t, cl, "g", kmsg.IncrementalAlterConfigOpAppend, cfgShareDeliveryLimit, "3"); code != kerr.InvalidConfig.Code {
		t.Fatalf("APPEND: %v", kerr.ErrorForCode(code))
	}
	if _, set := describeGroupConfigs(t, cl, "g"); set[cfgShareDeliveryLimit] {
		t.Fatal("a refused request changed the configs")
	}
	if code := alterGroupConfigs(t, cl, "bad group", kmsg.IncrementalAlterConfigOpSet, cfgShareDeliveryLimit, "3"); code != kerr.InvalidGroupID.Code {
		t.Fatalf("bad group id: %v", kerr.ErrorForCode(code))
	}
	topicReq := kmsg.NewPtrIncrementalAlterConfigsRequest()
	tres := kmsg.NewIncrementalAlterConfigsRequestResource()
	tres.ResourceType, tres.ResourceName = kmsg.ConfigResourceTypeTopic, "jobs"
	topicReq.Resources = append(topicReq.Resources, tres)
	if resp, err := topicReq.RequestWith(ctx(t), cl); err != nil || resp.Resources[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("topic resource: %+v %v", resp, err)
	}

	if code := alterGroupConfigs(t, cl, "g", kmsg.IncrementalAlterConfigOpSet,
		cfgShareAutoOffsetReset, "latest", cfgShareLockDuration, "15000", cfgShareDeliveryLimit, "3"); code != 0 {
		t.Fatalf("set: %v", kerr.ErrorForCode(code))
	}
	vals, set = describeGroupConfigs(t, cl, "g")
	if vals[cfgShareAutoOffsetReset] != "latest" || vals[cfgShareLockDuration] != "15000" || vals[cfgShareDeliveryLimit] != "3" ||
		!set[cfgShareAutoOffsetReset] || set[cfgShareSessionTimeout] {
		t.Fatalf("after set: %v %v", vals, set)
	}

	p := &shareProto{t: t, cl: cl, id: newShareMemberID()}
	if hb := p.heartbeat(0, []string{"jobs"}); hb.ErrorCode != 0 {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(hb.ErrorCode))
	}
	info, err := e.b.Subscription(context.Background(), "jobs", "g")
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; !c.StartLatest || c.Lease != 15*time.Second || c.MaxDeliveries != 3 {
		t.Fatalf("subscription made with %+v", c)
	}
	if info.Backlog != 0 {
		t.Fatalf("latest: backlog %d, want the record stored before to be skipped", info.Backlog)
	}

	if code := alterGroupConfigs(t, cl, "g", kmsg.IncrementalAlterConfigOpDelete, cfgShareAutoOffsetReset, ""); code != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(code))
	}
	if vals, set := describeGroupConfigs(t, cl, "g"); vals[cfgShareAutoOffsetReset] != "earliest" || set[cfgShareAutoOffsetReset] || vals[cfgShareDeliveryLimit] != "3" {
		t.Fatalf("after delete: %v %v", vals, set)
	}
}

// describeShareOffsets returns the start offset and lag of topic's
// partition 0 for group g; all sends no topics (every topic of the group).
func describeShareOffsets(t *testing.T, cl *kgo.Client, topic string, all bool) (code int16, start, lag int64) {
	t.Helper()
	req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	rg := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
	rg.GroupID = "g"
	if !all {
		rt := kmsg.NewDescribeShareGroupOffsetsRequestGroupTopic()
		rt.Topic, rt.Partitions = topic, []int32{0}
		rg.Topics = append(rg.Topics, rt)
	}
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	g := resp.Groups[0]
	if g.ErrorCode != 0 {
		return g.ErrorCode, 0, 0
	}
	for _, rt := range g.Topics {
		if rt.Topic == topic && len(rt.Partitions) > 0 {
			p := rt.Partitions[0]
			return p.ErrorCode, p.StartOffset, p.Lag
		}
	}
	t.Fatalf("topic %s not described: %+v", topic, g.Topics)
	return 0, 0, 0
}

// alterShareOffset sets group g's start offset of topic's partition 0 and
// returns the group's and the partition's error codes.
func alterShareOffset(t *testing.T, cl *kgo.Client, topic string, off int64) (int16, int16) {
	t.Helper()
	req := kmsg.NewPtrAlterShareGroupOffsetsRequest()
	req.GroupID = "g"
	rt := kmsg.NewAlterShareGroupOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewAlterShareGroupOffsetsRequestTopicPartition()
	rp.StartOffset = off
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 {
		return resp.ErrorCode, 0
	}
	return 0, resp.Topics[0].Partitions[0].ErrorCode
}

// TestShareGroupOffsets: AlterShareGroupOffsets creates the empty share
// group's subscription and moves it; DescribeShareGroupOffsets answers the
// start offset and lag (for a topic named and for all the group's topics);
// DeleteShareGroupOffsets deletes the subscription, after which the topic
// answers -1 and the group is not found. A group with members cannot be
// altered or deleted; a consumer group's partitioned subscription is not a
// share group's.
func TestShareGroupOffsets(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "jobs", 1)
	e.stream(t, "orders", 4)
	vals := make([]string, 20)
	for i := range vals {
		vals[i] = "v"
	}
	e.shareProduce(t, "jobs", 1, vals...)
	cl := e.client(t)

	if code, _, _ := describeShareOffsets(t, cl, "jobs", true); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe before: %v", kerr.ErrorForCode(code))
	}
	if code, start, _ := describeShareOffsets(t, cl, "jobs", false); code != 0 || start != -1 {
		t.Fatalf("describe a topic before: %v %d", kerr.ErrorForCode(code), start)
	}
	if g, p := alterShareOffset(t, cl, "jobs", 8); g != 0 || p != 0 {
		t.Fatalf("alter: %v %v", kerr.ErrorForCode(g), kerr.ErrorForCode(p))
	}
	for _, all := range []bool{false, true} {
		if code, start, lag := describeShareOffsets(t, cl, "jobs", all); code != 0 || start != 8 || lag != 12 {
			t.Fatalf("describe (all %v): %v start %d lag %d", all, kerr.ErrorForCode(code), start, lag)
		}
	}
	if _, p := alterShareOffset(t, cl, "jobs", -1); p != kerr.InvalidRequest.Code {
		t.Fatalf("negative offset: %v", kerr.ErrorForCode(p))
	}
	if _, p := alterShareOffset(t, cl, "missing", 1); p != errUnknownTopic {
		t.Fatalf("missing topic: %v", kerr.ErrorForCode(p))
	}
	// The consumer group g's offsets on orders are not the share group's.
	(&groupProto{t: t, cl: cl}).commit("g", "", -1, 0)
	if _, p := alterShareOffset(t, cl, "orders", 1); p != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("partitioned subscription: %v", kerr.ErrorForCode(p))
	}

	m := &shareProto{t: t, cl: cl, id: newShareMemberID()}
	if hb := m.heartbeat(0, []string{"jobs"}); hb.ErrorCode != 0 {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(hb.ErrorCode))
	}
	if g, _ := alterShareOffset(t, cl, "jobs", 0); g != kerr.NonEmptyGroup.Code {
		t.Fatalf("alter with a member: %v", kerr.ErrorForCode(g))
	}
	if hb := m.heartbeat(-1, nil); hb.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(hb.ErrorCode))
	}

	del := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
	del.GroupID = "g"
	for _, topic := range []string{"jobs", "orders"} {
		rt := kmsg.NewDeleteShareGroupOffsetsRequestTopic()
		rt.Topic = topic
		del.Topics = append(del.Topics, rt)
	}
	resp, err := del.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 || resp.Topics[0].ErrorCode != 0 || resp.Topics[1].ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("delete: %+v", resp)
	}
	if _, err := e.b.Subscription(context.Background(), "jobs", "g"); !errors.Is(err, sluice.ErrSubscriptionNotFound) {
		t.Fatalf("subscription after delete: %v", err)
	}
	if _, err := e.b.Subscription(context.Background(), "orders", "g"); err != nil {
		t.Fatalf("the consumer group's subscription went too: %v", err)
	}
	if _, err := e.b.Stream(context.Background(), "jobs.g.dlq"); !errors.Is(err, sluice.ErrStreamNotFound) {
		t.Fatalf("empty dead-letter stream kept: %v", err)
	}
	if code, start, _ := describeShareOffsets(t, cl, "jobs", false); code != 0 || start != -1 {
		t.Fatalf("describe after delete: %v %d", kerr.ErrorForCode(code), start)
	}
}

// deleteGroup sends DeleteGroups for one group and returns its error code.
func deleteGroup(t *testing.T, cl *kgo.Client, group string) int16 {
	t.Helper()
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Groups[0].ErrorCode
}

// TestDeleteGroups: DeleteGroups deletes a consumer group's partitioned
// subscriptions and a share group's queue subscriptions and configs, with
// their dead-letter streams when empty; a dead-letter stream holding
// records is kept. A group with members gets NON_EMPTY_GROUP, an unknown
// group GROUP_ID_NOT_FOUND, a bad id INVALID_GROUP_ID; a subscription of
// the name that no Kafka group can use (at most once) stays.
func TestDeleteGroups(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 4)
	e.stream(t, "jobs", 1)
	e.stream(t, "audit", 1)
	cl := e.client(t)
	bg := context.Background()

	if code := (&groupProto{t: t, cl: cl}).commit("c", "", -1, 0); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	if _, err := e.b.CreateSubscription(bg, "audit", sluice.SubscriptionConfig{Name: "c", Delivery: sluice.AtMostOnce}); err != nil {
		t.Fatal(err)
	}
	if code := deleteGroup(t, cl, "c"); code != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(code))
	}
	if _, err := e.b.Subscription(bg, "orders", "c"); !errors.Is(err, sluice.ErrSubscriptionNotFound) {
		t.Fatalf("consumer group's subscription: %v", err)
	}
	if _, err := e.b.Stream(bg, "orders.c.dlq"); !errors.Is(err, sluice.ErrStreamNotFound) {
		t.Fatalf("empty dead-letter stream: %v", err)
	}
	if _, err := e.b.Subscription(bg, "audit", "c"); err != nil {
		t.Fatalf("at-most-once subscription deleted: %v", err)
	}
	if code := deleteGroup(t, cl, "c"); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete again: %v", kerr.ErrorForCode(code))
	}
	if code := deleteGroup(t, cl, "bad group"); code != kerr.InvalidGroupID.Code {
		t.Fatalf("bad id: %v", kerr.ErrorForCode(code))
	}

	// A share group with a member, a dead letter and configs.
	if code := alterGroupConfigs(t, cl, "g", kmsg.IncrementalAlterConfigOpSet, cfgShareDeliveryLimit, "2"); code != 0 {
		t.Fatalf("config: %v", kerr.ErrorForCode(code))
	}
	e.shareProduce(t, "jobs", 1, "bad")
	m := &shareProto{t: t, cl: cl, id: newShareMemberID()}
	if hb := m.heartbeat(0, []string{"jobs"}); hb.ErrorCode != 0 {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(hb.ErrorCode))
	}
	m.fetch("jobs", 1, time.Second)
	if top, part := m.ack(m.epoch, "jobs", 0, 0, 0, 3); top != 0 || part != 0 { // reject
		t.Fatalf("reject: %v %v", kerr.ErrorForCode(top), kerr.ErrorForCode(part))
	}
	if code := deleteGroup(t, cl, "g"); code != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete with a member: %v", kerr.ErrorForCode(code))
	}
	if hb := m.heartbeat(-1, nil); hb.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(hb.ErrorCode))
	}
	if code := deleteGroup(t, cl, "g"); code != 0 {
		t.Fatalf("delete share group: %v", kerr.ErrorForCode(code))
	}
	if _, err := e.b.Subscription(bg, "jobs", "g"); !errors.Is(err, sluice.ErrSubscriptionNotFound) {
		t.Fatalf("share group's subscription: %v", err)
	}
	if st, err := e.b.Stream(bg, "jobs.g.dlq"); err != nil || st.Messages != 1 {
		t.Fatalf("dead-letter stream with a record: %+v %v", st, err)
	}
	if _, set := describeGroupConfigs(t, cl, "g"); set[cfgShareDeliveryLimit] {
		t.Fatal("configs kept after DeleteGroups")
	}
}

// TestOffsetDelete: OffsetDelete of some partitions moves the group's
// subscription there back to the log start; of every partition, deletes
// it (OffsetFetch answers -1). A topic the live group consumes gets
// GROUP_SUBSCRIBED_TO_TOPIC, an unknown group GROUP_ID_NOT_FOUND.
func TestOffsetDelete(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 4)
	cl := e.client(t)
	p := &groupProto{t: t, cl: cl}
	for i := range 40 {
		part := i % 4
		if _, err := e.b.Publish(context.Background(), "orders", sluice.Message{Body: []byte("x"), Partition: &part}); err != nil {
			t.Fatal(err)
		}
	}
	if code := p.commit("c", "", -1, 7); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	offsetDelete := func(group string, parts ...int32) *kmsg.OffsetDeleteResponse {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = "orders"
		for _, n := range parts {
			rp := kmsg.NewOffsetDeleteRequestTopicPartition()
			rp.Partition = n
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := offsetDelete("unknown", 0); resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	resp := offsetDelete("c", 1, 9)
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 || resp.Topics[0].Partitions[1].ErrorCode != errUnknownTopic {
		t.Fatalf("delete partition 1: %+v", resp)
	}
	if got := p.fetched("c"); got[0] != 7 || got[1] != 0 || got[2] != 7 || got[3] != 7 {
		t.Fatalf("after deleting partition 1: %v", got)
	}
	if resp := offsetDelete("c", 0, 1, 2, 3); resp.ErrorCode != 0 || resp.Topics[0].Partitions[3].ErrorCode != 0 {
		t.Fatalf("delete all: %+v", resp)
	}
	if got := p.fetched("c"); got[0] != -1 || got[3] != -1 {
		t.Fatalf("after deleting every partition: %v", got)
	}

	// A live KIP-848 group consuming orders.
	m := e.groupMember(t, "m", "live", "orders", kip848())
	m.start(newGroupCollector())
	groupWait(t, 10*time.Second, func() string { return "member assigned" }, func() bool { return len(m.ownedNow()) == 4 })
	if resp := offsetDelete("live", 0); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("live group: %+v", resp)
	}
}

// TestShareGroupRenewLock: renewing an acquired record restarts its lock
// for the group's share.record.lock.duration.ms (the subscription's
// Lease), not for the default ShareLockDuration.
func TestShareGroupRenewLock(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "jobs", 1)
	e.shareProduce(t, "jobs", 1, "a")
	cl := e.client(t)
	if code := alterGroupConfigs(t, cl, "g", kmsg.IncrementalAlterConfigOpSet, cfgShareLockDuration, "2000"); code != 0 {
		t.Fatalf("config: %v", kerr.ErrorForCode(code))
	}
	m := &shareProto{t: t, cl: cl, id: newShareMemberID(), renew: true}
	if hb := m.heartbeat(0, []string{"jobs"}); hb.ErrorCode != 0 {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(hb.ErrorCode))
	}
	if resp := m.fetch("jobs", 1, time.Second); resp.AcquisitionLockTimeoutMillis > 2000 {
		t.Fatalf("lock of %d ms answered, want at most 2000", resp.AcquisitionLockTimeoutMillis)
	}
	if top, code := m.ack(m.epoch, "jobs", 0, 0, 0, ackRenew); top != 0 || code != 0 {
		t.Fatalf("renew: %v %v", kerr.ErrorForCode(top), kerr.ErrorForCode(code))
	}
	e.s.shares.mu.Lock()
	deadline := e.s.shares.groups["g"].members[m.id].held[heldKey{"jobs", 0, 0}].d.Deadline
	e.s.shares.mu.Unlock()
	if left := time.Until(deadline); left > 2*time.Second {
		t.Fatalf("renewed for %v, want the group's 2s lock", left)
	}
}

// TestDescribeTopicCompression: a topic's compression.type is
// "uncompressed": a producer's compressed batches are stored and fetched
// uncompressed, which "producer" (keeping the producer's codec) would
// misstate.
func TestDescribeTopicCompression(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 1)
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType, res.ResourceName, res.ConfigNames = kmsg.ConfigResourceTypeTopic, "orders", []string{"compression.type"}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if cs := resp.Resources[0].Configs; len(cs) != 1 || *cs[0].Value != "uncompressed" {
		t.Fatalf("%+v", cs)
	}
}
