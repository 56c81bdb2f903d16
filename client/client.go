package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// Health checks of the client's own HTTP/2 connections.
const (
	healthPingAfter   = 5 * time.Second
	healthPingTimeout = 5 * time.Second
)

// Client is a sluice.Client that talks to a server. It is safe for concurrent
// use; Close it when done.
type Client struct {
	opts options
	hc   *http.Client
	own  bool // hc is the client's own, to release on Close

	streams sluicev1connect.StreamServiceClient
	publish sluicev1connect.PublishServiceClient
	read    sluicev1connect.ReadServiceClient
	subs    sluicev1connect.SubscriptionServiceClient
	cons    sluicev1connect.ConsumerServiceClient
	sched   sluicev1connect.ScheduleServiceClient

	bmu      sync.Mutex
	batchers map[string]*batcher // per stream, while it has publishes

	// closed is cancelled by Close: the readers' streams end with it.
	closed context.Context
	close  context.CancelFunc
	once   sync.Once
}

var _ sluice.Client = (*Client)(nil)

// Dial returns a client of the server at addr: "host:port", or a base URL
// ("http://host:port"). It does not connect until the first call.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, &sluice.InvalidError{Field: "addr", Reason: "required"}
	}
	base := addr
	if !strings.Contains(addr, "://") {
		if o.tls != nil {
			base = "https://" + addr
		} else {
			base = "http://" + addr
		}
	}
	c := &Client{opts: o, hc: o.httpClient, batchers: map[string]*batcher{}}
	if c.hc == nil {
		var p http.Protocols
		// Ping a connection that has been silent for healthPingAfter and
		// close it when no answer comes in healthPingTimeout: a connection
		// that went silent without a reset (a NAT or load balancer that
		// forgot it) otherwise keeps every call and stream on it hanging
		// until the kernel gives up on it, minutes later.
		tr := &http.Transport{Protocols: &p, HTTP2: &http.HTTP2Config{
			SendPingTimeout: healthPingAfter, PingTimeout: healthPingTimeout}}
		if o.tls != nil {
			p.SetHTTP2(true)
			tr.TLSClientConfig = o.tls.Clone()
		} else {
			p.SetUnencryptedHTTP2(true)
		}
		c.hc = &http.Client{Transport: tr}
		c.own = true
	}
	// No gzip: on the networks a broker runs on, compressing small messages
	// costs more CPU than it saves (it was the largest cost of a publish).
	copts := []connect.ClientOption{connect.WithInterceptors(interceptor{&c.opts}), connect.WithAcceptCompression("gzip", nil, nil)}
	if o.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	c.streams = sluicev1connect.NewStreamServiceClient(c.hc, base, copts...)
	c.publish = sluicev1connect.NewPublishServiceClient(c.hc, base, copts...)
	c.read = sluicev1connect.NewReadServiceClient(c.hc, base, copts...)
	c.subs = sluicev1connect.NewSubscriptionServiceClient(c.hc, base, copts...)
	c.cons = sluicev1connect.NewConsumerServiceClient(c.hc, base, copts...)
	c.sched = sluicev1connect.NewScheduleServiceClient(c.hc, base, copts...)
	c.closed, c.close = context.WithCancel(context.Background())
	return c, nil
}

// Close ends the readers' streams and releases the client's idle connections.
// Calls after Close fail; a second Close does nothing.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.close()
		if c.own {
			c.hc.CloseIdleConnections()
		}
	})
	return nil
}

// interceptor sets the default timeout of unary calls and the token header.
type interceptor struct{ o *options }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, i.o.timeout)
			defer cancel()
		}
		if i.o.token != "" {
			req.Header().Set("Authorization", "Bearer "+i.o.token)
		}
		return next(ctx, req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if i.o.token != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+i.o.token)
		}
		return conn
	}
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// live fails a call made after Close.
func (c *Client) live(op string) error {
	if c.closed.Err() != nil {
		return &closedError{op}
	}
	return nil
}

type closedError struct{ op string }

func (e *closedError) Error() string { return "client: " + e.op + ": " + sluice.ErrClosed.Error() }
func (e *closedError) Unwrap() error { return sluice.ErrClosed }

// CreateStream creates a stream; zero config fields take their defaults.
func (c *Client) CreateStream(ctx context.Context, cfg sluice.StreamConfig) (sluice.StreamInfo, error) {
	if err := c.live("CreateStream"); err != nil {
		return sluice.StreamInfo{}, err
	}
	pc, err := streamConfigTo(cfg)
	if err != nil {
		return sluice.StreamInfo{}, err
	}
	res, err := c.streams.CreateStream(ctx, connect.NewRequest(&sluicev1.CreateStreamRequest{Config: pc}))
	if err != nil {
		return sluice.StreamInfo{}, mapError("CreateStream", err)
	}
	return streamInfoFrom(res.Msg.GetStream()), nil
}

// UpdateStream changes a stream's updatable fields.
func (c *Client) UpdateStream(ctx context.Context, cfg sluice.StreamConfig) (sluice.StreamInfo, error) {
	if err := c.live("UpdateStream"); err != nil {
		return sluice.StreamInfo{}, err
	}
	pc, err := streamConfigTo(cfg)
	if err != nil {
		return sluice.StreamInfo{}, err
	}
	res, err := c.streams.UpdateStream(ctx, connect.NewRequest(&sluicev1.UpdateStreamRequest{Config: pc}))
	if err != nil {
		return sluice.StreamInfo{}, mapError("UpdateStream", err)
	}
	return streamInfoFrom(res.Msg.GetStream()), nil
}

// DeleteStream deletes a stream and its messages.
func (c *Client) DeleteStream(ctx context.Context, name string) error {
	if err := c.live("DeleteStream"); err != nil {
		return err
	}
	_, err := c.streams.DeleteStream(ctx, connect.NewRequest(&sluicev1.DeleteStreamRequest{Name: name}))
	return mapError("DeleteStream", err)
}

// ListStreams lists every stream, sorted by name.
func (c *Client) ListStreams(ctx context.Context) ([]sluice.StreamInfo, error) {
	if err := c.live("ListStreams"); err != nil {
		return nil, err
	}
	res, err := c.streams.ListStreams(ctx, connect.NewRequest(&sluicev1.ListStreamsRequest{}))
	if err != nil {
		return nil, mapError("ListStreams", err)
	}
	out := make([]sluice.StreamInfo, len(res.Msg.GetStreams()))
	for i, s := range res.Msg.GetStreams() {
		out[i] = streamInfoFrom(s)
	}
	return out, nil
}

// Stream describes one stream.
func (c *Client) Stream(ctx context.Context, name string) (sluice.StreamInfo, error) {
	if err := c.live("Stream"); err != nil {
		return sluice.StreamInfo{}, err
	}
	res, err := c.streams.GetStream(ctx, connect.NewRequest(&sluicev1.GetStreamRequest{Name: name}))
	if err != nil {
		return sluice.StreamInfo{}, mapError("GetStream", err)
	}
	return streamInfoFrom(res.Msg.GetStream()), nil
}

// Publish stores one message and returns where, once the server has it durable.
// Concurrent publishes to one stream are sent together, as batches that grow
// with the load (see WithoutBatching); each still gets its own answer.
// An error matching sluice.ErrUnavailable leaves the outcome unknown: retry it
// only with an IdempotencyKey (sluice.Producer does).
func (c *Client) Publish(ctx context.Context, stream string, msg sluice.Message) (sluice.Position, error) {
	if err := c.live("Publish"); err != nil {
		return sluice.Position{}, err
	}
	if !c.opts.noBatching {
		return c.publishBatched(ctx, stream, msg)
	}
	res, err := c.publish.Publish(ctx, connect.NewRequest(&sluicev1.PublishRequest{Stream: stream, Message: messageTo(msg)}))
	if err != nil {
		return sluice.Position{}, mapError("Publish", err)
	}
	return positionFrom(res.Msg.GetPosition()), nil
}

// PublishBatch stores msgs, one atomic batch per partition, and returns their
// positions in order.
func (c *Client) PublishBatch(ctx context.Context, stream string, msgs []sluice.Message) ([]sluice.Position, error) {
	if err := c.live("PublishBatch"); err != nil {
		return nil, err
	}
	req := &sluicev1.PublishBatchRequest{Stream: stream, Messages: make([]*sluicev1.Message, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = messageTo(m)
	}
	res, err := c.publish.PublishBatch(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, mapError("PublishBatch", err)
	}
	ps := res.Msg.GetPositions()
	if len(ps) != len(msgs) {
		return nil, fmt.Errorf("client: PublishBatch: server answered %d positions for %d messages", len(ps), len(msgs))
	}
	out := make([]sluice.Position, len(ps))
	for i, p := range ps {
		out[i] = positionFrom(p)
	}
	return out, nil
}
