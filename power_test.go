package sluice

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sluicemq/sluice/internal/vfs"
)

// TestPowerLossKeepsStreamsAndAcknowledgedMessages runs the broker on a file system
// that loses everything not synced at a crash, and checks that acknowledged stream
// creations, deletions, updates and messages survive.
func TestPowerLossKeepsStreamsAndAcknowledgedMessages(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(20) {
		fs := vfs.NewMem()
		rng := rand.New(rand.NewPCG(seed, 7))
		open := func() *Broker {
			b, err := Open("/data", &Options{fs: fs})
			if err != nil {
				t.Fatalf("seed %d: open: %v", seed, err)
			}
			return b
		}
		b := open()
		if _, err := b.CreateStream(ctx, StreamConfig{Name: "keep", Partitions: 2, SegmentBytes: 4096}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.CreateStream(ctx, StreamConfig{Name: "gone"}); err != nil {
			t.Fatal(err)
		}
		acked := map[Position]string{}
		for i := range 50 + rng.IntN(200) {
			body := fmt.Sprintf("m%d", i)
			pos, err := b.Publish(ctx, "keep", Message{Body: []byte(body)})
			if err != nil {
				t.Fatal(err)
			}
			acked[pos] = body
		}
		if err := b.DeleteStream(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.UpdateStream(ctx, StreamConfig{Name: "keep", Partitions: 3}); err != nil {
			t.Fatal(err)
		}
		fs.Crash(rng)
		b.Close() // the old broker's files are gone; errors are expected
		b = open()
		if _, err := b.Stream(ctx, "gone"); !errors.Is(err, ErrStreamNotFound) {
			t.Fatalf("seed %d: deleted stream after crash: %v", seed, err)
		}
		info, err := b.Stream(ctx, "keep")
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if info.Config.Partitions != 3 {
			t.Fatalf("seed %d: %d partitions after an acknowledged update to 3", seed, info.Config.Partitions)
		}
		for pos, body := range acked {
			r, err := b.NewReader(ctx, "keep", ReaderConfig{Partition: pos.Partition, Start: AtOffset(pos.Offset)})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := r.Next(ctx)
			if err != nil || rec.Offset != pos.Offset || string(rec.Body) != body {
				t.Fatalf("seed %d: acknowledged %q at %+v, read %d %q %v", seed, body, pos, rec.Offset, rec.Body, err)
			}
			r.Close()
		}
		b.Close()
	}
}
