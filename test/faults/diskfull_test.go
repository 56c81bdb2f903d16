//go:build linux

package faults

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice"
)

// tmpfsBytes is the size of the file system the broker runs on.
const tmpfsBytes = 16 << 20

// diskFullCase is one way to fill the disk: the space runs out in a different
// write of the partition's writer.
type diskFullCase struct {
	name string
	sync sluice.SyncPolicy
	// segment is StreamConfig.SegmentBytes: small next to free, so that
	// several segments roll (and are zero-filled ahead, under SyncAlways)
	// before the space runs out.
	segment int64
	// body is the size of each message's body.
	body int
	// free is the room left once the ballast is written: a few segments'
	// worth, so that the disk fills within seconds.
	free int64
}

var diskFullCases = []diskFullCase{
	// Small groups under SyncAlways: the writer zero-fills each segment ahead
	// of the data, so the space runs out in a zero-fill.
	{name: "always/zero-fill", sync: sluice.SyncAlways, segment: 256 << 10, body: 2000, free: 3 << 20},
	// Groups past 128 KiB on average are not zero-filled ahead: the space runs
	// out in the group's own write, which may be cut short.
	{name: "always/large-groups", sync: sluice.SyncAlways, segment: 1 << 20, body: 60 << 10, free: 5 << 20},
	// No preallocation either: acknowledged after the write.
	{name: "interval", sync: sluice.SyncInterval, segment: 256 << 10, body: 2000, free: 3 << 20},
}

// TestDiskFull runs the server on a small tmpfs, mostly taken by a ballast
// file, and publishes from several goroutines until the disk is full.
// Publishes must then fail with an error naming the lack of space, promptly,
// while the server keeps answering and serving the acknowledged messages. The
// server is stopped while the disk is still full (its shutdown must not hang),
// the ballast removed and the server restarted: every acknowledged message
// must read back with its body, nothing may be quarantined, and publishing
// must work again.
func TestDiskFull(t *testing.T) {
	for _, tc := range diskFullCases {
		t.Run(tc.name, func(t *testing.T) { testDiskFull(t, tc) })
	}
}

func testDiskFull(t *testing.T, tc diskFullCase) {
	mnt := mountTmpfs(t, tmpfsBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	data := filepath.Join(mnt, "data")
	const partitions = 2

	s := startServer(t, data)
	if _, err := s.c.CreateStream(ctx, sluice.StreamConfig{Name: "a", Partitions: partitions, SegmentBytes: tc.segment, Sync: tc.sync}); err != nil {
		t.Fatalf("create stream: %v\nserver output:\n%s", err, s.output())
	}
	ballast := filepath.Join(mnt, "ballast")
	fillBallast(t, ballast, freeBytes(t, mnt)-tc.free)
	t.Logf("tmpfs of %d MiB, %d KiB free after the ballast", tmpfsBytes>>20, freeBytes(t, mnt)>>10)

	const workers, maxEach, errsEach = 8, 3000, 3
	outcomes := publishUntilRefused(ctx, s, workers, maxEach, errsEach, tc.body)

	acked := map[string]published{}
	var failed []published
	for _, p := range outcomes {
		if p.err == nil {
			acked[p.key] = p
		} else {
			failed = append(failed, p)
		}
	}
	t.Logf("%d publishes: %d acknowledged, %d failed; %d KiB free", len(outcomes), len(acked), len(failed), freeBytes(t, mnt)>>10)
	if len(failed) == 0 {
		t.Fatalf("no publish failed after %d: the disk did not fill", len(outcomes))
	}
	if len(acked) == 0 {
		t.Fatalf("no publish was acknowledged; first error: %v", failed[0].err)
	}
	// Rejected cleanly: an answer (not a timeout) that names the cause.
	for _, p := range failed {
		if msg := p.err.Error(); !strings.Contains(msg, "no space left on device") {
			t.Errorf("publish %s: error %q; want one naming the lack of space", p.key, msg)
		}
	}
	if err := s.alive(); err != nil {
		t.Fatalf("with the disk full: %v\nserver output:\n%s", err, s.output())
	}
	if _, err := s.c.ListStreams(ctx); err != nil {
		t.Errorf("ListStreams with the disk full: %v", err)
	}
	for part := range partitions {
		recs, err := readAll(ctx, s.c, "a", part)
		if err != nil {
			t.Fatalf("with the disk full: %v", err)
		}
		checkAcked(t, "disk full", recs, part, acked, outcomes)
	}

	// Shut down with the disk still full, then free the space and restart.
	s.stop()
	t.Logf("server output before the restart:\n%s", s.output())
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data)
	if err := s.alive(); err != nil {
		t.Fatal(err)
	}
	total, extra := 0, 0
	for part := range partitions {
		recs, err := readAll(ctx, s.c, "a", part)
		if err != nil {
			t.Fatalf("after restart: %v\nserver output:\n%s", err, s.output())
		}
		total += len(recs)
		extra += checkAcked(t, "after restart", recs, part, acked, outcomes)
	}
	t.Logf("after restart: %d messages (%d publishes were acknowledged); %d of the %d failed publishes were stored anyway",
		total, len(acked), extra, len(failed))
	if out := s.output(); strings.Contains(out, "quarantine") || strings.Contains(out, "corrupt") {
		t.Errorf("the restarted server reports damaged data:\n%s", out)
	}
	if bad := badSegments(t, data); len(bad) > 0 {
		t.Errorf("quarantined segments after restart: %v", bad)
	}
	for part := range partitions {
		want := body(fmt.Sprintf("after-%d", part), tc.body)
		pos, err := s.c.Publish(ctx, "a", sluice.Message{Partition: &part, Body: want})
		if err != nil {
			t.Errorf("publish to partition %d after restart: %v", part, err)
			continue
		}
		recs, err := readAll(ctx, s.c, "a", part)
		if err != nil || len(recs) == 0 || recs[len(recs)-1].Offset != pos.Offset || string(recs[len(recs)-1].Body) != string(want) {
			t.Errorf("partition %d after restart: the new message at %d does not read back (%d records, %v)", part, pos.Offset, len(recs), err)
		}
	}
	t.Logf("server output after the restart:\n%s", s.output())
}

// freeBytes is the space an unprivileged writer could still use on dir's file system.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillBallast writes n bytes to path (written, not sparse: tmpfs allocates
// only what is written).
func fillBallast(t *testing.T, path string, n int64) {
	t.Helper()
	if n <= 0 {
		t.Fatalf("no room for ballast: want %d bytes", n)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = 0xa5
	}
	for n > 0 {
		w, err := f.Write(chunk[:min(n, int64(len(chunk)))])
		if err != nil {
			t.Fatalf("write ballast: %v", err)
		}
		n -= int64(w)
	}
}

// badSegments lists the quarantined segments (*.bad) under dir.
func badSegments(t *testing.T, dir string) []string {
	t.Helper()
	var bad []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(d.Name(), ".bad") {
			bad = append(bad, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}
