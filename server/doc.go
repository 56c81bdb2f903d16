// Package server serves a *sluice.Broker over the network: the API defined in
// api/sluice/v1/sluice.proto, over Connect, gRPC and gRPC-Web, with JSON or binary
// protobuf, plus the health endpoints, all from one http.Handler.
//
//	POST /sluice.v1.StreamService/*   create, update, delete, list, get streams
//	POST /sluice.v1.PublishService/*  Publish, PublishBatch, PublishStream (HTTP/2)
//	POST /sluice.v1.ReadService/*     Read, SubscribeLive (server streams)
//	POST /sluice.v1.SubscriptionService/*  subscriptions, parked keys, dead letters
//	POST /sluice.v1.ConsumerService/*      Consume (a bidirectional stream with
//	                                       credit), Fetch, Ack, Nack, Term, Extend
//	POST /sluice.v1.ScheduleService/*      schedules
//	GET  /healthz                     200 while the process serves HTTP
//	GET  /readyz                      200 while the broker is open and the server
//	                                  is not draining, else 503
//	GET  /metrics                     Prometheus metrics, when Options.Metrics is set
//
// Server.Serve listens with the limits of Options (connections, streams per
// connection, header bytes, timeouts that cut slow and half-open connections
// off), over TLS when Options.TLS is set, and Server.Shutdown drains and stops
// it. Options.Tokens turns on bearer-token authentication, checked per request
// (and per message of a stream) against each token's publish, consume and admin
// stream patterns. Handler is the same API without the listener, for a caller
// that runs its own http.Server (which must allow HTTP/2 without TLS for gRPC
// and bidirectional streams); call Drain before shutting that server down, so
// that the streams in progress end at once.
//
// Errors are mapped to codes in one place (connectError), the same for every
// RPC: the message names the request field (as a path such as
// "config.partitions" or "messages[3].key") or the limit at fault, and typed
// details carry the rest (FieldViolation, StreamFull, RetryInfo). Request size is
// bounded by Options.MaxRequestBytes, and JSON requests with fields the API does
// not have are refused rather than half understood.
package server
