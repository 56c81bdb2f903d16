package sluice

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sluicemq/sluice/internal/logstore"
)

// LiveConfig configures a live subscription.
type LiveConfig struct {
	// Start is where to begin in every partition. Default Latest(): only what is
	// published from now on (price ticks, dashboards).
	Start *StartAt
	// FetchBytes is how much each partition reads at once. Default 1 MiB; limits
	// [1, MaxFetchBytes].
	FetchBytes int
}

// SubscribeLive opens a live, non-durable subscription to every partition of a
// stream: it keeps no state on the broker and vanishes when closed. Records come
// in offset order within a partition, interleaved across partitions; partitions
// added later are read from their start. Offset on the returned Reader is -1.
func (b *Broker) SubscribeLive(ctx context.Context, streamName string, cfg LiveConfig) (Reader, error) {
	start := Latest()
	if cfg.Start != nil {
		start = *cfg.Start
	}
	s, err := b.acquire(streamName)
	if err != nil {
		return nil, err
	}
	n := len(s.parts)
	s.mu.RUnlock()
	lr := &liveReader{b: b, stream: streamName, fetch: cfg.FetchBytes}
	for i := range n {
		r, err := b.NewReader(ctx, streamName, ReaderConfig{Partition: i, Start: start, FetchBytes: cfg.FetchBytes})
		if err != nil {
			lr.Close()
			return nil, err
		}
		lr.parts = append(lr.parts, r.(*partitionReader))
	}
	return lr, nil
}

type liveReader struct {
	b      *Broker
	stream string
	fetch  int
	parts  []*partitionReader
	next   int // partition to try first: round-robin for fairness
	closed bool
}

func (r *liveReader) Offset() int64 { return -1 }

func (r *liveReader) Close() error {
	r.closed = true
	for _, p := range r.parts {
		p.Close()
	}
	return nil
}

func (r *liveReader) Next(ctx context.Context) (Record, error) {
	for {
		if r.closed {
			return Record{}, ErrClosed
		}
		if err := r.addPartitions(ctx); err != nil {
			return Record{}, err
		}
		for k := range r.parts {
			i := (r.next + k) % len(r.parts)
			rec, ok, err := r.parts[i].poll()
			if err != nil {
				return Record{}, err
			}
			if ok {
				r.next = i + 1
				return rec, nil
			}
		}
		if err := r.waitAny(ctx); err != nil {
			return Record{}, err
		}
	}
}

// addPartitions starts reading partitions added to the stream since.
func (r *liveReader) addPartitions(ctx context.Context) error {
	s, err := r.b.acquire(r.stream)
	if err != nil {
		return err
	}
	n := len(s.parts)
	s.mu.RUnlock()
	for i := len(r.parts); i < n; i++ {
		p, err := r.b.NewReader(ctx, r.stream, ReaderConfig{Partition: i, Start: Earliest(), FetchBytes: r.fetch})
		if err != nil {
			return err
		}
		r.parts = append(r.parts, p.(*partitionReader))
	}
	return nil
}

// waitAny blocks until any partition has a record past the reader's position.
func (r *liveReader) waitAny(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	woke := make(chan error, len(r.parts))
	var wg sync.WaitGroup
	for _, p := range r.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.log.Wait(wctx, p.off)
			woke <- err
		}()
	}
	err := <-woke
	cancel()
	wg.Wait()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, logstore.ErrClosed):
		return fmt.Errorf("sluice: live subscription to %s: %w", r.stream, r.parts[0].closedErr(err))
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}
