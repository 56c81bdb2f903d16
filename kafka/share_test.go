package kafka

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/batch"
)

// shareWait polls cond until it holds, failing the test after a deadline.
func shareWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not an assertion
	}
}

// shareConsumer is a kgo share consumer of group g on topic.
func (e *env) shareConsumer(t *testing.T, topic string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return e.client(t, append([]kgo.Opt{kgo.ShareGroup("g"), kgo.ConsumeTopics(topic)}, opts...)...)
}

// shareProduce writes values to topic, the i-th to partition i%partitions.
func (e *env) shareProduce(t *testing.T, topic string, partitions int, values ...string) {
	t.Helper()
	for i, v := range values {
		p := i % partitions
		if _, err := e.b.Publish(context.Background(), topic, sluice.Message{Body: []byte(v), Partition: &p}); err != nil {
			t.Fatal(err)
		}
	}
}

// pollShare polls cl until it returns records, failing on fetch errors.
func pollShare(t *testing.T, cl *kgo.Client) []*kgo.Record {
	t.Helper()
	c := ctx(t)
	for {
		fs := cl.PollFetches(c)
		if err := c.Err(); err != nil {
			t.Fatalf("no records: %v", err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		if rs := fs.Records(); len(rs) > 0 {
			return rs
		}
	}
}

// shareBacklog is the subscription's backlog.
func (e *env) shareBacklog(t *testing.T, topic string) int64 {
	t.Helper()
	info, err := e.b.Subscription(context.Background(), topic, "g")
	if err != nil {
		t.Fatal(err)
	}
	return info.Backlog
}

// shareDeadLetters are the subscription's dead letters.
func (e *env) shareDeadLetters(t *testing.T, topic string) []sluice.DeadLetter {
	t.Helper()
	dls, _, err := e.b.DeadLetters(context.Background(), topic, "g", sluice.DeadLetterQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

// TestShareGroupTwoConsumers: two kgo share consumers of one group on a
// 2-partition topic split the records between them; each record is
// delivered, and accepted, exactly once; the subscription's backlog then
// drains to 0.
func TestShareGroupTwoConsumers(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "jobs", 2)
	clients := map[string]*kgo.Client{
		"a": e.shareConsumer(t, "jobs", kgo.ShareMaxRecords(10)),
		"b": e.shareConsumer(t, "jobs", kgo.ShareMaxRecords(10)),
	}
	admin := e.client(t)
	shareWait(t, "two members", func() bool {
		req := kmsg.NewPtrShareGroupDescribeRequest()
		req.GroupIDs = []string{"g"}
		resp, err := req.RequestWith(ctx(t), admin)
		return err == nil && len(resp.Groups) == 1 && resp.Groups[0].ErrorCode == 0 && len(resp.Groups[0].Members) == 2
	})

	const n = 300
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("job %d", i)
	}
	e.shareProduce(t, "jobs", 2, values...)

	var (
		mu    sync.Mutex
		seen  = map[string]int{}
		by    = map[string]int{}
		done  = make(chan struct{})
		fails []string
	)
	cctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	var wg sync.WaitGroup
	for name, cl := range clients {
		wg.Go(func() {
			for cctx.Err() == nil {
				fs := cl.PollFetches(cctx)
				rs := fs.Records()
				cl.MarkAcks(kgo.AckAccept, rs...)
				if err := cl.FlushAcks(cctx); err != nil {
					return
				}
				mu.Lock()
				for _, r := range rs {
					seen[string(r.Value)]++
					by[name]++
					if seen[string(r.Value)] > 1 || r.DeliveryCount() != 1 {
						fails = append(fails, fmt.Sprintf("%s got %q at %d/%d, delivery %d, seen %d times", name, r.Value, r.Partition, r.Offset, r.DeliveryCount(), seen[string(r.Value)]))
					}
				}
				if len(seen) == n && done != nil {
					close(done)
					done = nil
				}
				mu.Unlock()
			}
		})
	}
	mu.Lock()
	wait := done
	mu.Unlock()
	select {
	case <-wait:
	case <-cctx.Done():
		cancel()
		wg.Wait()
		t.Fatalf("%d of %d records consumed", len(seen), n)
	}
	shareWait(t, "the backlog to drain", func() bool { return e.shareBacklog(t, "jobs") == 0 })
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(fails) > 0 {
		t.Fatalf("records delivered more than once:\n%s", strings.Join(fails, "\n"))
	}
	if by["a"] == 0 || by["b"] == 0 || by["a"]+by["b"] != n {
		t.Fatalf("consumer a got %d records, b %d: want both some, %d in all", by["a"], by["b"], n)
	}
	if dls := e.shareDeadLetters(t, "jobs"); len(dls) != 0 {
		t.Fatalf("%d dead letters", len(dls))
	}
}

// TestShareGroupRelease: a released record comes again, its delivery count
// 2, and is then accepted.
func TestShareGroupRelease(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "mail", 1)
	e.shareProduce(t, "mail", 1, "hello")
	cl := e.shareConsumer(t, "mail")
	rs := pollShare(t, cl)
	if len(rs) != 1 || string(rs[0].Value) != "hello" || rs[0].DeliveryCount() != 1 {
		t.Fatalf("first poll: %d records, delivery count %d", len(rs), rs[0].DeliveryCount())
	}
	cl.MarkAcks(kgo.AckRelease, rs[0])
	if err := cl.FlushAcks(ctx(t)); err != nil {
		t.Fatal(err)
	}
	again := pollShare(t, cl)
	if len(again) != 1 || again[0].Offset != rs[0].Offset || again[0].DeliveryCount() != 2 {
		t.Fatalf("after the release: %d records, offset %d, delivery count %d; want offset %d, delivery count 2", len(again), again[0].Offset, again[0].DeliveryCount(), rs[0].Offset)
	}
	cl.MarkAcks(kgo.AckAccept, again[0])
	if err := cl.FlushAcks(ctx(t)); err != nil {
		t.Fatal(err)
	}
	shareWait(t, "the backlog to drain", func() bool { return e.shareBacklog(t, "mail") == 0 })
	if dls := e.shareDeadLetters(t, "mail"); len(dls) != 0 {
		t.Fatalf("%d dead letters", len(dls))
	}
}

// TestShareGroupReject: a rejected record goes to the dead-letter stream,
// with the share group named in its history.
func TestShareGroupReject(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "orders", 1)
	e.shareProduce(t, "orders", 1, "poison")
	cl := e.shareConsumer(t, "orders")
	rs := pollShare(t, cl)
	cl.MarkAcks(kgo.AckReject, rs...)
	if err := cl.FlushAcks(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var dls []sluice.DeadLetter
	shareWait(t, "the dead letter", func() bool { dls = e.shareDeadLetters(t, "orders"); return len(dls) > 0 })
	dl := dls[0]
	if len(dls) != 1 || string(dl.Message.Body) != "poison" || dl.Reason == "" || len(dl.Attempts) == 0 ||
		!strings.Contains(dl.Attempts[len(dl.Attempts)-1].Error, `share group "g"`) {
		t.Fatalf("dead letters %+v", dls)
	}
	if b := e.shareBacklog(t, "orders"); b != 0 {
		t.Fatalf("backlog %d", b)
	}
}

// TestShareGroupDeliveryLimit: a record released ShareDeliveryLimit times
// is dead-lettered by the subscription's MaxDeliveries.
func TestShareGroupDeliveryLimit(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "flaky", 1)
	e.shareProduce(t, "flaky", 1, "again and again")
	cl := e.shareConsumer(t, "flaky")
	for i := 1; i <= ShareDeliveryLimit; i++ {
		rs := pollShare(t, cl)
		if len(rs) != 1 || rs[0].DeliveryCount() != int32(i) {
			t.Fatalf("poll %d: %d records, delivery count %d", i, len(rs), rs[0].DeliveryCount())
		}
		cl.MarkAcks(kgo.AckRelease, rs...)
		if err := cl.FlushAcks(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	var dls []sluice.DeadLetter
	shareWait(t, "the dead letter", func() bool { dls = e.shareDeadLetters(t, "flaky"); return len(dls) > 0 })
	if len(dls) != 1 || dls[0].Deliveries != ShareDeliveryLimit || !strings.Contains(dls[0].Reason, "delivery limit") {
		t.Fatalf("dead letters %+v", dls)
	}
	if b := e.shareBacklog(t, "flaky"); b != 0 {
		t.Fatalf("backlog %d", b)
	}
}

// shareProto sends raw share group requests as member id of group "g".
type shareProto struct {
	t     *testing.T
	cl    *kgo.Client
	id    string
	epoch int32 // the share session's next epoch
	renew bool  // ShareAcknowledge's IsRenewAck
}

func (p *shareProto) heartbeat(epoch int32, topics []string) *kmsg.ShareGroupHeartbeatResponse {
	p.t.Helper()
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch, req.SubscribedTopicNames = "g", p.id, epoch, topics
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

// fetch sends a ShareFetch of topic's partitions 0..n-1 at the session's
// epoch (and moves it on).
func (p *shareProto) fetch(topic string, n int32, wait time.Duration) *kmsg.ShareFetchResponse {
	p.t.Helper()
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID, req.ShareSessionEpoch = kmsg.StringPtr("g"), &p.id, p.epoch
	req.MaxWaitMillis, req.MinBytes, req.MaxRecords = int32(wait/time.Millisecond), 1, 100
	rt := kmsg.NewShareFetchRequestTopic()
	rt.TopicID = topicID(topic)
	for i := range n {
		rp := kmsg.NewShareFetchRequestTopicPartition()
		rp.Partition = i
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	if resp.ErrorCode == 0 {
		p.epoch = nextEpoch(p.epoch)
	}
	return resp
}

// ack sends a ShareAcknowledge of one range at epoch and returns the
// top-level and partition error codes.
func (p *shareProto) ack(epoch int32, topic string, partition int32, first, last int64, typ int8) (int16, int16) {
	p.t.Helper()
	req := kmsg.NewPtrShareAcknowledgeRequest()
	req.GroupID, req.MemberID, req.ShareSessionEpoch, req.IsRenewAck = kmsg.StringPtr("g"), &p.id, epoch, p.renew
	rt := kmsg.NewShareAcknowledgeRequestTopic()
	rt.TopicID = topicID(topic)
	rp := kmsg.NewShareAcknowledgeRequestTopicPartition()
	rp.Partition = partition
	b := kmsg.NewShareAcknowledgeRequestTopicPartitionAcknowledgementBatch()
	b.FirstOffset, b.LastOffset, b.AcknowledgeTypes = first, last, []int8{typ}
	rp.AcknowledgementBatches = append(rp.AcknowledgementBatches, b)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx(p.t), p.cl)
	if err != nil {
		p.t.Fatal(err)
	}
	if resp.ErrorCode != 0 {
		return resp.ErrorCode, 0
	}
	if epoch > 0 {
		p.epoch = nextEpoch(epoch)
	}
	return 0, resp.Topics[0].Partitions[0].ErrorCode
}

// shareAcquired returns the offsets and values of a ShareFetch answer's
// partition, checking that its acquired ranges cover exactly its records.
func shareAcquired(t *testing.T, p *kmsg.ShareFetchResponseTopicPartition) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	if err := batch.Each(p.Records, func(r *batch.Record) bool {
		out[r.Offset] = string(r.Value)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ar := range p.AcquiredRecords {
		for off := ar.FirstOffset; off <= ar.LastOffset; off++ {
			if _, ok := out[off]; !ok {
				t.Fatalf("acquired offset %d without its record", off)
			}
			n++
		}
	}
	if n != len(out) {
		t.Fatalf("%d records, %d acquired", len(out), n)
	}
	return out
}

// TestShareGroupProtocol drives the share APIs with raw requests:
// assignment by topic id, acquired ranges and batches, acknowledgements,
// session epochs, INVALID_RECORD_STATE for a settled record and for one
// whose lock expired, a member leaving, and the member limit.
func TestShareGroupProtocol(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "tasks", 2)
	// A short lease lets a lock expire within the test.
	if _, err := e.b.CreateSubscription(context.Background(), "tasks", sluice.SubscriptionConfig{Name: "g", Lease: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t)
	m1 := &shareProto{t: t, cl: cl, id: "member-1"}
	hb := m1.heartbeat(0, []string{"tasks", "missing"})
	if hb.ErrorCode != 0 || hb.MemberEpoch <= 0 || hb.Assignment == nil || len(hb.Assignment.TopicPartitions) != 1 ||
		hb.Assignment.TopicPartitions[0].TopicID != topicID("tasks") || fmt.Sprint(hb.Assignment.TopicPartitions[0].Partitions) != "[0 1]" {
		t.Fatalf("join: %+v", hb)
	}
	if again := m1.heartbeat(hb.MemberEpoch, nil); again.ErrorCode != 0 || again.MemberEpoch != hb.MemberEpoch || again.Assignment != nil {
		t.Fatalf("heartbeat: %+v", again)
	}
	if fenced := m1.heartbeat(hb.MemberEpoch+5, nil); fenced.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Fatalf("heartbeat ahead of the group: %+v", fenced)
	}

	e.shareProduce(t, "tasks", 2, "t0", "t1", "t2", "t3")
	got := map[int32]map[int64]string{}
	for len(got[0])+len(got[1]) < 4 {
		resp := m1.fetch("tasks", 2, 5*time.Second)
		if resp.ErrorCode != 0 || len(resp.Topics) > 0 && (resp.AcquisitionLockTimeoutMillis <= 0 || resp.AcquisitionLockTimeoutMillis > 300) {
			t.Fatalf("ShareFetch (the lock is the subscription's lease, 300 ms): %+v", resp)
		}
		for _, rt := range resp.Topics {
			for i := range rt.Partitions {
				p := &rt.Partitions[i]
				if p.ErrorCode != 0 || p.CurrentLeader.LeaderID != -1 {
					t.Fatalf("partition %+v", p)
				}
				for _, ar := range p.AcquiredRecords {
					if ar.DeliveryCount != 1 {
						t.Fatalf("delivery count %d", ar.DeliveryCount)
					}
				}
				if got[p.Partition] == nil {
					got[p.Partition] = map[int64]string{}
				}
				for off, v := range shareAcquired(t, p) {
					got[p.Partition][off] = v
				}
			}
		}
	}
	if fmt.Sprint(got) != "map[0:map[0:t0 1:t2] 1:map[0:t1 1:t3]]" {
		t.Fatalf("acquired %v", got)
	}
	// Accept partition 0 before the locks expire (300 ms), and once more.
	if top, code := m1.ack(m1.epoch, "tasks", 0, 0, 1, ackAccept); top != 0 || code != 0 {
		t.Fatalf("accept: %d/%d", top, code)
	}
	if top, code := m1.ack(m1.epoch, "tasks", 0, 0, 1, ackAccept); top != 0 || code != kerr.InvalidRecordState.Code {
		t.Fatalf("accepting again: %d/%d, want INVALID_RECORD_STATE", top, code)
	}
	if top, _ := m1.ack(m1.epoch+7, "tasks", 0, 0, 1, ackAccept); top != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("a wrong session epoch: %d, want INVALID_SHARE_SESSION_EPOCH", top)
	}

	// Partition 1's locks expire: a second member acquires its records
	// (delivery 2), and the first one's accept is stale.
	m2 := &shareProto{t: t, cl: cl, id: "member-2"}
	if hb := m2.heartbeat(0, []string{"tasks"}); hb.ErrorCode != 0 {
		t.Fatalf("join: %+v", hb)
	}
	redelivered := map[int64]int16{}
	for len(redelivered) < 2 {
		resp := m2.fetch("tasks", 2, 5*time.Second)
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				for _, ar := range p.AcquiredRecords {
					for off := ar.FirstOffset; off <= ar.LastOffset; off++ {
						if p.Partition != 1 {
							t.Fatalf("partition %d offset %d redelivered after its accept", p.Partition, off)
						}
						redelivered[off] = ar.DeliveryCount
					}
				}
			}
		}
	}
	if fmt.Sprint(redelivered) != "map[0:2 1:2]" {
		t.Fatalf("redelivered (offset: delivery count) %v", redelivered)
	}
	if top, code := m1.ack(m1.epoch, "tasks", 1, 0, 1, ackAccept); top != 0 || code != kerr.InvalidRecordState.Code {
		t.Fatalf("accepting after the lock expired: %d/%d, want INVALID_RECORD_STATE", top, code)
	}

	// m2 leaves holding partition 1's records: they are released at once.
	if left := m2.heartbeat(-1, nil); left.ErrorCode != 0 || left.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", left)
	}
	if gone := m2.heartbeat(1, nil); gone.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat after leaving: %+v", gone)
	}
	shareWait(t, "the released records", func() bool {
		info, err := e.b.Subscription(context.Background(), "tasks", "g")
		return err == nil && info.InFlight == 0 && info.Backlog == 2
	})

	// The member limit.
	for i := 1; i < MaxShareGroupMembers; i++ { // m1 is one
		p := &shareProto{t: t, cl: cl, id: fmt.Sprintf("filler-%d", i)}
		if hb := p.heartbeat(0, []string{}); hb.ErrorCode != 0 {
			t.Fatalf("member %d: %+v", i, hb)
		}
	}
	over := (&shareProto{t: t, cl: cl, id: "one-too-many"}).heartbeat(0, []string{})
	if over.ErrorCode != kerr.GroupMaxSizeReached.Code || over.ErrorMessage == nil || !strings.Contains(*over.ErrorMessage, "MaxShareGroupMembers") {
		t.Fatalf("past the limit: %+v", over)
	}
}

// TestShareGroupSessionExpiry: a member that stops heartbeating leaves
// after the session timeout, and the records it held go to another member.
func TestShareGroupSessionExpiry(t *testing.T) {
	e := setup(t, nil)
	e.s.shares.mu.Lock()
	e.s.shares.sessionTimeout = time.Second
	e.s.shares.mu.Unlock()
	e.stream(t, "work", 1)
	e.shareProduce(t, "work", 1, "w")
	cl := e.client(t)
	m1 := &shareProto{t: t, cl: cl, id: "sleeper"}
	if hb := m1.heartbeat(0, []string{"work"}); hb.ErrorCode != 0 {
		t.Fatalf("join: %+v", hb)
	}
	if resp := m1.fetch("work", 1, 5*time.Second); len(resp.Topics) != 1 || len(resp.Topics[0].Partitions[0].AcquiredRecords) != 1 {
		t.Fatalf("fetch: %+v", resp)
	}
	m2 := &shareProto{t: t, cl: cl, id: "waker"}
	hb := m2.heartbeat(0, []string{"work"})
	var ars []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
	for len(ars) == 0 { // m2 heartbeats between short fetches; m1 does not
		if hb = m2.heartbeat(hb.MemberEpoch, nil); hb.ErrorCode != 0 {
			t.Fatalf("heartbeat: %+v", hb)
		}
		resp := m2.fetch("work", 1, 200*time.Millisecond)
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				ars = append(ars, p.AcquiredRecords...)
			}
		}
	}
	if ars[0].FirstOffset != 0 || ars[0].DeliveryCount != 2 {
		t.Fatalf("acquired %+v", ars)
	}
	if gone := m1.heartbeat(1, nil); gone.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("the expired member's heartbeat: %+v", gone)
	}
}

// TestShareGroupTwoTopics: one share consumer of two topics gets the
// records of both.
func TestShareGroupTwoTopics(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "left", 1)
	e.stream(t, "right", 3)
	e.shareProduce(t, "left", 1, "l0", "l1", "l2")
	e.shareProduce(t, "right", 3, "r0", "r1", "r2", "r3")
	cl := e.client(t, kgo.ShareGroup("g"), kgo.ConsumeTopics("left", "right"))
	got := map[string]string{}
	for len(got) < 7 {
		for _, r := range pollShare(t, cl) {
			if prev, dup := got[string(r.Value)]; dup {
				t.Fatalf("%q again from %s, first from %s", r.Value, r.Topic, prev)
			}
			got[string(r.Value)] = r.Topic
		}
	}
	cl.MarkAcks(kgo.AckAccept)
	if err := cl.FlushAcks(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"left", "right"} {
		shareWait(t, topic+"'s backlog to drain", func() bool { return e.shareBacklog(t, topic) == 0 })
	}
}

// TestShareGroupHeldLimit: a member holding MaxShareHeldRecords records
// gets no more until it acknowledges some.
func TestShareGroupHeldLimit(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "bulk", 1)
	msgs := make([]sluice.Message, MaxShareHeldRecords+10)
	for i := range msgs {
		msgs[i] = sluice.Message{Body: []byte(fmt.Sprint(i))}
	}
	if _, err := e.b.PublishBatch(context.Background(), "bulk", msgs); err != nil {
		t.Fatal(err)
	}
	m := &shareProto{t: t, cl: e.client(t), id: "hoarder"}
	if hb := m.heartbeat(0, []string{"bulk"}); hb.ErrorCode != 0 {
		t.Fatalf("join: %+v", hb)
	}
	held := 0
	count := func(resp *kmsg.ShareFetchResponse) int {
		n := 0
		for _, rt := range resp.Topics {
			for i := range rt.Partitions {
				n += len(shareAcquired(t, &rt.Partitions[i]))
			}
		}
		return n
	}
	for held < MaxShareHeldRecords {
		n := count(m.fetch("bulk", 1, 5*time.Second))
		if n == 0 {
			t.Fatalf("no records with %d held", held)
		}
		held += n
	}
	if held != MaxShareHeldRecords {
		t.Fatalf("%d records held, limit %d", held, MaxShareHeldRecords)
	}
	if n := count(m.fetch("bulk", 1, 50*time.Millisecond)); n != 0 {
		t.Fatalf("%d more records past MaxShareHeldRecords", n)
	}
	if top, code := m.ack(m.epoch, "bulk", 0, 0, 4, ackAccept); top != 0 || code != 0 {
		t.Fatalf("accept: %d/%d", top, code)
	}
	if n := count(m.fetch("bulk", 1, 5*time.Second)); n != 5 {
		t.Fatalf("%d records after accepting 5, want 5", n)
	}
}

// TestShareGroupRefusals: the errors a client acts on.
func TestShareGroupRefusals(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "ledger", 1)
	e.stream(t, "queue", 1)
	if _, err := e.b.CreateSubscription(context.Background(), "ledger", sluice.SubscriptionConfig{Name: "g", Mode: sluice.PartitionedMode}); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t)
	m := &shareProto{t: t, cl: cl, id: "m"}
	hb := m.heartbeat(0, []string{"ledger"})
	if hb.ErrorCode != kerr.InconsistentGroupProtocol.Code || hb.ErrorMessage == nil || !strings.Contains(*hb.ErrorMessage, "partitioned") {
		t.Fatalf("joining over a partitioned subscription: %+v", hb)
	}
	if resp := m.fetch("queue", 1, 0); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("ShareFetch before joining: %+v", resp)
	}
	if hb := m.heartbeat(0, []string{"queue"}); hb.ErrorCode != 0 {
		t.Fatalf("join: %+v", hb)
	}
	for _, tc := range []struct {
		name  string
		epoch int32
		want  int16
	}{
		{"acknowledge without a session", 1, kerr.ShareSessionNotFound.Code},
		{"acknowledge opening a session", 0, kerr.InvalidShareSessionEpoch.Code},
	} {
		if top, _ := m.ack(tc.epoch, "queue", 0, 0, 0, ackAccept); top != tc.want {
			t.Errorf("%s: error %d, want %d", tc.name, top, tc.want)
		}
	}
	m.epoch = 3
	if resp := m.fetch("queue", 1, 0); resp.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("ShareFetch at epoch 3 without a session: %+v", resp)
	}
	m.epoch = 0
	resp := m.fetch("queue", 1, 0)
	if resp.ErrorCode != 0 {
		t.Fatalf("opening a session: %+v", resp)
	}
	if top, code := m.ack(m.epoch, "queue", 0, 0, 0, 9); top != 0 || code != kerr.InvalidRequest.Code {
		t.Fatalf("acknowledge type 9: %d/%d, want INVALID_REQUEST", top, code)
	}

	// Renewing a lock (KIP-1222) needs IsRenewAck, and extends the lease.
	e.shareProduce(t, "queue", 1, "slow")
	if resp := m.fetch("queue", 1, 5*time.Second); len(resp.Topics) != 1 || len(resp.Topics[0].Partitions[0].AcquiredRecords) != 1 {
		t.Fatalf("fetch: %+v", resp)
	}
	deadline := func() time.Time {
		e.s.shares.mu.Lock()
		defer e.s.shares.mu.Unlock()
		return e.s.shares.groups["g"].members["m"].held[heldKey{"queue", 0, 0}].d.Deadline
	}
	first := deadline()
	if top, code := m.ack(m.epoch, "queue", 0, 0, 0, ackRenew); top != 0 || code != kerr.InvalidRequest.Code {
		t.Fatalf("renew without IsRenewAck: %d/%d, want INVALID_REQUEST", top, code)
	}
	m.renew = true
	shareWait(t, "a later lock deadline", func() bool { // deadlines are in milliseconds
		top, code := m.ack(m.epoch, "queue", 0, 0, 0, ackRenew)
		if top != 0 || code != 0 {
			t.Fatalf("renew: %d/%d", top, code)
		}
		return deadline().After(first)
	})
}

// TestShareGroupShutdown: Shutdown releases what members hold and closes
// their consumers.
func TestShareGroupShutdown(t *testing.T) {
	e := setup(t, nil)
	e.stream(t, "late", 1)
	e.shareProduce(t, "late", 1, "x", "y")
	m := &shareProto{t: t, cl: e.client(t), id: "m"}
	if hb := m.heartbeat(0, []string{"late"}); hb.ErrorCode != 0 {
		t.Fatalf("join: %+v", hb)
	}
	if resp := m.fetch("late", 1, 5*time.Second); len(resp.Topics) != 1 || len(resp.Topics[0].Partitions[0].AcquiredRecords) != 1 {
		t.Fatalf("fetch: %+v", resp)
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.s.Shutdown(c); err != nil {
		t.Fatal(err)
	}
	info, err := e.b.Subscription(context.Background(), "late", "g")
	if err != nil || info.InFlight != 0 || info.Backlog != 2 {
		t.Fatalf("after Shutdown: %+v %v; want nothing in flight, 2 in the backlog", info, err)
	}
}
