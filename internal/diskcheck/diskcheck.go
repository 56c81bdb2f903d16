package diskcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// Limits of the measurements.
const (
	MaxSamples = 100000
	MaxBytes   = 16 << 30
)

// Latency is a distribution of fdatasync times.
type Latency struct {
	Samples       int
	P50, P99, Max time.Duration
}

// FsyncLatency appends 4 KiB and fdatasyncs, n times, in a fresh file under dir.
func FsyncLatency(dir string, n int) (Latency, error) {
	if n < 1 || n > MaxSamples {
		return Latency{}, fmt.Errorf("diskcheck: samples %d outside [1, %d]", n, MaxSamples)
	}
	f, cleanup, err := tempFile(dir)
	if err != nil {
		return Latency{}, err
	}
	defer cleanup()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, n)
	for i := range lat {
		if _, err := f.Write(buf); err != nil {
			return Latency{}, err
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			return Latency{}, err
		}
		lat[i] = time.Since(t)
	}
	slices.Sort(lat)
	return Latency{Samples: n, P50: lat[n/2], P99: lat[n*99/100], Max: lat[n-1]}, nil
}

// SeqWriteSync writes total bytes sequentially in chunks of chunk bytes, with an
// fdatasync after each chunk, and returns the bandwidth in bytes per second.
func SeqWriteSync(dir string, total int64, chunk int) (float64, error) {
	if total < 1 || total > MaxBytes {
		return 0, fmt.Errorf("diskcheck: total %d outside [1, %d]", total, int64(MaxBytes))
	}
	if chunk < 512 || int64(chunk) > total {
		return 0, fmt.Errorf("diskcheck: chunk %d outside [512, total=%d]", chunk, total)
	}
	f, cleanup, err := tempFile(dir)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	start := time.Now()
	var n int64
	for n < total {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n += int64(chunk)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func tempFile(dir string) (vfs.File, func(), error) {
	tmp, err := os.CreateTemp(dir, "diskcheck-*")
	if err != nil {
		return nil, nil, err
	}
	name := tmp.Name()
	tmp.Close()
	f, err := vfs.OS{}.OpenAppend(name)
	if err != nil {
		os.Remove(name)
		return nil, nil, err
	}
	return f, func() { f.Close(); os.Remove(filepath.Clean(name)) }, nil
}
