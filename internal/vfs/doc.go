// Package vfs is the small file-system interface the storage engine writes through,
// with two implementations: OS, the real one, and Mem, an in-memory file system that
// models what a crash keeps.
//
// Mem tracks, for every file, the bytes that were made durable by Sync and, for every
// directory, the names made durable by SyncDir. Crash throws away what was not made
// durable: unsynced files and names vanish, and a file's unsynced tail is kept only up
// to a random point (a torn write). Tests use it to check that everything the engine
// acknowledged survives, and that a deliberately lazy engine is caught.
package vfs
