package logstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// TestZeroTailIsCleanEnd: zeros after the last batch of the active segment are
// preallocated space, not damage. Open ends the data there without a warning and
// keeps the zeros, whatever their length (shorter than a length field, longer than
// a scan window); the next append overwrites them; Close leaves the file ending
// with its last batch.
func TestZeroTailIsCleanEnd(t *testing.T) {
	for _, zeros := range []int{1, 11, batchLengthField, batch.HeaderSize, 4096, scanWindow + 5000} {
		t.Run(fmt.Sprint(zeros), func(t *testing.T) {
			cfg, sent := sealedLog(t)
			logs := captureLogs(&cfg)
			segs := segmentPaths(t, cfg)
			active := segs[len(segs)-1]
			before := readFile(t, cfg.FS, active)
			p := mustOpen(t, cfg)
			hw := p.HighWatermark()
			p.Close()
			appendFile(t, cfg.FS, active, make([]byte, zeros))

			p = mustOpen(t, cfg)
			defer func() { p.Close() }()
			if strings.Contains(logs.String(), "level=WARN") {
				t.Fatalf("a zero tail was reported as damage:\n%s", logs)
			}
			if got := p.HighWatermark(); got != hw {
				t.Fatalf("high watermark %d after recovery, want %d", got, hw)
			}
			if got := readFile(t, cfg.FS, active); len(got) != len(before)+zeros || !bytes.HasPrefix(got, before) {
				t.Fatalf("active segment is %d bytes after recovery, want the %d it had and the %d zeros", len(got), len(before), zeros)
			}
			checkAll(t, p, sent)
			b := testBatch("after", 2, 9)
			sent[hw] = bytes.Clone(b)
			if base, err := p.Append(ctxT(t), b); err != nil || base != hw {
				t.Fatalf("append after recovery = %d, %v; want %d", base, err, hw)
			}
			checkAll(t, p, sent)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			got := readFile(t, cfg.FS, active)
			if want := len(before) + len(b); len(got) != want || !bytes.HasPrefix(got, before) {
				t.Fatalf("after Close the active segment is %d bytes, want its %d bytes of batches", len(got), want)
			}
			p = mustOpen(t, cfg)
			checkAll(t, p, sent)
		})
	}
	t.Run("only zeros", func(t *testing.T) {
		cfg := memConfig(vfs.NewMem())
		logs := captureLogs(&cfg)
		mustOpen(t, cfg).Close()
		appendFile(t, cfg.FS, segmentName(cfg.Dir, 0), make([]byte, 5000))
		p := mustOpen(t, cfg)
		defer p.Close()
		if hw := p.HighWatermark(); hw != 0 || strings.Contains(logs.String(), "level=WARN") {
			t.Fatalf("high watermark %d, logs:\n%s", hw, logs)
		}
		if base, err := p.Append(ctxT(t), testBatch("a", 1, 1)); err != nil || base != 0 {
			t.Fatalf("append = %d, %v", base, err)
		}
	})
}

// staleAfterGap builds the file a disk can leave when it persists the later
// sectors of an unsynced group but not all of the earlier ones: after the last
// batch, a gap the length of the next batch (zeros, or the torn start of a batch),
// then a stale batch whose offsets continue that next one. It opens the log,
// appends the next batch, crashes (keeping what was synced) and reopens, and
// returns an error if the stale batch is served.
func staleAfterGap(t *testing.T, gap func(n int) []byte, zeroLengthEnds bool) error {
	cfg, sent := sealedLog(t)
	cfg.zeroLengthEnds = zeroLengthEnds
	fs := cfg.FS.(*vfs.Mem)
	segs := segmentPaths(t, cfg)
	active := segs[len(segs)-1]
	p := mustOpen(t, cfg)
	hw := p.HighWatermark()
	p.Close()

	next := testBatch("next", 3, 5)
	stale := testBatch("stale", 2, 7)
	batch.SetBaseOffset(stale, hw+3)
	appendFile(t, fs, active, append(gap(len(next)), stale...))

	p = mustOpen(t, cfg)
	sent[hw] = bytes.Clone(next)
	if base, err := p.Append(ctxT(t), next); err != nil || base != hw {
		p.Close()
		t.Fatalf("append = %d, %v; want %d", base, err, hw)
	}
	fs.Crash(nil)
	p.Close() // fails: its files are gone
	p = mustOpen(t, cfg)
	defer p.Close()
	if got := p.HighWatermark(); got != hw+3 {
		return fmt.Errorf("high watermark %d after the crash, want %d: the stale batch is served", got, hw+3)
	}
	got, err := readBatches(p, 0, 4<<10)
	if err != nil {
		return err
	}
	return sent.check(got)
}

// TestStaleBatchAfterGapNeverServed: anything after the last valid batch of the
// active segment that is not all zeros is a torn tail, and recovery truncates all
// of it. Since the writer writes at its position rather than appending, a
// recovery that kept those bytes would have the next append overwrite the gap
// and make a stale batch after it look continuous. The mutant that takes the
// first zero length field for the end must be caught. (So must one that does not
// truncate at all; it has no switch here, but it fails the garbage case, as it
// fails TestTornTailTruncated.)
func TestStaleBatchAfterGapNeverServed(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	torn := func(n int) []byte { b := testBatch("torn", 3, 5)[:n]; b[n-1] ^= 0xff; return b }
	for name, gap := range map[string]func(int) []byte{"zeros": zeros, "torn batch": torn} {
		if err := staleAfterGap(t, gap, false); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := staleAfterGap(t, zeros, true); err == nil {
		t.Fatal("the zero-length-ends mutant kept a stale batch and the check did not notice")
	} else {
		t.Logf("mutant caught: %v", err)
	}
}

// TestSealedSegmentsEndWithTheirData: while a SyncAlways partition is open its
// active segment is zero-filled ahead of the data; every sealed segment, and the
// active one after Close, ends exactly with its last batch, and a crash at any
// point keeps them so (the crash tests check the acknowledged data).
func TestSealedSegmentsEndWithTheirData(t *testing.T) {
	cfg := memConfig(vfs.NewMem())
	p := mustOpen(t, cfg)
	sent := sentLog{}
	appendMixed(t, p, sent, 150)
	segs := segmentPaths(t, cfg)
	if len(segs) < 5 {
		t.Fatalf("want at least 5 segments, have %d", len(segs))
	}
	endsWithData := func(seg string) error {
		data := readFile(t, cfg.FS, seg)
		for pos := 0; pos < len(data); {
			size, err := batch.PeekSize(data[pos:])
			if err != nil || pos+size > len(data) {
				return fmt.Errorf("%s: %d bytes after the batch ending at %d", seg, len(data)-pos, pos)
			}
			if _, err := batch.Verify(data[pos : pos+size]); err != nil {
				return fmt.Errorf("%s at %d: %w", seg, pos, err)
			}
			pos += size
		}
		return nil
	}
	for _, seg := range segs[:len(segs)-1] {
		if err := endsWithData(seg); err != nil {
			t.Fatalf("sealed segment: %v", err)
		}
	}
	active := segs[len(segs)-1]
	if err := endsWithData(active); err == nil {
		t.Fatal("the open active segment is not preallocated")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := endsWithData(active); err != nil {
		t.Fatalf("after Close: %v", err)
	}
	p = mustOpen(t, cfg)
	defer p.Close()
	checkAll(t, p, sent)
}

// prezeroRun appends n batches of valueBytes one at a time (groups of one) to a
// SyncAlways partition with 256 KiB segments on a growthTracker, and returns it.
func prezeroRun(t *testing.T, cfg Config, n, valueBytes int) *growthTracker {
	t.Helper()
	fs := &growthTracker{Mem: vfs.NewMem()}
	cfg.Dir, cfg.FS, cfg.SegmentBytes, cfg.IndexIntervalBytes, cfg.Logger = "/data/p0", fs, 256<<10, 4<<10, quietLogger
	p := mustOpen(t, cfg)
	defer p.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	value := make([]byte, valueBytes)
	for i := range n {
		for j := range value {
			value[j] = byte(rng.Uint32() | 1)
		}
		b := batch.Append(nil, []batch.Record{{Timestamp: int64(i), Value: value}})
		if _, err := p.Append(ctxT(t), b); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

// TestPrezeroSparesSyncsTheFileGrowth: with small groups under SyncAlways, only
// the first group of a segment finds the file longer at its fdatasync; every later
// one overwrites zeros that were synced before, which is what makes its fdatasync
// cheaper on ext4. The mutant that skips the sync of the zeros leaves the growth to
// the next group's fdatasync and must be caught.
func TestPrezeroSparesSyncsTheFileGrowth(t *testing.T) {
	for _, mutant := range []bool{false, true} {
		// 300 groups of one batch of about 370 bytes: one segment.
		zeroWrites, dataSyncs, growths := prezeroRun(t, Config{prezeroNoSync: mutant}, 300, 300).counts()
		if dataSyncs < 300 || zeroWrites == 0 {
			t.Fatalf("mutant %v: %d syncs after data for 300 groups, %d writes of zeros", mutant, dataSyncs, zeroWrites)
		}
		switch {
		case !mutant && growths != 1:
			t.Fatalf("%d of %d syncs after data grew the file, want only the first", growths, dataSyncs)
		case mutant && growths == 1:
			t.Fatal("the mutant that skips the sync of the zeros went unnoticed")
		}
	}
}

// TestPrezeroPolicy: zero-filling writes every byte twice, which pays only under
// SyncAlways and while groups are small. Under the lazier policies nothing is
// zero-filled, nor once the average group has grown past prezeroMaxGroupBytes.
func TestPrezeroPolicy(t *testing.T) {
	for _, sync := range []SyncPolicy{SyncInterval, SyncNever} {
		if zeroWrites, _, _ := prezeroRun(t, Config{Sync: sync}, 50, 300).counts(); zeroWrites != 0 {
			t.Fatalf("%v: %d writes of zeros", sync, zeroWrites)
		}
	}
	// Groups of one 160 KiB batch, one per segment: the average passes the bound
	// after about a dozen groups, and the segments after that are not zero-filled.
	early, _, _ := prezeroRun(t, Config{}, 15, 160<<10).counts()
	all, _, _ := prezeroRun(t, Config{}, 30, 160<<10).counts()
	if early == 0 || all != early {
		t.Fatalf("writes of zeros: %d in the first 15 large groups, %d in 30", early, all)
	}
}
