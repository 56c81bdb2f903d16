package diskcheck

import (
	"fmt"
	"testing"
)

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
// sequential writes of one chunk, each followed by fdatasync, on one file. With 64
// publishers of 1 KiB messages, at most 64 KiB can share one fdatasync, so the
// 64 KiB row is the bound for that case and the 1 MiB row the disk's streaming rate.
func BenchmarkDiskSeqWriteSync(b *testing.B) {
	for _, chunk := range []int{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", chunk>>10), func(b *testing.B) {
			f, cleanup, err := tempFile(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer cleanup()
			buf := make([]byte, chunk)
			b.SetBytes(int64(chunk))
			for b.Loop() {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
