package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice"
)

// provider stands in for an email provider's API. It "sends" by printing, and
// fails for an address in the reserved .invalid domain, as a real one fails
// for a domain that does not resolve.
type provider struct {
	say  *log.Logger
	mu   sync.Mutex
	sent map[string]int // job ID -> times sent
}

func newProvider(say *log.Logger) *provider {
	return &provider{say: say, sent: map[string]int{}}
}

func (p *provider) send(ctx context.Context, e email) error {
	if _, domain, _ := strings.Cut(e.To, "@"); strings.HasSuffix(domain, ".invalid") {
		return fmt.Errorf("lookup %s: no such host", domain)
	}
	p.mu.Lock()
	p.sent[e.ID]++
	p.mu.Unlock()
	p.say.Printf("%s: sent %q to %s", e.ID, e.Subject, e.To)
	return nil
}

// timesSent returns how often each job was sent.
func (p *provider) timesSent() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.sent))
	for id, n := range p.sent {
		out[id] = n
	}
	return out
}

// sender is the worker's handler. It sends a job once, however often the job
// is delivered: seen records what was sent.
type sender struct {
	p       *provider
	seen    sluice.ProcessedStore
	say     *log.Logger
	skipped atomic.Int64
}

func (s *sender) handle(ctx context.Context, d sluice.Delivery) error {
	var e email
	if err := json.Unmarshal(d.Body, &e); err != nil {
		return sluice.Permanent(err) // no retry mends a bad job: dead-letter it now
	}
	// MessageID names the job by its idempotency key. Process runs send unless
	// that name is recorded, and records it once send succeeds.
	// (WorkerConfig.Processed does the same, without saying so.)
	ran, err := s.seen.Process(ctx, sluice.MessageID(d.Record), func(ctx context.Context) error {
		return s.p.send(ctx, e)
	})
	switch {
	case err != nil:
		s.say.Printf("%s: delivery %d failed: %v", e.ID, d.Deliveries, err)
	case !ran:
		s.skipped.Add(1)
		s.say.Printf("%s: delivery %d skipped, already sent", e.ID, d.Deliveries)
	}
	return err // nil acknowledges; an error is retried with backoff, then dead-lettered
}
