package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// The network consumer runs over one ConsumerService.Consume stream: Fetch
// grants the server credit for as many deliveries as it asks for, and the
// settlements travel on the same stream, each answered by its id.
//
// Leases belong to the subscription, not to the stream, so a broken stream
// loses nothing the consumer holds: the next Fetch opens a new stream (with
// backoff), and settlements made while none is open go as unary calls. A
// settlement whose answer was lost with its stream fails with an error matching
// sluice.ErrUnavailable: it may or may not have been applied, and if not, the
// message comes again when its lease expires.

// Reconnect backoff of a consumer whose stream broke.
const (
	consumeBackoffInitial = 50 * time.Millisecond
	consumeBackoffMax     = 2 * time.Second
)

// consumerPrefix makes the default consumer names of this process unique
// across the processes sharing a broker.
var consumerPrefix = func() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "client-" + hex.EncodeToString(b[:])
}()

var consumerSeq atomic.Int64

// NewConsumer opens a consumer on a subscription. It returns once the server
// has opened it, so a missing subscription or a bad config fails here.
//
// A consumer without a Name gets one unique to it; give a stable Name to a
// consumer of a partitioned subscription that restarts, so that it takes its
// place in the group back.
func (c *Client) NewConsumer(ctx context.Context, stream, subscription string, cfg sluice.ConsumerConfig) (sluice.Consumer, error) {
	if err := c.live("NewConsumer"); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("%s-%d", consumerPrefix, consumerSeq.Add(1))
	}
	con := &consumer{
		c:      c,
		ref:    &sluicev1.Consumer{Stream: stream, Subscription: subscription, Name: cfg.Name, MaxInFlight: int32(cfg.MaxInFlight)},
		notify: make(chan struct{}, 1),
	}
	conn, err := con.open(ctx)
	if err != nil {
		return nil, err
	}
	con.conn = conn
	return con, nil
}

type consumer struct {
	c   *Client
	ref *sluicev1.Consumer

	mu     sync.Mutex
	conn   *consumeConn // nil after a break until the next Fetch reopens
	buf    []sluice.Delivery
	closed bool
	ids    uint64
	// notify is signalled (capacity 1) when buf grows or a stream breaks.
	notify chan struct{}
}

// consumeConn is one Consume stream.
type consumeConn struct {
	bidi   *connect.BidiStreamForClient[sluicev1.ConsumeRequest, sluicev1.ConsumeResponse]
	cancel context.CancelFunc
	sendMu sync.Mutex

	// Settlements made while one request is being sent wait in outbox and go
	// together in the next: concurrent acks share a request and a flush.
	omu      sync.Mutex
	outbox   []*sluicev1.Settlement
	flushing bool

	// Guarded by the consumer's mu.
	credit  int // granted and not yet used
	pending map[uint64]chan *sluicev1.SettlementResult
	err     error         // why it broke
	done    chan struct{} // closed when it broke
}

func (cc *consumeConn) send(req *sluicev1.ConsumeRequest) error {
	cc.sendMu.Lock()
	defer cc.sendMu.Unlock()
	return cc.bidi.Send(req)
}

// grantLocked is the credit to grant now so that the server may send what a
// Fetch of max asks for and, with WithPrefetch, keep the buffer full; it adds
// it to the stream's credit. Lock held: con.mu.
func (con *consumer) grantLocked(want int) int {
	cc := con.conn
	if cc == nil || cc.err != nil {
		return 0
	}
	grant := max(want, con.c.opts.prefetch) - cc.credit - len(con.buf)
	if grant <= 0 {
		return 0
	}
	cc.credit += grant
	return grant
}

// grant sends credit.
func (cc *consumeConn) grant(n int) {
	if err := cc.send(&sluicev1.ConsumeRequest{Credit: int32(n)}); err != nil {
		cc.cancel() // receive sees the break and reports why
	}
}

// settleLater queues a settlement for the next request; the caller that finds
// no request being sent sends the queue, and goes on until it is empty.
func (cc *consumeConn) settleLater(sts ...*sluicev1.Settlement) {
	cc.omu.Lock()
	cc.outbox = append(cc.outbox, sts...)
	if cc.flushing {
		cc.omu.Unlock()
		return
	}
	cc.flushing = true
	for len(cc.outbox) > 0 {
		n := min(len(cc.outbox), maxSettlementsPerRequest)
		batch := cc.outbox[:n:n]
		cc.outbox = cc.outbox[n:]
		cc.omu.Unlock()
		if err := cc.send(&sluicev1.ConsumeRequest{Settlements: batch}); err != nil {
			cc.cancel() // receive sees the break and fails what is pending
		}
		cc.omu.Lock()
	}
	cc.outbox = nil
	cc.flushing = false
	cc.omu.Unlock()
}

// maxSettlementsPerRequest is the server's bound on one request's settlements.
const maxSettlementsPerRequest = 1000

func (con *consumer) signal() {
	select {
	case con.notify <- struct{}{}:
	default:
	}
}

// open opens a stream and waits for the server to accept the consumer.
func (con *consumer) open(ctx context.Context) (*consumeConn, error) {
	sctx, cancel := context.WithCancel(con.c.closed)
	cc := &consumeConn{
		bidi:    con.c.cons.Consume(sctx),
		cancel:  cancel,
		pending: make(map[uint64]chan *sluicev1.SettlementResult),
		done:    make(chan struct{}),
	}
	opened := make(chan error, 1)
	go func() {
		// A failed send is reported by Receive, with the server's reason.
		_ = cc.send(&sluicev1.ConsumeRequest{Consumer: con.ref})
		_, err := cc.bidi.Receive()
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			cancel()
			_ = cc.bidi.CloseResponse()
			return nil, mapError("Consume", err)
		}
	case <-ctx.Done():
		cancel()
		<-opened
		_ = cc.bidi.CloseResponse()
		return nil, ctx.Err()
	}
	go con.receive(cc)
	return cc, nil
}

// receive reads the stream's responses until it breaks.
func (con *consumer) receive(cc *consumeConn) {
	for {
		res, err := cc.bidi.Receive()
		con.mu.Lock()
		if err != nil {
			cc.err = mapError("Consume", err)
			if con.closed || con.c.closed.Err() != nil {
				cc.err = &closedError{"Consume"}
			}
			for id, ch := range cc.pending {
				ch <- nil
				delete(cc.pending, id)
			}
			close(cc.done)
			if con.conn == cc {
				con.conn = nil
			}
			con.mu.Unlock()
			cc.cancel()
			_ = cc.bidi.CloseResponse()
			con.signal()
			return
		}
		if ds := res.GetDeliveries(); len(ds) > 0 {
			cc.credit -= len(ds)
			for _, d := range ds {
				con.buf = append(con.buf, sluice.Delivery{
					Record:       recordFrom(d.GetRecord()),
					Subscription: d.GetSubscription(),
					Deliveries:   int(d.GetDeliveries()),
					Lease:        d.GetLease(),
					Deadline:     timeFrom(d.GetDeadline()),
				})
			}
			con.signal()
		}
		for _, r := range res.GetResults() {
			if ch, ok := cc.pending[r.GetId()]; ok {
				ch <- r
				delete(cc.pending, r.GetId())
			}
		}
		con.mu.Unlock()
	}
}

// Fetch returns up to max deliveries, waiting until there is at least one or
// ctx ends. A delivery that arrives after ctx ended is kept for the next Fetch.
func (con *consumer) Fetch(ctx context.Context, max int) ([]sluice.Delivery, error) {
	if max < 1 || max > sluice.MaxFetch {
		return nil, fmt.Errorf("client: Fetch: %w", &sluice.InvalidError{Field: "limit", Reason: fmt.Sprintf("%d outside [1, MaxFetch=%d]", max, sluice.MaxFetch)})
	}
	backoff := consumeBackoffInitial
	for {
		con.mu.Lock()
		if con.closed {
			con.mu.Unlock()
			return nil, &closedError{"Fetch"}
		}
		if len(con.buf) > 0 {
			n := min(max, len(con.buf))
			out := make([]sluice.Delivery, n)
			copy(out, con.buf)
			con.buf = append(con.buf[:0], con.buf[n:]...)
			cc, grant := con.conn, con.grantLocked(0)
			con.mu.Unlock()
			if grant > 0 {
				cc.grant(grant)
			}
			return out, nil
		}
		cc := con.conn
		con.mu.Unlock()

		if cc == nil {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			next, err := con.open(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if !errors.Is(err, sluice.ErrUnavailable) {
					return nil, err
				}
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				backoff = min(2*backoff, consumeBackoffMax)
				continue
			}
			con.mu.Lock()
			if con.closed {
				con.mu.Unlock()
				next.cancel()
				return nil, &closedError{"Fetch"}
			}
			con.conn, cc = next, next
			con.mu.Unlock()
			backoff = consumeBackoffInitial
		}

		con.mu.Lock()
		grant := 0
		if con.conn == cc {
			grant = con.grantLocked(max)
		}
		con.mu.Unlock()
		if grant > 0 {
			cc.grant(grant)
		}
		select {
		case <-con.notify:
		case <-cc.done:
		case <-ctx.Done():
			// What the server sends for the credit granted stays buffered for
			// the next Fetch.
			con.mu.Lock()
			n := len(con.buf)
			con.mu.Unlock()
			if n == 0 {
				return nil, ctx.Err()
			}
		}
	}
}

// settle sends a settlement on the open stream, or as a unary call when none
// settle settles one delivery; see settleAll.
func (con *consumer) settle(ctx context.Context, op string, st *sluicev1.Settlement) (*sluicev1.SettlementResult, error) {
	rs, errs := con.settleAll(ctx, op, []*sluicev1.Settlement{st})
	return rs[0], errs[0]
}

// settleAll sends settlements together on the open stream and waits for each
// answer until ctx ends; with no stream open, each goes as a unary call.
// errs[i] answers sts[i]; a settlement whose answer was lost with its stream,
// or not come when ctx ended, fails with ErrUnavailable (it may have been
// applied).
func (con *consumer) settleAll(ctx context.Context, op string, sts []*sluicev1.Settlement) ([]*sluicev1.SettlementResult, []error) {
	rs := make([]*sluicev1.SettlementResult, len(sts))
	errs := make([]error, len(sts))
	con.mu.Lock()
	if con.closed {
		con.mu.Unlock()
		for i := range errs {
			errs[i] = &closedError{op}
		}
		return rs, errs
	}
	cc := con.conn
	if cc == nil {
		con.mu.Unlock()
		var wg sync.WaitGroup
		for i, st := range sts {
			wg.Go(func() { rs[i], errs[i] = con.settleUnary(ctx, op, st) })
		}
		wg.Wait()
		return rs, errs
	}
	answers := make([]chan *sluicev1.SettlementResult, len(sts))
	for i, st := range sts {
		con.ids++
		st.Id = con.ids
		answers[i] = make(chan *sluicev1.SettlementResult, 1)
		cc.pending[st.Id] = answers[i]
	}
	con.mu.Unlock()
	cc.settleLater(sts...)
	for i, ch := range answers {
		select {
		case r := <-ch:
			switch {
			case r == nil:
				errs[i] = fmt.Errorf("client: %s: the stream broke before the server answered; the outcome is unknown: %w", op, sluice.ErrUnavailable)
			case r.GetError() != nil:
				errs[i] = mapError(op, statusError(r.GetError()))
			default:
				rs[i] = r
			}
		case <-ctx.Done():
			con.mu.Lock()
			for _, st := range sts[i:] {
				delete(cc.pending, st.GetId())
			}
			con.mu.Unlock()
			for j := i; j < len(sts); j++ {
				errs[j] = fmt.Errorf("client: %s: %w: %w", op, sluice.ErrUnavailable, ctx.Err())
			}
			return rs, errs
		}
	}
	return rs, errs
}

// settleUnary settles with ConsumerService's unary calls.
func (con *consumer) settleUnary(ctx context.Context, op string, st *sluicev1.Settlement) (*sluicev1.SettlementResult, error) {
	var err error
	out := &sluicev1.SettlementResult{}
	switch st.GetAction() {
	case sluicev1.SettleAction_SETTLE_ACTION_ACK:
		_, err = con.c.cons.Ack(ctx, connect.NewRequest(&sluicev1.AckRequest{Consumer: con.ref, Delivery: st.GetDelivery()}))
	case sluicev1.SettleAction_SETTLE_ACTION_NACK:
		_, err = con.c.cons.Nack(ctx, connect.NewRequest(&sluicev1.NackRequest{Consumer: con.ref, Delivery: st.GetDelivery(), Delay: st.GetDelay(), Reason: st.GetReason()}))
	case sluicev1.SettleAction_SETTLE_ACTION_TERM:
		_, err = con.c.cons.Term(ctx, connect.NewRequest(&sluicev1.TermRequest{Consumer: con.ref, Delivery: st.GetDelivery(), Reason: st.GetReason()}))
	case sluicev1.SettleAction_SETTLE_ACTION_EXTEND:
		var res *connect.Response[sluicev1.ExtendResponse]
		res, err = con.c.cons.Extend(ctx, connect.NewRequest(&sluicev1.ExtendRequest{Consumer: con.ref, Delivery: st.GetDelivery(), By: st.GetBy()}))
		if err == nil {
			out.Deadline = res.Msg.GetDeadline()
		}
	}
	if err != nil {
		return nil, mapError(op, err)
	}
	return out, nil
}

// statusError turns an in-band status back into the error the unary call
// would have returned.
func statusError(s *sluicev1.Status) *connect.Error {
	var code connect.Code
	if err := code.UnmarshalText([]byte(s.GetCode())); err != nil {
		code = connect.CodeUnknown
	}
	ce := connect.NewError(code, errors.New(s.GetMessage()))
	if fv := s.GetFieldViolation(); fv != nil {
		if d, err := connect.NewErrorDetail(fv); err == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}

func ref(d sluice.Delivery) *sluicev1.DeliveryRef {
	return &sluicev1.DeliveryRef{Partition: int32(d.Partition), Offset: d.Offset, Lease: d.Lease}
}

// Ack settles a delivery as done.
func (con *consumer) Ack(ctx context.Context, d sluice.Delivery) error {
	_, err := con.settle(ctx, "Ack", &sluicev1.Settlement{Delivery: ref(d), Action: sluicev1.SettleAction_SETTLE_ACTION_ACK})
	return err
}

// AckMany settles several deliveries as done in one request; errs[i] answers
// ds[i] as Ack would have.
func (con *consumer) AckMany(ctx context.Context, ds []sluice.Delivery) []error {
	sts := make([]*sluicev1.Settlement, len(ds))
	for i, d := range ds {
		sts[i] = &sluicev1.Settlement{Delivery: ref(d), Action: sluicev1.SettleAction_SETTLE_ACTION_ACK}
	}
	_, errs := con.settleAll(ctx, "Ack", sts)
	return errs
}

// Nack reports a failed delivery: it is retried, or dead-lettered once it had
// the subscription's MaxDeliveries.
func (con *consumer) Nack(ctx context.Context, d sluice.Delivery, opts sluice.NackOptions) error {
	st := &sluicev1.Settlement{Delivery: ref(d), Action: sluicev1.SettleAction_SETTLE_ACTION_NACK, Reason: opts.Reason}
	if opts.Delay != 0 {
		st.Delay = durationpb.New(opts.Delay)
	}
	_, err := con.settle(ctx, "Nack", st)
	return err
}

// Term gives up on a delivery: it goes to the dead-letter stream at once.
func (con *consumer) Term(ctx context.Context, d sluice.Delivery, reason string) error {
	_, err := con.settle(ctx, "Term", &sluicev1.Settlement{Delivery: ref(d), Action: sluicev1.SettleAction_SETTLE_ACTION_TERM, Reason: reason})
	return err
}

// Extend moves the lease deadline to now + by, and returns it.
func (con *consumer) Extend(ctx context.Context, d sluice.Delivery, by time.Duration) (time.Time, error) {
	r, err := con.settle(ctx, "Extend", &sluicev1.Settlement{Delivery: ref(d), Action: sluicev1.SettleAction_SETTLE_ACTION_EXTEND, By: durationpb.New(by)})
	if err != nil {
		return time.Time{}, err
	}
	return timeFrom(r.GetDeadline()), nil
}

// Close ends the consumer's stream: a partitioned consumer leaves its group at
// once. Deliveries the server sent that no Fetch returned (prefetched, or
// arrived after a Fetch gave up) are handed back first: nacked for redelivery
// at once. Those fetched and not settled are redelivered when their leases
// expire.
func (con *consumer) Close() error {
	con.mu.Lock()
	if con.closed {
		con.mu.Unlock()
		return nil
	}
	back := con.buf
	con.buf = nil
	con.mu.Unlock()
	if len(back) > 0 {
		con.handBack(back)
	}
	con.mu.Lock()
	con.closed = true
	cc := con.conn
	con.conn = nil
	con.mu.Unlock()
	if cc != nil {
		cc.sendMu.Lock()
		_ = cc.bidi.CloseRequest()
		cc.sendMu.Unlock()
		select {
		case <-cc.done: // the server saw the end and closed its side
		case <-time.After(5 * time.Second):
			cc.cancel()
			<-cc.done
		}
	}
	return nil
}

// handBack nacks deliveries no Fetch returned, for redelivery at once, and
// waits a little for the answers.
func (con *consumer) handBack(ds []sluice.Delivery) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts := make([]*sluicev1.Settlement, len(ds))
	for i, d := range ds {
		sts[i] = &sluicev1.Settlement{Delivery: ref(d), Action: sluicev1.SettleAction_SETTLE_ACTION_NACK,
			Delay: durationpb.New(time.Millisecond), Reason: "consumer closed before a Fetch took the delivery"}
	}
	con.settleAll(ctx, "Nack", sts)
}
