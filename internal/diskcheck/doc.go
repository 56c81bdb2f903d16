// Package diskcheck measures the limits of the disk under a directory: how long an
// fdatasync takes and how fast sequential writes go when synced periodically. The
// broker's durable publish throughput is judged against these figures, measured on
// the same machine in the same run.
package diskcheck
