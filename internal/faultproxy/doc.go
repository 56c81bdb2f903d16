// Package faultproxy is a TCP proxy that injects network faults between a
// client and a server, for the reliability tests: latency with jitter,
// connections reset with RST (at once, or after a random number of bytes),
// blackholes (a connection stays open and carries nothing until the blackhole
// lifts, as a partition looks to TCP, which retransmits rather than drops) and
// sliced writes (each write split into small chunks sent with small pauses).
//
// A Proxy listens on 127.0.0.1 and dials its target once per accepted
// connection. Faults are set per direction (Upstream is client to server,
// Downstream is server to client) and take effect at once on open
// connections as well as new ones; Clear removes them all.
//
// Each connection runs four goroutines, a reader and a writer per direction,
// joined by a bounded queue of chunks stamped with the time they were read:
// the writer sends a chunk once its latency has passed since that stamp, so
// latency delays the data without limiting the throughput, and the bounded
// queue gives the reader back-pressure when the writer is held (blackhole,
// slicing). Close stops accepting, closes every connection and joins every
// goroutine.
package faultproxy
