package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicemq/sluice"
)

// devices send the readings: 16 of them, hashed by name onto 8 partitions.
var devices = func() []string {
	d := make([]string, 16)
	for i := range d {
		d[i] = fmt.Sprintf("sensor-%02d", i)
	}
	return d
}()

// reading is one measurement, the body of a message keyed by its device. Seq
// numbers a device's readings in the order it took them and only grows: the
// demo counts from 1, the live mode uses the time in milliseconds.
type reading struct {
	Device  string  `json:"device"`
	Seq     int64   `json:"seq"`
	Celsius float64 `json:"celsius"`
}

func (r reading) message() sluice.Message {
	body, err := json.Marshal(r)
	if err != nil {
		panic(err) // a reading always encodes
	}
	return sluice.Message{Key: []byte(r.Device), Body: body}
}

// pipeline names the stream of readings and the group's subscription.
type pipeline struct{ stream, sub string }

// create creates the stream and the subscription unless they exist.
func (p pipeline) create(ctx context.Context, cli sluice.Client) error {
	// A log: readings stay a week whoever has read them, so the group can be
	// sent back in time (SeekSubscription) to index them again.
	_, err := cli.CreateStream(ctx, sluice.StreamConfig{
		Name:       p.stream,
		Partitions: 8,
		Retention:  sluice.Retention{MaxAge: 7 * 24 * time.Hour},
	})
	if err != nil && !errors.Is(err, sluice.ErrStreamExists) {
		return err
	}
	_, err = cli.CreateSubscription(ctx, p.stream, sluice.SubscriptionConfig{Name: p.sub, Mode: sluice.PartitionedMode})
	if err != nil && !errors.Is(err, sluice.ErrSubscriptionExists) {
		return err
	}
	return nil
}

// member is one member of the group: it joins with its first Fetch, gets the
// readings of the partitions it is assigned, in order, and applies each before
// it acknowledges it, until ctx ends.
func (p pipeline) member(ctx context.Context, cli sluice.Client, name string, s *sink) error {
	c, err := cli.NewConsumer(ctx, p.stream, p.sub, sluice.ConsumerConfig{Name: name})
	if err != nil {
		return err
	}
	// Close leaves the group at once: the partitions move now rather than once
	// the member's session runs out.
	defer c.Close()
	for {
		ds, err := c.Fetch(ctx, 100)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, d := range ds {
			if err := s.apply(name, d); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			// A stale lease means the partition moved to another member, which
			// gets the reading again; the sink skips it there.
			if err := c.Ack(ctx, d); err != nil && !errors.Is(err, sluice.ErrStaleLease) {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
}

// applied is a reading the sink applied: where it was, and who applied it.
type applied struct {
	Member string
	Offset int64
	reading
}

// sink stands in for the store the readings go to. It keeps a device's newest
// reading: one no newer than what it holds (a repeat) changes nothing, so a
// reading delivered twice is applied once. It also records what it applied.
type sink struct {
	show func(member string, d sluice.Delivery, r reading)

	mu      sync.Mutex
	last    map[string]int64  // device -> Seq of the reading held
	byPart  map[int][]applied // partition -> readings in the order applied
	skipped int
}

func newSink(show func(string, sluice.Delivery, reading)) *sink {
	return &sink{show: show, last: map[string]int64{}, byPart: map[int][]applied{}}
}

func (s *sink) apply(member string, d sluice.Delivery) error {
	var r reading
	if err := json.Unmarshal(d.Body, &r); err != nil {
		return fmt.Errorf("partition %d offset %d: %w", d.Partition, d.Offset, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Seq <= s.last[r.Device] {
		s.skipped++
		return nil
	}
	s.last[r.Device] = r.Seq
	s.byPart[d.Partition] = append(s.byPart[d.Partition], applied{Member: member, Offset: d.Offset, reading: r})
	if s.show != nil {
		s.show(member, d, r)
	}
	return nil
}
