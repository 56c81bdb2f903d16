package main

import (
	"flag"
	"fmt"

	"github.com/sluicemq/sluice/internal/diskcheck"
)

func runDiskcheck(args []string) error {
	fs := flag.NewFlagSet("diskcheck", flag.ContinueOnError)
	dir := fs.String("dir", ".", "directory on the disk to measure")
	samples := fs.Int("samples", 1000, "fdatasync samples")
	total := fs.Int64("bytes", 256<<20, "bytes to write for the bandwidth figure")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lat, err := diskcheck.FsyncLatency(*dir, *samples)
	if err != nil {
		return err
	}
	fmt.Printf("fdatasync after a 4 KiB append (%d samples): p50 %v  p99 %v  max %v\n", lat.Samples, lat.P50, lat.P99, lat.Max)
	for _, chunk := range []int{64 << 10, 1 << 20} {
		bw, err := diskcheck.SeqWriteSync(*dir, *total, chunk)
		if err != nil {
			return err
		}
		fmt.Printf("sequential write, fdatasync every %4d KiB: %7.1f MB/s\n", chunk>>10, bw/1e6)
	}
	return nil
}
