package logstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/sluicemq/sluice/internal/batch"
	"github.com/sluicemq/sluice/internal/vfs"
)

// TestPropertyAppendSyncCrashReopen drives a SyncAlways partition on vfs.Mem with
// random sequences of appends (random batch and record sizes, one or several
// batches per call), crashes (a rapid-drawn tear of the unsynced bytes), clean
// reopens and reads from random offsets with random limits, against a model: the
// list of acknowledged batches. Appends are synchronous here, so nothing is in
// flight at a crash, and after every crash and reopen the log must equal the model
// exactly: every acknowledged batch at its offset, nothing else.
func TestPropertyAppendSyncCrashReopen(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		fs := vfs.NewMem()
		cfg := Config{
			Dir:                "/data/p0",
			FS:                 fs,
			SegmentBytes:       rapid.Int64Range(MinSegmentBytes, 3*MinSegmentBytes).Draw(rt, "segmentBytes"),
			IndexIntervalBytes: rapid.Int64Range(64, 1024).Draw(rt, "indexIntervalBytes"),
			Logger:             quietLogger,
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p, err := Open(cfg)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { p.Close() }()

		var model [][]byte    // acknowledged batches as sent, in offset order
		at := map[int64]int{} // base offset -> index in model
		next := int64(0)      // offset the next batch gets

		checkLog := func(rt *rapid.T, when string) {
			if st, hw := p.StartOffset(), p.HighWatermark(); st != 0 || hw != next {
				rt.Fatalf("%s: log is [%d, %d), model [0, %d)", when, st, hw, next)
			}
			got, err := readBatches(p, 0, rapid.IntRange(1, 64<<10).Draw(rt, "maxBytes"))
			if err != nil {
				rt.Fatalf("%s: %v", when, err)
			}
			if len(got) != len(model) {
				rt.Fatalf("%s: %d batches in the log, %d acknowledged", when, len(got), len(model))
			}
			for i, b := range got {
				if j, ok := at[b.base]; !ok || j != i || !sameBatch(b.data, model[i]) {
					rt.Fatalf("%s: batch %d at offset %d differs from the model", when, i, b.base)
				}
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				n := rapid.IntRange(1, 3).Draw(rt, "batches")
				var sent, args [][]byte
				var counts []int
				for range n {
					recs := make([]batch.Record, rapid.IntRange(1, 30).Draw(rt, "records"))
					size := rapid.IntRange(0, 300).Draw(rt, "valueBytes")
					if rapid.IntRange(0, 9).Draw(rt, "big") == 0 {
						size = rapid.IntRange(1000, 2*MinSegmentBytes).Draw(rt, "bigValueBytes")
					}
					for i := range recs {
						v := bytes.Repeat([]byte{byte(len(model) + i)}, size/len(recs))
						recs[i] = batch.Record{Timestamp: int64(len(model)), Key: []byte(fmt.Sprint(len(model) + len(sent))), Value: v}
					}
					b := batch.Append(nil, recs)
					sent = append(sent, b)
					args = append(args, bytes.Clone(b))
					counts = append(counts, len(recs))
				}
				base, err := p.Append(ctx, args...)
				if err != nil {
					rt.Fatalf("append: %v", err)
				}
				if base != next {
					rt.Fatalf("append got base %d, want %d", base, next)
				}
				for i, b := range sent {
					at[next] = len(model)
					model = append(model, b)
					next += int64(counts[i])
				}
			},
			"crash": func(rt *rapid.T) {
				seed := rapid.Uint64().Draw(rt, "crashSeed")
				fs.Crash(rand.New(rand.NewPCG(seed, seed)))
				p.Close() // fails: its files are gone
				if p, err = Open(cfg); err != nil {
					rt.Fatalf("reopen after the crash: %v", err)
				}
				checkLog(rt, "after the crash")
			},
			"reopen": func(rt *rapid.T) {
				if err := p.Close(); err != nil {
					rt.Fatalf("close: %v", err)
				}
				if p, err = Open(cfg); err != nil {
					rt.Fatalf("reopen: %v", err)
				}
				checkLog(rt, "after reopening")
			},
			"read": func(rt *rapid.T) {
				off := rapid.Int64Range(0, next).Draw(rt, "offset")
				maxBytes := rapid.IntRange(1, 20<<10).Draw(rt, "maxBytes")
				got, _, err := readOnce(p, off, maxBytes)
				if err != nil {
					rt.Fatal(err)
				}
				for _, b := range got {
					if j, ok := at[b.base]; !ok || !sameBatch(b.data, model[j]) {
						rt.Fatalf("Read(%d, %d): batch at %d differs from the model", off, maxBytes, b.base)
					}
				}
			},
			"": func(rt *rapid.T) {
				if hw := p.HighWatermark(); hw != next {
					rt.Fatalf("high watermark %d, model %d", hw, next)
				}
			},
		})
	})
}
