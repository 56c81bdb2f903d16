// Package server serves a *sluice.Broker over the network: the API defined in
// api/sluice/v1/sluice.proto, over Connect, gRPC and gRPC-Web, with JSON or binary
// protobuf, plus the health endpoints, all from one http.Handler.
//
//	POST /sluice.v1.StreamService/*   create, update, delete, list, get streams
//	POST /sluice.v1.PublishService/*  Publish, PublishBatch, PublishStream (HTTP/2)
//	POST /sluice.v1.ReadService/*     Read, SubscribeLive (server streams)
//	GET  /healthz                     200 while the process serves HTTP
//	GET  /readyz                      200 while the broker is open and the server
//	                                  is not draining, else 503
//
// The services the API declares and this package does not serve yet
// (SubscriptionService, ConsumerService, ScheduleService) answer unimplemented.
//
// The handler does not listen: the caller runs it in an http.Server, which must
// allow HTTP/2 without TLS (http.Protocols.SetUnencryptedHTTP2) for gRPC clients
// and bidirectional streams; cmd/sluice does. Before shutting that server down,
// call Server.Drain, so that the streams in progress end at once instead of
// holding the shutdown until its deadline.
//
// Errors are mapped to codes in one place (connectError), the same for every
// RPC: the message names the request field (as a path such as
// "config.partitions" or "messages[3].key") or the limit at fault, and typed
// details carry the rest (FieldViolation, StreamFull, RetryInfo). Request size is
// bounded by Options.MaxRequestBytes, and JSON requests with fields the API does
// not have are refused rather than half understood.
package server
