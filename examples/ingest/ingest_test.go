package main

import (
	"context"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDemo(t *testing.T) {
	testenv.Run(t, func(ctx context.Context, t *testing.T, cli sluice.Client) {
		rep, err := demo(ctx, cli, t.Output())
		if err != nil {
			t.Fatal(err)
		}
		if want := 2 * rounds * len(devices); rep.Published != want {
			t.Errorf("published %d readings, want %d", rep.Published, want)
		}
		// Each partition's readings were applied in offset order, from its
		// first to its last, each once; each device's from one partition,
		// in the order it sent them, each once.
		seqs := map[string][]int64{}
		partOf := map[string]int{}
		for part, as := range rep.Applied {
			for i, a := range as {
				if a.Offset != int64(i) {
					t.Errorf("partition %d: applied offset %d at position %d, want %d", part, a.Offset, i, i)
				}
				if p, ok := partOf[a.Device]; ok && p != part {
					t.Errorf("%s in partitions %d and %d", a.Device, p, part)
				}
				partOf[a.Device] = part
				seqs[a.Device] = append(seqs[a.Device], a.Seq)
			}
		}
		want := make([]int64, 2*rounds)
		for i := range want {
			want[i] = int64(i + 1)
		}
		for _, dev := range devices {
			if !slices.Equal(seqs[dev], want) {
				t.Errorf("%s: applied readings %v, want %v", dev, seqs[dev], want)
			}
		}
		// The group: three members, then two, holding every partition once.
		if len(rep.Groups) != 2 {
			t.Fatalf("%d group snapshots, want 2", len(rep.Groups))
		}
		for i, names := range [][]string{{"member-1", "member-2", "member-3"}, {"member-1", "member-2"}} {
			var got []string
			var parts []int
			for _, m := range rep.Groups[i] {
				got = append(got, m.Name)
				parts = append(parts, m.Partitions...)
			}
			slices.Sort(parts)
			if !slices.Equal(got, names) || !slices.Equal(parts, []int{0, 1, 2, 3, 4, 5, 6, 7}) {
				t.Errorf("group %d: %+v, want %v holding partitions 0..7 once", i+1, rep.Groups[i], names)
			}
		}
		info, err := cli.Subscription(ctx, rep.Stream, rep.Subscription)
		if err != nil {
			t.Fatal(err)
		}
		if info.Backlog != 0 || info.DeadLettered != 0 {
			t.Errorf("backlog %d, dead-lettered %d; want 0 and 0", info.Backlog, info.DeadLettered)
		}
	})
}
