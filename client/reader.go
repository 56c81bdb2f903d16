package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// Reconnection of a reader whose stream broke with an unknown outcome.
const (
	reconnectInitial = 50 * time.Millisecond
	reconnectMax     = 2 * time.Second
	// maxReconnects bounds the attempts in a row that receive nothing; the
	// reader then fails with the last error.
	maxReconnects = 10
)

// streamOpener opens a server stream at the caller's start, or after resume's
// offsets in the partitions that have one. It returns once the server has
// answered with its headers, which it sends once the read is open: a start at
// the latest is then fixed before the caller goes on.
type streamOpener func(ctx context.Context, resume map[int]int64) (recv func() ([]*sluicev1.Record, error), closeFn func(), err error)

// reader is a sluice.Reader over a server stream: one goroutine receives
// batches and hands them to Next through batches; it reopens a broken stream
// after the last record it received, per partition.
type reader struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	batches chan []*sluicev1.Record
	failed  chan struct{} // closed once err is set and nothing more will come
	err     error

	mu      sync.Mutex // guards pending, next; Next is not meant to run concurrently
	pending []*sluicev1.Record
	next    int64
}

var _ sluice.Reader = (*reader)(nil)

// newReader opens the first stream within ctx, and keeps it (and the ones
// that replace it) open until parent ends or the reader is closed.
func newReader(ctx, parent context.Context, first int64, open streamOpener) (*reader, error) {
	rctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(ctx, cancel)
	recv, closeFn, err := open(rctx, nil)
	if !stop() {
		if err == nil {
			closeFn()
		}
		cancel()
		return nil, ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, mapError("Read", err)
	}
	r := &reader{cancel: cancel, batches: make(chan []*sluicev1.Record, 1), failed: make(chan struct{}), next: first}
	r.wg.Add(1)
	go r.run(rctx, open, recv, closeFn)
	return r, nil
}

// run receives until ctx ends or the stream fails for good, starting with the
// stream newReader opened.
func (r *reader) run(ctx context.Context, open streamOpener, recv func() ([]*sluicev1.Record, error), closeFn func()) {
	defer r.wg.Done()
	resume := map[int]int64{} // per partition, the offset after the last record received
	wait := reconnectInitial
	failures := 0
	var last error
	var err error
	for {
		if recv == nil {
			recv, closeFn, err = open(ctx, resume)
		}
		if err == nil {
			for {
				var recs []*sluicev1.Record
				recs, err = recv()
				if err != nil {
					break
				}
				if len(recs) == 0 {
					continue
				}
				failures, wait = 0, reconnectInitial
				for _, rec := range recs {
					resume[int(rec.GetPartition())] = rec.GetOffset() + 1
				}
				select {
				case r.batches <- recs:
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					break
				}
			}
			closeFn()
		}
		recv = nil
		if ctx.Err() != nil {
			r.fail(sluice.ErrClosed)
			return
		}
		err = mapError("Read", err)
		if !errors.Is(err, sluice.ErrUnavailable) {
			r.fail(err)
			return
		}
		last = err
		if failures++; failures > maxReconnects {
			r.fail(fmt.Errorf("client: stream broke, %d reconnects failed: %w", maxReconnects, last))
			return
		}
		t := time.NewTimer(wait/2 + time.Duration(time.Now().UnixNano()%int64(wait/2+1)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.fail(sluice.ErrClosed)
			return
		}
		wait = min(2*wait, reconnectMax)
	}
}

func (r *reader) fail(err error) {
	r.err = err
	close(r.failed)
}

// Next returns the next record, waiting for one until ctx ends.
func (r *reader) Next(ctx context.Context) (sluice.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.pending) == 0 {
		select {
		case recs := <-r.batches:
			r.pending = recs
		case <-ctx.Done():
			return sluice.Record{}, ctx.Err()
		case <-r.failed:
			// Records received before the failure come first.
			select {
			case recs := <-r.batches:
				r.pending = recs
				continue
			default:
			}
			return sluice.Record{}, r.err
		}
	}
	rec := r.pending[0]
	r.pending = r.pending[1:]
	r.next = rec.GetOffset() + 1
	return recordFrom(rec), nil
}

// Offset is the offset of the record Next will return; before the first
// record, the start offset when the reader started at one, else -1.
func (r *reader) Offset() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) > 0 {
		return r.pending[0].GetOffset()
	}
	return r.next
}

// Close ends the stream and waits for its goroutine. Safe to call twice.
func (r *reader) Close() error {
	r.cancel()
	r.wg.Wait()
	return nil
}

// NewReader opens a reader on one partition of a stream, over the Read stream.
// The stream and partition are checked first with one GetStream call, so that
// a missing stream or partition fails here as with the embedded broker.
func (c *Client) NewReader(ctx context.Context, stream string, cfg sluice.ReaderConfig) (sluice.Reader, error) {
	if err := c.live("NewReader"); err != nil {
		return nil, err
	}
	if err := c.checkStream(ctx, stream, cfg.Partition, true); err != nil {
		return nil, err
	}
	start := startTo(cfg.Start)
	first := int64(-1)
	if o, ok := start.GetPosition().(*sluicev1.StartAt_Offset); ok {
		first = o.Offset
	}
	open := func(ctx context.Context, resume map[int]int64) (func() ([]*sluicev1.Record, error), func(), error) {
		req := &sluicev1.ReadRequest{Stream: stream, Partition: int32(cfg.Partition), Start: start, FetchBytes: int32(cfg.FetchBytes)}
		if off, ok := resume[cfg.Partition]; ok {
			req.Start = &sluicev1.StartAt{Position: &sluicev1.StartAt_Offset{Offset: off}}
		}
		s, err := c.read.Read(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, nil, err
		}
		s.ResponseHeader()
		return func() ([]*sluicev1.Record, error) {
			if s.Receive() {
				return s.Msg().GetRecords(), nil
			}
			if err := s.Err(); err != nil {
				return nil, err
			}
			// The server never ends a read on its own without an error.
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("read stream ended"))
		}, func() { s.Close() }, nil
	}
	return newReader(ctx, c.closed, first, open)
}

// SubscribeLive follows every partition of a stream at once, over the
// SubscribeLive stream. On a reconnect the partitions that delivered records
// resume after them; the others restart from cfg.Start.
func (c *Client) SubscribeLive(ctx context.Context, stream string, cfg sluice.LiveConfig) (sluice.Reader, error) {
	if err := c.live("SubscribeLive"); err != nil {
		return nil, err
	}
	if err := c.checkStream(ctx, stream, 0, false); err != nil {
		return nil, err
	}
	start := sluice.Latest()
	if cfg.Start != nil {
		start = *cfg.Start
	}
	first := int64(-1)
	open := func(ctx context.Context, resume map[int]int64) (func() ([]*sluicev1.Record, error), func(), error) {
		// The API has one start for every partition: after a reconnect, the
		// records of partitions already past it are skipped here.
		s, err := c.read.SubscribeLive(ctx, connect.NewRequest(&sluicev1.SubscribeLiveRequest{
			Stream: stream, Start: startTo(start), FetchBytes: int32(cfg.FetchBytes),
		}))
		if err != nil {
			return nil, nil, err
		}
		s.ResponseHeader()
		return func() ([]*sluicev1.Record, error) {
			if !s.Receive() {
				if err := s.Err(); err != nil {
					return nil, err
				}
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("live stream ended"))
			}
			recs := s.Msg().GetRecords()
			out := recs[:0:0]
			for _, rec := range recs {
				if off, ok := resume[int(rec.GetPartition())]; !ok || rec.GetOffset() >= off {
					out = append(out, rec)
				}
			}
			return out, nil
		}, func() { s.Close() }, nil
	}
	return newReader(ctx, c.closed, first, open)
}

// checkStream fails as the broker's NewReader would for a missing stream or,
// when checkPartition, a partition it does not have.
func (c *Client) checkStream(ctx context.Context, stream string, partition int, checkPartition bool) error {
	info, err := c.Stream(ctx, stream)
	if err != nil {
		return err
	}
	if checkPartition && (partition < 0 || partition >= len(info.Partitions)) {
		return &sluice.InvalidError{Field: "partition", Reason: fmt.Sprintf("%d outside [0, %d)", partition, len(info.Partitions))}
	}
	return nil
}
