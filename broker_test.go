package sluice

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if crashChild() {
		return
	}
	goleak.VerifyTestMain(m)
}

type fixture struct {
	t   *testing.T
	dir string
	b   *Broker
	ctx context.Context
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	f := &fixture{t: t, dir: t.TempDir(), ctx: ctx}
	f.reopen()
	t.Cleanup(func() { f.b.Close() })
	return f
}

func (f *fixture) reopen() {
	f.t.Helper()
	if f.b != nil {
		if err := f.b.Close(); err != nil {
			f.t.Fatal(err)
		}
	}
	b, err := Open(f.dir, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.b = b
}

func (f *fixture) create(cfg StreamConfig) StreamInfo {
	f.t.Helper()
	info, err := f.b.CreateStream(f.ctx, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return info
}

// readN reads n records from one partition starting at start.
func (f *fixture) readN(stream string, part int, start StartAt, n int) []Record {
	f.t.Helper()
	r, err := f.b.NewReader(f.ctx, stream, ReaderConfig{Partition: part, Start: start})
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.Close()
	out := make([]Record, 0, n)
	for range n {
		rec, err := r.Next(f.ctx)
		if err != nil {
			f.t.Fatalf("after %d records: %v", len(out), err)
		}
		out = append(out, rec)
	}
	return out
}

func TestPublishReadRestart(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "orders", Partitions: 3})
	type sent struct {
		pos  Position
		body string
	}
	var all []sent
	for i := range 300 {
		m := Message{Key: []byte(fmt.Sprintf("k%d", i%7)), Body: []byte(fmt.Sprintf("m%d", i)),
			Headers: []Header{{Key: "n", Value: []byte(fmt.Sprint(i))}}}
		pos, err := f.b.Publish(f.ctx, "orders", m)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sent{pos, string(m.Body)})
	}
	// Same key, same partition.
	byKey := map[string]int{}
	for i, s := range all {
		k := fmt.Sprintf("k%d", i%7)
		if p, ok := byKey[k]; ok && p != s.pos.Partition {
			t.Fatalf("key %s went to partitions %d and %d", k, p, s.pos.Partition)
		}
		byKey[k] = s.pos.Partition
	}
	check := func() {
		t.Helper()
		info, err := f.b.Stream(f.ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		if info.Messages != 300 {
			t.Fatalf("stream holds %d messages, want 300", info.Messages)
		}
		for p, pi := range info.Partitions {
			recs := f.readN("orders", p, Earliest(), int(pi.HighWatermark))
			for _, rec := range recs {
				want := ""
				for _, s := range all {
					if s.pos == (Position{Partition: p, Offset: rec.Offset}) {
						want = s.body
					}
				}
				if string(rec.Body) != want {
					t.Fatalf("%d/%d holds %q, want %q", p, rec.Offset, rec.Body, want)
				}
				if len(rec.Headers) != 1 || rec.Headers[0].Key != "n" {
					t.Fatalf("%d/%d headers %v", p, rec.Offset, rec.Headers)
				}
			}
		}
	}
	check()
	f.reopen()
	check()
}

func TestReaderStartsAndFollowsTail(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "ticks"})
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 10 {
		if _, err := f.b.Publish(f.ctx, "ticks", Message{Body: []byte{byte(i)}, Time: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		start StartAt
		first int64
	}{
		{Earliest(), 0},
		{AtOffset(4), 4},
		{AtOffset(-5), 0},
		{AtTime(base.Add(6 * time.Second)), 6},
		{AtTime(base.Add(5500 * time.Millisecond)), 6},
		{AtTime(base.Add(-time.Hour)), 0},
	} {
		recs := f.readN("ticks", 0, tc.start, 1)
		if recs[0].Offset != tc.first || recs[0].Body[0] != byte(tc.first) {
			t.Errorf("start %v: first record %d, want %d", tc.start, recs[0].Offset, tc.first)
		}
	}
	// A reader at the latest position waits for the next publish.
	r, err := f.b.NewReader(f.ctx, "ticks", ReaderConfig{Start: Latest()})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Record, 1)
	go func() {
		rec, err := r.Next(f.ctx)
		if err != nil {
			t.Error(err)
		}
		got <- rec
	}()
	if _, err := f.b.Publish(f.ctx, "ticks", Message{Body: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if rec := <-got; rec.Offset != 10 || string(rec.Body) != "new" {
		t.Fatalf("tail reader got %d %q", rec.Offset, rec.Body)
	}
	// Next ends when its context does.
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at the tail with an expiring context: %v", err)
	}
}

func TestValidationNamesFieldAndLimit(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", MaxMessageBytes: 100})
	cases := []struct {
		name  string
		err   error
		field string
	}{
		{"bad name", func() error { _, err := f.b.CreateStream(f.ctx, StreamConfig{Name: "../x"}); return err }(), "StreamConfig.Name"},
		{"too many partitions", func() error {
			_, err := f.b.CreateStream(f.ctx, StreamConfig{Name: "p", Partitions: MaxPartitions + 1})
			return err
		}(), "StreamConfig.Partitions"},
		{"message too large", func() error {
			_, err := f.b.Publish(f.ctx, "s", Message{Body: make([]byte, 101)})
			return err
		}(), "Message"},
		{"key too large", func() error {
			_, err := f.b.Publish(f.ctx, "s", Message{Key: make([]byte, MaxKeyBytes+1)})
			return err
		}(), "Message.Key"},
		{"bad partition", func() error {
			_, err := f.b.Publish(f.ctx, "s", Message{Partition: ToPartition(1)})
			return err
		}(), "Message.Partition"},
		{"lower partitions", func() error {
			_, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", Partitions: 2})
			if err != nil {
				return err
			}
			_, err = f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", Partitions: 1})
			return err
		}(), "StreamConfig.Partitions"},
		{"sync is fixed", func() error {
			_, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "s", Sync: SyncNever})
			return err
		}(), "StreamConfig.Sync"},
	}
	for _, c := range cases {
		var ie *InvalidError
		if !errors.As(c.err, &ie) || !errors.Is(c.err, ErrInvalid) || ie.Field != c.field {
			t.Errorf("%s: got %v, want an InvalidError for %s", c.name, c.err, c.field)
		}
	}
	if _, err := f.b.Publish(f.ctx, "nope", Message{}); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("publish to a missing stream: %v", err)
	}
	if _, err := f.b.CreateStream(f.ctx, StreamConfig{Name: "s"}); !errors.Is(err, ErrStreamExists) {
		t.Errorf("duplicate create: %v", err)
	}
	// The broker still works after every rejection.
	if _, err := f.b.Publish(f.ctx, "s", Message{Body: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteUpdateAndLock(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "a"})
	f.create(StreamConfig{Name: "b"})
	if _, err := Open(f.dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of a directory in use: %v", err)
	}
	if err := f.b.DeleteStream(f.ctx, "a"); err != nil {
		t.Fatal(err)
	}
	info, err := f.b.UpdateStream(f.ctx, StreamConfig{Name: "b", Partitions: 4, Retention: Retention{MaxAge: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Partitions) != 4 {
		t.Fatalf("after update: %d partitions", len(info.Partitions))
	}
	if _, err := f.b.Publish(f.ctx, "b", Message{Body: []byte("x"), Partition: ToPartition(3)}); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	list, err := f.b.ListStreams(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Config.Name != "b" || list[0].Config.Partitions != 4 ||
		list[0].Config.Retention.MaxAge != time.Hour || list[0].Messages != 1 {
		t.Fatalf("after reopen: %+v", list)
	}
}

func TestPublishBatchAtomicPerPartition(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "s", Partitions: 2})
	msgs := make([]Message, 50)
	for i := range msgs {
		msgs[i] = Message{Body: []byte(fmt.Sprint(i)), Partition: ToPartition(i % 2)}
	}
	pos, err := f.b.PublishBatch(f.ctx, "s", msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pos {
		if p.Partition != i%2 || p.Offset != int64(i/2) {
			t.Fatalf("message %d stored at %+v", i, p)
		}
	}
	recs := f.readN("s", 1, Earliest(), 25)
	for i, r := range recs {
		if string(r.Body) != fmt.Sprint(2*i+1) {
			t.Fatalf("partition 1 offset %d = %q", i, r.Body)
		}
	}
}

// TestDropOldestRemovesWholeSegments: under OverflowDropOldest a partition never
// holds more than MaxMessages; whole segments go, and the dropped count says how
// many messages went.
func TestDropOldestRemovesWholeSegments(t *testing.T) {
	dir := t.TempDir()
	now := time.UnixMilli(1_700_000_000_000)
	b, err := Open(dir, &Options{RetentionInterval: time.Hour, now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: "s", SegmentBytes: 4096, MaxMessages: 100, Overflow: OverflowDropOldest}); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := b.Publish(ctx, "s", Message{Body: make([]byte, 100), Time: now.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := b.Stream(ctx, "s")
	p := info.Partitions[0]
	if p.HighWatermark != 1000 || p.StartOffset == 0 || info.Messages > 100 || info.Messages < 100-40 {
		t.Fatalf("after publishing: %+v (want at most 100 of 1000 messages kept, whole segments)", info)
	}
	if info.Counters.Dropped != p.StartOffset || info.Counters.Rejected != 0 {
		t.Fatalf("counters %+v: want Dropped=%d (the start offset), no rejections", info.Counters, p.StartOffset)
	}
	// A reader from the start begins at the first retained message.
	r, _ := b.NewReader(ctx, "s", ReaderConfig{Start: AtOffset(0)})
	rec, err := r.Next(ctx)
	if err != nil || rec.Offset != p.StartOffset {
		t.Fatalf("first record %d, %v; want %d", rec.Offset, err, p.StartOffset)
	}
}

func TestReaderEndsWhenStreamDeletedOrBrokerClosed(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "a"})
	f.create(StreamConfig{Name: "b"})
	wait := func(stream string) chan error {
		r, err := f.b.NewReader(f.ctx, stream, ReaderConfig{Start: Latest()})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := r.Next(f.ctx); done <- err }()
		return done
	}
	a := wait("a")
	if err := f.b.DeleteStream(f.ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := <-a; !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("reader of a deleted stream: %v", err)
	}
	bw := wait("b")
	f.b.Close()
	if err := <-bw; !errors.Is(err, ErrClosed) {
		t.Fatalf("reader after broker close: %v", err)
	}
}

func TestSubscribeLiveFollowsEveryPartition(t *testing.T) {
	f := setup(t)
	f.create(StreamConfig{Name: "ticks", Partitions: 3})
	if _, err := f.b.Publish(f.ctx, "ticks", Message{Body: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	live, err := f.b.SubscribeLive(f.ctx, "ticks", LiveConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	from0 := Earliest()
	all, err := f.b.SubscribeLive(f.ctx, "ticks", LiveConfig{Start: &from0})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	got := make(chan string, 10)
	go func() {
		for range 6 {
			rec, err := live.Next(f.ctx)
			if err != nil {
				t.Error(err)
				return
			}
			got <- string(rec.Body)
		}
	}()
	for i := range 6 {
		if _, err := f.b.Publish(f.ctx, "ticks", Message{Body: []byte(fmt.Sprint(i)), Partition: ToPartition(i % 3)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range 6 {
		seen[<-got] = true
	}
	if len(seen) != 6 || seen["old"] {
		t.Fatalf("live subscriber saw %v", seen)
	}
	n := 0
	for range 7 {
		if _, err := all.Next(f.ctx); err != nil {
			t.Fatal(err)
		}
		n++
	}
	// Nothing more: Next waits until its context ends.
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := all.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("at the end: %v", err)
	}
}
