package kafka

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	// v4 is the first that carries RecordBatch v2; v12 the last that names
	// topics (v13 names them by id).
	register(1, &handler{name: "Fetch", min: 4, max: 12, serve: (*Server).fetch})
}

// Limits of Fetch.
const (
	// MaxFetchWait bounds a fetch's long poll (max_wait_ms).
	MaxFetchWait = 5 * time.Minute
	// defaultFetchMaxBytes is a fetch's byte budget when it sets none.
	defaultFetchMaxBytes = 50 << 20
	// maxFetchWaiters bounds the partitions a long poll watches (one
	// goroutine each); a message on any other partition of a larger fetch
	// is seen at the end of the wait.
	maxFetchWaiters = 1000
)

// noBatches is the records of a partition with nothing to return: empty,
// not null, which some clients (librdkafka) refuse as a bad message set.
var noBatches = []byte{}

// fetchPart is one partition of a fetch and its answer.
type fetchPart struct {
	topic  string
	req    *kmsg.FetchRequestTopicPartition
	resp   *kmsg.FetchResponseTopicPartition
	atTail bool // nothing to return yet: a long poll waits on it
}

// fetch serves stored batches as stored: no record is decoded or encoded.
// Sessions (KIP-227) are not kept: the answer's session id is 0, and
// clients then send full fetches.
func (s *Server) fetch(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	var parts []*fetchPart
	for i := range req.Topics {
		rt := &req.Topics[i]
		t := kmsg.NewFetchResponseTopic()
		t.Topic = rt.Topic
		t.TopicID = rt.TopicID
		t.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, t)
		for j := range rt.Partitions {
			p := &resp.Topics[len(resp.Topics)-1].Partitions[j]
			*p = kmsg.NewFetchResponseTopicPartition()
			p.Partition = rt.Partitions[j].Partition
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset = -1, -1, -1
			p.RecordBatches = noBatches
			if !c.may("consume", rt.Topic) {
				p.ErrorCode = errTopicAuth
				continue
			}
			parts = append(parts, &fetchPart{topic: rt.Topic, req: &rt.Partitions[j], resp: p})
		}
	}
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = defaultFetchMaxBytes
	}
	wait := min(time.Duration(req.MaxWaitMillis)*time.Millisecond, MaxFetchWait)
	deadline := time.Now().Add(wait)
	for {
		got := s.fetchOnce(ctx, parts, maxBytes)
		if got >= int(req.MinBytes) || wait <= 0 || !time.Now().Before(deadline) {
			break
		}
		if !s.waitAny(ctx, parts, deadline) {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return resp, nil
}

// fetchOnce reads every partition within the byte budget and returns the
// bytes read.
func (s *Server) fetchOnce(ctx context.Context, parts []*fetchPart, budget int) int {
	total := 0
	for _, fp := range parts {
		p := fp.resp
		p.RecordBatches, p.ErrorCode, fp.atTail = noBatches, 0, false
		limit := min(int(fp.req.PartitionMaxBytes), budget-total, sluice.MaxReadBatchesBytes)
		if total == 0 {
			limit = max(limit, 1) // at least one batch, whatever its size (KIP-74)
		}
		limit = max(limit, 0) // out of budget: the bounds only
		rd, err := s.b.ReadBatches(ctx, fp.topic, int(p.Partition), fp.req.FetchOffset, limit)
		p.HighWatermark, p.LastStableOffset, p.LogStartOffset = rd.HighWatermark, rd.HighWatermark, rd.StartOffset
		if err != nil {
			p.ErrorCode = errorCode(err)
			if errors.Is(err, sluice.ErrInvalid) { // a partition the stream does not have
				p.ErrorCode = errUnknownTopic
			}
			continue
		}
		if len(rd.Batches) > 0 {
			p.RecordBatches = rd.Batches
		}
		total += len(rd.Batches)
		// At its tail, a partition is one a long poll waits on; one left
		// out of the budget has data already and is read next time.
		fp.atTail = fp.req.FetchOffset >= rd.HighWatermark
	}
	return total
}

// waitAny waits until a partition at its tail receives a message, the
// deadline passes or ctx ends; it reports whether to read again.
func (s *Server) waitAny(ctx context.Context, parts []*fetchPart, deadline time.Time) bool {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	woke := make(chan struct{}, 1)
	var wg sync.WaitGroup
	n := 0
	for _, fp := range parts {
		if !fp.atTail || n == maxFetchWaiters {
			continue
		}
		n++
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.b.WaitBatches(wctx, fp.topic, int(fp.resp.Partition), fp.req.FetchOffset); err == nil {
				select {
				case woke <- struct{}{}:
				default:
				}
			}
		}()
	}
	if n == 0 {
		return false
	}
	select {
	case <-woke:
	case <-wctx.Done():
	}
	cancel()
	wg.Wait()
	return ctx.Err() == nil && time.Now().Before(deadline)
}
