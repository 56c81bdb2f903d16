// Package vfs is the small file-system interface the storage engine writes through,
// with two implementations: OS, the real one, and Mem, an in-memory file system that
// models what a crash keeps.
//
// Mem tracks, for every file, the content made durable by its last Sync and the list
// of writes and truncates made since, and, for every directory, the names made
// durable by SyncDir. Crash throws away what was not made durable: unsynced files
// and names vanish, and each file keeps its synced content with a random prefix of
// the later changes applied in order, the last one possibly torn at a random point
// (and, if that write extended the file, possibly with zeros instead of its missing
// bytes: the new size reached the disk, the data did not). Writes in place, over
// bytes that were synced, are thus lost or torn like appends. Tests use it to check
// that everything the engine acknowledged survives, and that a deliberately lazy
// engine is caught.
//
// The model keeps unsynced changes in order; a real disk may persist them in any
// order, sector by sector. SetTearMode(TearSectors) models that for the torn write:
// it keeps whole 512-byte sectors of it, aligned to the file offset, each one
// written or not, so sector N+1 may survive without sector N. The engine does not
// rely on the order: it syncs before it acknowledges, and its recovery checks every
// byte it keeps.
//
// PowerCut is a Crash after which every operation fails until PowerOn, so that a
// program still running when the test cuts the power cannot write into the world
// the crash left.
package vfs
