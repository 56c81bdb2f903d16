// Package faults is the reliability suite's fault-injection tests: it runs the
// sluice binary as a separate process and breaks the storage under it.
//
//   - TestFsyncEIO runs the server under strace, which makes one fdatasync of a
//     partition's segment fail with EIO while publishers are waiting on it
//     (strace counts calls per thread, and -P limits the injection to that
//     file). The partition must fail stop: no publish waiting on that sync
//     (found from strace's record of the writes before it), nor any later
//     one, is acknowledged, nothing more is written, the server keeps serving
//     everything else, and after a restart every acknowledged message is there.
//   - TestDiskFull runs the server on a small tmpfs and publishes until the
//     disk is full. Publishes must be rejected with an error that names the
//     cause, the server must keep answering, and once space is freed and the
//     server restarted every acknowledged message must read back intact.
//
// Both need Linux and root-like privileges (strace's ptrace, mount -t tmpfs);
// they skip, saying why, where those are missing. The package holds tests only.
package faults
