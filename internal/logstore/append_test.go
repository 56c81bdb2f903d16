package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sluicemq/sluice/internal/vfs"
)

// TestAppendCancelledReleasesBatches: once Append has returned, even with a
// context error, the caller owns its batch buffers again and may reuse them (a
// server reads the next request into the same buffer). What it writes into them
// afterwards must never reach the log. Here the writer is held inside a write while
// a request waits in the queue; its publisher gives up, and overwrites its buffer
// with garbage; then the writer goes on.
func TestAppendCancelledReleasesBatches(t *testing.T) {
	fs := newGatedWrites()
	cfg := memConfig(fs.Mem)
	cfg.FS = fs
	p := mustOpen(t, cfg)
	defer func() { p.Close() }()
	l := newLedger()
	rng := rand.New(rand.NewPCG(1, 1))
	send := func(ctx context.Context, tag string, b []byte) error {
		base, err := p.Append(ctx, b)
		if err == nil {
			l.ack(tag, base)
		}
		return err
	}
	if err := send(ctxT(t), "a", l.send("a", rng)); err != nil {
		t.Fatal(err)
	}

	fs.close()
	held := make(chan error, 1)
	go func() { held <- send(ctxT(t), "b", l.send("b", rng)) }()
	<-fs.blocked // the writer is inside the write of b

	ctx, cancel := context.WithCancel(context.Background())
	buf := l.send("c", rng)
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- send(ctx, "c", buf) }()
	eventually(t, "c is queued", func() bool { return len(p.reqs) > 0 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with its context cancelled = %v", err)
	}
	copy(buf, bytes.Repeat([]byte{0xff}, len(buf))) // the caller reuses its buffer

	fs.release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := send(ctxT(t), "d", l.send("d", rng)); err != nil {
		t.Fatal(err)
	}
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = mustOpen(t, cfg)
	if err := checkRecovered(p, l); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
}

// TestAppendContextCancelled: an Append whose context is already done fails with
// the context's error, stores nothing that is not whole, and the partition stays
// usable.
func TestAppendContextCancelled(t *testing.T) {
	p := mustOpen(t, memConfig(vfs.NewMem()))
	defer p.Close()
	l := newLedger()
	rng := rand.New(rand.NewPCG(1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		tag := fmt.Sprint("c", i)
		// The request may also win the race into the queue; then it may be stored.
		if _, err := p.Append(ctx, l.send(tag, rng)); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Append with a cancelled context = %v", err)
		}
	}
	base, err := p.Append(ctxT(t), l.send("d", rng))
	if err != nil {
		t.Fatal(err)
	}
	l.ack("d", base)
	if err := checkRecovered(p, l); err != nil {
		t.Fatal(err)
	}
}
