package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKafkaPeersRoundTrip produces keyed messages over four partitions
// through each Kafka peer and reads every one back, once, from the start.
func TestKafkaPeersRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	for _, f := range kafkaFactories() {
		t.Run(f.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			p, err := f.Open(ctx, t.TempDir(), openOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			}()
			if err := p.Setup(ctx, topology{Partitions: 4, Mode: modeQueue, Subscriptions: []string{"all"}}); err != nil {
				t.Fatal(err)
			}
			pr, err := p.NewProducer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			const n = 1000
			want := map[string]bool{}
			var (
				wg   sync.WaitGroup
				errs firstErr
			)
			for i := range n {
				m := keyed(fmt.Appendf(nil, "body %04d", i), i)
				want[string(m.Body)] = true
				wg.Add(1)
				pr.Publish(ctx, m, func(err error) { errs.set(err); wg.Done() })
			}
			wg.Wait()
			if err := errs.get(); err != nil {
				t.Fatal(err)
			}
			if err := pr.Close(); err != nil {
				t.Fatal(err)
			}
			c, err := p.NewConsumer(ctx, "all", 0)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := map[string]bool{}
			keys := map[string]string{}
			for len(got) < n {
				ds, err := c.Fetch(ctx, fetchBatch)
				if err != nil {
					t.Fatalf("after %d of %d: %v", len(got), n, err)
				}
				if len(ds) > fetchBatch {
					t.Fatalf("Fetch(%d) returned %d", fetchBatch, len(ds))
				}
				for _, d := range ds {
					b := string(d.Body)
					if !want[b] || got[b] {
						t.Fatalf("unexpected or repeated body %q", b)
					}
					got[b] = true
					keys[b] = string(d.Key)
					if err := c.Ack(ctx, d); err != nil {
						t.Fatal(err)
					}
				}
			}
			if keys["body 0007"] != "key-0007" {
				t.Errorf("body 0007 came with key %q", keys["body 0007"])
			}
			short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
			defer stop()
			if ds, err := c.Fetch(short, fetchBatch); err == nil {
				t.Errorf("%d messages beyond the %d produced", len(ds), n)
			}
			if _, err := p.NewConsumer(ctx, "all", 1); err == nil {
				t.Error("a second consumer of one subscription was opened without a group")
			}
		})
	}
}

// TestRunKafkaPeers runs every workload against the Kafka peers with tiny
// counts: the workloads they can run give rows, the others say why not, and
// the summary compares the two.
func TestRunKafkaPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	st := settings{runs: 1, w1For: 100 * time.Millisecond, drainMsgs: 300, fanoutMsgs: 50,
		w3For: 200 * time.Millisecond, memMsgs: 5000, memRuns: 1, runTimeout: time.Minute}
	out := filepath.Join(t.TempDir(), "latest.json")
	var md, progress bytes.Buffer
	sel := selection{systems: "sluice,sluice-kafka,kfake", sizes: "100", out: out}
	if err := run(st, sel, &md, &progress); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if strings.Contains(progress.String(), "error:") {
		t.Fatalf("a run failed:\n%s", progress.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rows []result
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		if r.System == "sluice" {
			continue
		}
		got = append(got, r.Workload+" "+r.System)
		if r.MsgsPerSec <= 0 {
			t.Errorf("%s %s: rate %v", r.Workload, r.System, r.MsgsPerSec)
		}
		if r.Workload == "W1" && (r.P50us == nil || r.P99us == nil) {
			t.Errorf("W1 %s: no produce latency", r.System)
		}
		if want := map[string]string{"sluice-kafka": fsyncBeforeAck, "kfake": noFsyncBeforeAck}[r.System]; r.Durability != want {
			t.Errorf("%s %s: durability %q, want %q", r.Workload, r.System, r.Durability, want)
		}
	}
	var want []string
	for _, w := range []string{"W1", "W2-c1", "W3-r1000", "W3-r5000", "W4"} {
		for _, s := range []string{"sluice-kafka", "kfake"} {
			want = append(want, w+" "+s)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
	for _, s := range []string{
		"- sluice-kafka: four consumers sharing one partition need a Kafka share group",
		"- kfake: Kafka orders by partition, not by key",
		"- kfake: Kafka consumer groups are not measured",
		"- sluice-kafka: the same broker as sluice: measured once",
		"- kfake: kfake keeps every record in the harness's own heap",
		"#### Kafka protocol: sluice-kafka ÷ kfake",
		"| W1 | 100 B | ",
		"| W4 | 100 B | ",
	} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, md.String())
		}
	}
	if strings.Contains(md.String(), "| W3-r1000 | 100 B |") {
		t.Error("the summary has a latency cell")
	}
}
