package diskcheck

import "testing"

func TestMeasurementsAreSane(t *testing.T) {
	dir := t.TempDir()
	l, err := FsyncLatency(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
		t.Fatalf("latency distribution out of order: %+v", l)
	}
	bw, err := SeqWriteSync(dir, 4<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if bw <= 0 {
		t.Fatalf("bandwidth %v", bw)
	}
	if _, err := SeqWriteSync(dir, 1<<20, 100); err == nil {
		t.Fatal("a chunk below 512 bytes was accepted")
	}
	if _, err := FsyncLatency(dir, 0); err == nil {
		t.Fatal("zero samples were accepted")
	}
}

// BenchmarkDiskSeqWriteSync is the reference for the durable publish benchmarks:
// sequential 1 MiB writes, each followed by fdatasync.
func BenchmarkDiskSeqWriteSync(b *testing.B) {
	dir := b.TempDir()
	b.SetBytes(1 << 20)
	for b.Loop() {
		if _, err := SeqWriteSync(dir, 1<<20, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}
