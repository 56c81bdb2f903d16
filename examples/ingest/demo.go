package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/examples/internal/broker"
)

// rounds is how many readings each device sends in each of the demo's two
// batches.
const rounds = 5

// report is what the demo did, for its test.
type report struct {
	Stream, Subscription string
	// Published counts the readings sent.
	Published int
	// Groups are the group's members and their partitions, before and after
	// member-3 left.
	Groups [][]sluice.GroupMember
	// Applied are the readings applied, per partition, in the order applied;
	// Skipped counts the repeats.
	Applied map[int][]applied
	Skipped int
}

// demo starts a group of three members, sends a batch of readings, lets one
// member leave, sends another batch, and shows who consumed what, in which
// order.
func demo(ctx context.Context, cli sluice.Client, out io.Writer) (report, error) {
	say := log.New(out, "", 0)
	p := pipeline{stream: broker.DemoName("readings"), sub: "indexer"}
	rep := report{Stream: p.stream, Subscription: p.sub}
	if err := p.create(ctx, cli); err != nil {
		return rep, err
	}
	s := newSink(nil)

	// Three members, each with a cancel of its own to make it leave.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	errc := make(chan error, 3)
	leave := make([]context.CancelFunc, 3)
	for i := range leave {
		var mctx context.Context
		mctx, leave[i] = context.WithCancel(ctx)
		wg.Go(func() {
			if err := p.member(mctx, cli, fmt.Sprintf("member-%d", i+1), s); err != nil {
				errc <- err
			}
		})
	}
	group, err := waitGroup(ctx, cli, p, 3, errc)
	if err != nil {
		return rep, err
	}
	rep.Groups = append(rep.Groups, group)
	say.Printf("stream %s (8 partitions), subscription %s, a group of 3:", p.stream, p.sub)
	sayGroup(say, group)

	seq := int64(0)
	send := func() error {
		for range rounds {
			seq++
			msgs := make([]sluice.Message, 0, len(devices))
			for _, dev := range devices {
				msgs = append(msgs, reading{Device: dev, Seq: seq, Celsius: 20 + float64(seq)/10}.message())
			}
			if _, err := cli.PublishBatch(ctx, p.stream, msgs); err != nil {
				return err
			}
			rep.Published += len(msgs)
		}
		say.Printf("sent %d readings, %d from each of %d devices", rounds*len(devices), rounds, len(devices))
		return waitConsumed(ctx, cli, p, errc)
	}
	if err := send(); err != nil {
		return rep, err
	}

	leave[2]() // member-3 leaves: its partitions move to the others
	group, err = waitGroup(ctx, cli, p, 2, errc)
	if err != nil {
		return rep, err
	}
	rep.Groups = append(rep.Groups, group)
	say.Printf("member-3 left; the group:")
	sayGroup(say, group)
	if err := send(); err != nil {
		return rep, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	rep.Applied, rep.Skipped = s.byPart, s.skipped
	say.Printf("applied, per partition:")
	n := 0
	for part := range 8 {
		say.Printf("  partition %d%s", part, runs(s.byPart[part]))
		n += len(s.byPart[part])
	}
	say.Printf("%d of %d readings applied, %d repeats skipped", n, rep.Published, s.skipped)
	return rep, nil
}

// waitGroup waits until the group has n members holding every partition, and
// returns it sorted by name.
func waitGroup(ctx context.Context, cli sluice.Client, p pipeline, n int, errc <-chan error) ([]sluice.GroupMember, error) {
	var ms []sluice.GroupMember
	err := poll(ctx, errc, func() (bool, error) {
		info, err := cli.Subscription(ctx, p.stream, p.sub)
		if err != nil {
			return false, err
		}
		held := 0
		for _, m := range info.Members {
			held += len(m.Partitions)
		}
		ms = info.Members
		return len(ms) == n && held == len(info.Partitions), nil
	})
	slices.SortFunc(ms, func(a, b sluice.GroupMember) int { return strings.Compare(a.Name, b.Name) })
	return ms, err
}

// waitConsumed waits until every reading sent is acknowledged.
func waitConsumed(ctx context.Context, cli sluice.Client, p pipeline, errc <-chan error) error {
	return poll(ctx, errc, func() (bool, error) {
		info, err := cli.Subscription(ctx, p.stream, p.sub)
		return err == nil && info.Backlog == 0, err
	})
}

// poll calls done until it says so, a member fails, or ctx ends.
func poll(ctx context.Context, errc <-chan error, done func() (bool, error)) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, err := done(); ok || err != nil {
			return err
		}
		select {
		case <-t.C:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func sayGroup(say *log.Logger, ms []sluice.GroupMember) {
	for _, m := range ms {
		slices.Sort(m.Partitions)
		say.Printf("  %s: partitions %v", m.Name, m.Partitions)
	}
}

// runs describes one partition's applied readings: its devices, which member
// applied which offsets, and whether the offsets came in order.
func runs(as []applied) string {
	if len(as) == 0 {
		return ": no readings"
	}
	var devs []string
	var b strings.Builder
	inOrder, start := true, 0
	for i, a := range as {
		if !slices.Contains(devs, a.Device) {
			devs = append(devs, a.Device)
		}
		if i > 0 && a.Offset != as[i-1].Offset+1 {
			inOrder = false
		}
		if i == len(as)-1 || as[i+1].Member != as[start].Member {
			fmt.Fprintf(&b, "%s offsets %d-%d, ", as[start].Member, as[start].Offset, a.Offset)
			start = i + 1
		}
	}
	slices.Sort(devs)
	order := "in order"
	if !inOrder {
		order = "OUT OF ORDER"
	}
	return fmt.Sprintf(" (%s): %s%s", strings.Join(devs, " "), b.String(), order)
}
