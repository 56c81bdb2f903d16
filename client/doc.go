// Package client is the Go network client of a sluice server (package server,
// run by `sluice serve`). Dial returns a *Client that implements sluice.Client,
// so code written against the embedded *sluice.Broker runs unchanged against a
// server:
//
//	c, err := client.Dial("127.0.0.1:7070")
//	if err != nil { ... }
//	defer c.Close()
//	pos, err := c.Publish(ctx, "orders", sluice.Message{Body: body, IdempotencyKey: id})
//
// # Transport
//
// One http.Client speaking HTTP/2 without TLS (h2c) is shared by every service
// client, so all calls of a Client share one connection. The Connect protocol
// is the default; WithGRPC switches to gRPC. Both carry binary protobuf.
//
// # Errors
//
// A server's answer is mapped back to the errors the embedded broker returns,
// so that errors.Is and errors.As work the same way:
//
//	not_found            sluice.ErrStreamNotFound (or ErrSubscriptionNotFound,
//	                     ErrScheduleNotFound, ErrDeadLetterNotFound by message)
//	already_exists       sluice.ErrStreamExists (or the subscription, schedule one)
//	invalid_argument     *sluice.InvalidError; Field is the request path the
//	                     server names ("config.partitions"), not the Go name
//	resource_exhausted   *sluice.StreamFullError with RetryAfter when the server
//	                     sent a StreamFull detail, else ErrLimit (a request over
//	                     one of the server's limits, which the message names)
//	unauthenticated      sluice.ErrUnauthenticated
//	permission_denied    sluice.ErrPermissionDenied
//	failed_precondition  sluice.ErrStaleLease
//	data_loss            sluice.ErrCorrupt
//	unavailable          sluice.ErrUnavailable: the outcome is unknown; so are a
//	                     refused or broken connection and a deadline that ran out
//	                     after the request may have gone out (the latter also
//	                     matches context.DeadlineExceeded)
//	canceled             context.Canceled
//	unimplemented        ErrUnimplemented: the server does not serve it
//
// A sluice.Producer over a Client therefore retries a publish whose outcome is
// unknown when the message has an IdempotencyKey, and only then.
//
// # Readers and consumers
//
// NewReader and SubscribeLive follow a server stream. A stream that breaks with
// an unknown outcome is reopened from the offset after the last record received,
// with backoff, so Next returns every record once and in order.
//
// NewConsumer runs over one ConsumerService.Consume stream with credit-based
// flow control: each Fetch grants credit for what it asks. A broken stream is
// reopened by the next Fetch, with backoff; leases belong to the subscription,
// so what the consumer holds survives it.
package client
