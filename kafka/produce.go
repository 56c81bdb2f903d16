package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// v3 is the first with RecordBatch v2; v12 the last that names topics
	// (v13 names them by id).
	register(0, &handler{name: "Produce", min: 3, max: 12, serve: (*Server).produce})
}

// MaxProducerStates bounds the idempotent producers' sequence states held in
// memory (one per producer and partition). Past it the oldest are forgotten:
// a forgotten producer's next batch is accepted whatever its sequence.
const MaxProducerStates = 100_000

// producerBatches is how many of its last batches an idempotent producer's
// retry is recognised among, per partition, as in Kafka (a producer keeps
// at most 5 in flight).
const producerBatches = 5

// producers allocates producer ids and checks idempotent producers'
// sequence numbers.
type producers struct {
	stripes [64]sync.Mutex
	mu      sync.Mutex
	next    int64
	seqs    map[producerPart]*seqState
	order   []producerPart // insertion order, for forgetting the oldest
}

type producerPart struct {
	id    int64
	topic string
	part  int32
}

type seqState struct {
	epoch int16
	next  int32 // the sequence the next batch must start at
	// last are the producer's last batches here: a retry of one is answered
	// with its offset instead of being stored again.
	last [producerBatches]doneBatch
	n    int // batches recorded, for the ring
}

type doneBatch struct {
	seq, count int32
	offset     int64
}

func (p *producers) init() {
	// Ids unique across restarts without storing anything: the start time
	// in milliseconds, shifted past a counter of 2^20 ids a millisecond.
	p.next = time.Now().UnixMilli() << 20
	p.seqs = make(map[producerPart]*seqState)
}

// lock serializes one producer's batches to one partition; it returns the
// unlock. The locks are striped: unrelated producers may share one.
func (p *producers) lock(k producerPart) func() {
	h := uint64(k.id)*31 + uint64(k.part)
	for i := 0; i < len(k.topic); i++ {
		h = h*31 + uint64(k.topic[i])
	}
	m := &p.stripes[h%uint64(len(p.stripes))]
	m.Lock()
	return m.Unlock
}

func (p *producers) allocate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	return p.next
}

// check validates a batch's sequence. It returns 0 and -1 when the batch is
// to be published, 0 and an offset for a retry of one of the last batches
// (answered with that offset, not stored again), or an error code.
func (p *producers) check(k producerPart, epoch int16, base, count int32) (int16, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.seqs[k]
	if !ok {
		return 0, -1
	}
	switch {
	case epoch < st.epoch:
		return kerr.InvalidProducerEpoch.Code, -1
	case epoch > st.epoch:
		if base != 0 {
			return kerr.OutOfOrderSequenceNumber.Code, -1
		}
		return 0, -1
	case base == st.next:
		return 0, -1
	case base > st.next:
		return kerr.OutOfOrderSequenceNumber.Code, -1
	}
	for _, d := range st.last {
		if d.count > 0 && d.seq == base && d.count == count {
			return 0, d.offset
		}
	}
	// Older than the last batches remembered: Kafka answers
	// DUPLICATE_SEQUENCE_NUMBER, which clients treat as success.
	return kerr.DuplicateSequenceNumber.Code, -1
}

// done records a published batch and its offset.
func (p *producers) done(k producerPart, epoch int16, base int32, n int, offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.seqs[k]
	if !ok {
		if len(p.order) >= MaxProducerStates {
			delete(p.seqs, p.order[0])
			p.order = p.order[1:]
		}
		st = &seqState{epoch: epoch}
		p.seqs[k] = st
		p.order = append(p.order, k)
	}
	if epoch > st.epoch {
		*st = seqState{epoch: epoch}
	}
	if next := base + int32(n); next > st.next {
		st.next = next
	}
	st.last[st.n%producerBatches] = doneBatch{seq: base, count: int32(n), offset: offset}
	st.n++
}

func (s *Server) produce(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if req.TransactionID != nil {
		return s.produceAll(req, resp, kerr.TransactionalIDAuthorizationFailed.Code, "transactions are not supported"), nil
	}
	now := time.Now()
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic = rt.Topic
		cfg, err := s.b.StreamConfig(ctx, rt.Topic)
		allowed := c.may("publish", rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition = rp.Partition
			p.BaseOffset, p.LogAppendTime, p.LogStartOffset = -1, -1, -1
			switch {
			case !allowed:
				p.ErrorCode = errTopicAuth
			case err != nil:
				p.ErrorCode = errorCode(err)
			case rp.Partition < 0 || int(rp.Partition) >= cfg.Partitions:
				p.ErrorCode = errUnknownTopic
			default:
				s.producePartition(ctx, rt.Topic, cfg.MaxMessageBytes, rp, &p, now)
				if start, _, err := s.b.PartitionBounds(ctx, rt.Topic, int(rp.Partition)); err == nil {
					p.LogStartOffset = start
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	if req.Acks == 0 {
		return nil, nil
	}
	return resp, nil
}

// producePartition publishes one partition's batches and fills its answer.
func (s *Server) producePartition(ctx context.Context, topic string, maxMessageBytes int, rp kmsg.ProduceRequestTopicPartition, p *kmsg.ProduceResponseTopicPartition, now time.Time) {
	batches, err := decodeBatches(rp.Records, int(rp.Partition), now)
	if err != nil {
		p.ErrorCode, p.ErrorMessage = errorCode(err), errorMessage(err)
		return
	}
	// A record over the stream's max.message.bytes is MESSAGE_TOO_LARGE,
	// which clients know not to retry, before anything is published.
	for _, b := range batches {
		for _, m := range b.msgs {
			n := len(m.Key) + len(m.Body)
			for _, h := range m.Headers {
				n += len(h.Key) + len(h.Value)
			}
			if n > maxMessageBytes {
				p.ErrorCode = kerr.MessageTooLarge.Code
				p.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("a record of %d bytes (key, value and headers), over the topic's max.message.bytes=%d", n, maxMessageBytes))
				return
			}
		}
	}
	for _, b := range batches {
		if b.transactional {
			p.ErrorCode = kerr.InvalidTxnState.Code
			p.ErrorMessage = kmsg.StringPtr("transactions are not supported")
			return
		}
		if len(b.msgs) == 0 {
			continue
		}
		key := producerPart{b.producerID, topic, rp.Partition}
		if b.producerID >= 0 {
			// One producer's batches to one partition are checked and
			// published in order.
			unlock := s.producers.lock(key)
			code, dup := s.producers.check(key, b.producerEpoch, b.baseSequence, int32(len(b.msgs)))
			if code != 0 || dup >= 0 {
				unlock()
				p.ErrorCode = code
				if p.BaseOffset < 0 {
					p.BaseOffset = dup
				}
				if code != 0 {
					return
				}
				continue
			}
			pos, err := s.b.PublishBatch(ctx, topic, b.msgs)
			if err == nil {
				s.producers.done(key, b.producerEpoch, b.baseSequence, len(b.msgs), pos[0].Offset)
			}
			unlock()
			if err != nil {
				p.ErrorCode, p.ErrorMessage = errorCode(err), errorMessage(err)
				return
			}
			if p.BaseOffset < 0 {
				p.BaseOffset = pos[0].Offset
			}
			continue
		}
		pos, err := s.b.PublishBatch(ctx, topic, b.msgs)
		if err != nil {
			p.ErrorCode, p.ErrorMessage = errorCode(err), errorMessage(err)
			return
		}
		if p.BaseOffset < 0 {
			p.BaseOffset = pos[0].Offset
		}
	}
}

// produceAll answers every partition of a request with one error.
func (s *Server) produceAll(req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, code int16, msg string) kmsg.Response {
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition, p.ErrorCode, p.ErrorMessage = rp.Partition, code, kmsg.StringPtr(msg)
			p.BaseOffset, p.LogAppendTime, p.LogStartOffset = -1, -1, -1
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}
