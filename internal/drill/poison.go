package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice"
)

// Drill 3's payments and subscription.
const (
	p3Accounts      = 5
	p3PerAccount    = 6
	p3Payments      = p3Accounts * p3PerAccount
	p3PoisonAccount = "acct-3"
	p3PoisonSeq     = 2
	p3MaxDeliveries = 3
	p3BackoffFrom   = 100 * time.Millisecond
	p3BackoffMax    = 400 * time.Millisecond
	// p3Work is the simulated time a payment takes to apply.
	p3Work     = 25 * time.Millisecond
	p3Wait     = 5 * time.Second
	p3Deadline = 12 * time.Second
)

// payment is the body of one of drill 3's messages.
type payment struct {
	Account string `json:"account"`
	Seq     int    `json:"seq"`
	Amount  string `json:"amount"`
}

// applied is one delivery the worker handled.
type applied struct {
	at         time.Time // received
	account    string
	seq        int
	deliveries int
	err        error // nil: applied and acknowledged
}

// ledger is drill 3's worker: what it handled, and the signals the scenario
// waits for.
type ledger struct {
	fixed atomic.Bool // the fix is deployed: the malformed amount parses

	mu       sync.Mutex
	log      []applied
	firstErr time.Time // when the poisoned payment's first nack returned
	deadAt   time.Time // when its last nack, which dead-lettered it, returned
	applied  int       // payments applied, the redriven one included
	errs     []error
	// dead, others and redriven are closed (then set to nil) when the
	// poisoned payment is dead-lettered, when every other payment was applied,
	// and when the redriven payment was applied.
	dead, others, redriven chan struct{}
}

// closeLocked closes *ch unless it was already.
func closeLocked(ch *chan struct{}) {
	if *ch != nil {
		close(*ch)
		*ch = nil
	}
}

func (r *run) poison() error {
	ctx, cancel := context.WithTimeout(r.ctx, p3Deadline)
	defer cancel()
	stream, err := r.s.stream(ctx, "payments", 1)
	if err != nil {
		return err
	}
	const sub = "ledger"
	err = r.s.subscription(ctx, stream, sluice.SubscriptionConfig{Name: sub, Mode: sluice.KeyOrderedMode, Lease: 5 * time.Second,
		MaxDeliveries: p3MaxDeliveries, BackoffInitial: p3BackoffFrom, BackoffMax: p3BackoffMax})
	if err != nil {
		return err
	}
	cons, err := r.s.consumer(ctx, stream, sub, "worker", 10)
	if err != nil {
		return err
	}

	r.step("1. %d payments on %d accounts go to a key_ordered subscription (at most %d deliveries, backoff from %v to %v). Payment %d of %s has the amount \"12,5O\", which does not parse.",
		p3Payments, p3Accounts, p3MaxDeliveries, p3BackoffFrom, p3BackoffMax, p3PoisonSeq, p3PoisonAccount)
	var msgs []sluice.Message
	for i := range p3Payments {
		p := payment{Account: fmt.Sprintf("acct-%d", i%p3Accounts+1), Seq: i/p3Accounts + 1, Amount: "12.50"}
		if p.Account == p3PoisonAccount && p.Seq == p3PoisonSeq {
			p.Amount = "12,5O"
		}
		body, err := json.Marshal(p)
		if err != nil {
			return err
		}
		msgs = append(msgs, sluice.Message{Key: []byte(p.Account), Body: body})
	}
	if _, err := r.s.c.PublishBatch(ctx, stream, msgs); err != nil {
		return err
	}

	dead, othersDone, redriven := make(chan struct{}), make(chan struct{}), make(chan struct{})
	l := &ledger{dead: dead, others: othersDone, redriven: redriven}
	wctx, stopWorker := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWorker()
	wg.Go(func() { l.work(wctx, cons) })
	stop := func(err error) error {
		stopWorker()
		wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		return errors.Join(append([]error{err}, l.errs...)...)
	}

	r.step("2. One worker applies the payments (%v each, the accounts in parallel) and nacks the one it cannot parse, with the reason.", p3Work)
	pw, err := r.watchParked(ctx, stream, sub, dead)
	if err != nil {
		return stop(err)
	}
	l.mu.Lock()
	var attempts []applied
	others := 0
	for _, a := range l.log {
		switch {
		case a.account == p3PoisonAccount && a.seq == p3PoisonSeq:
			attempts = append(attempts, a)
		case a.account != p3PoisonAccount && !a.at.Before(l.firstErr) && !a.at.After(l.deadAt):
			others++
		}
	}
	parkedFor := l.deadAt.Sub(l.firstErr)
	l.mu.Unlock()
	held := pw.maxHeld
	gaps := make([]Figure, 0, 2)
	for i := 1; i < len(attempts); i++ {
		gaps = append(gaps, Figure{fmt.Sprintf("gap before attempt %d", i+1), ms(attempts[i].at.Sub(attempts[i-1].at)), "ms"})
	}
	r.figures(fmt.Sprintf("While %s was parked (%v), the other accounts kept flowing:", p3PoisonAccount, parkedFor.Round(time.Millisecond)),
		append([]Figure{
			{"parked keys", float64(len(pw.keys)), "count"},
			{"payments held behind it", float64(held), "msg"},
			{"other accounts' deliveries while parked", float64(others), "count"},
			{"deliveries of the poisoned payment", float64(len(attempts)), "count"},
		}, gaps...)...)
	r.info("The attempts were spaced by the backoff: 50 to 100 ms after the first failure, 100 to 200 ms after the second (exponential, with jitter in the upper half), plus the time the worker took to come back for it.")

	dls, _, err := r.s.c.DeadLetters(ctx, stream, sub, sluice.DeadLetterQuery{})
	if err != nil {
		return stop(err)
	}
	for _, dl := range dls {
		r.info("Dead letter at offset %d of %s: deliveries %d, reason %q, body %s.", dl.Offset, stream+"."+sub+sluice.DeadLetterSuffix, dl.Deliveries, dl.Reason, dl.Message.Body)
		for i, a := range dl.Attempts {
			r.info("Attempt %d, at %s by %s: %s.", i+1, a.At.Format("15:04:05.000"), a.Consumer, a.Error)
		}
	}
	attemptsKept := 0
	if len(dls) == 1 {
		attemptsKept = len(dls[0].Attempts)
	}

	if err := waitFor(ctx, othersDone, p3Wait, "the other payments"); err != nil {
		return stop(err)
	}
	l.mu.Lock()
	var after []string
	for _, a := range l.log {
		if a.account == p3PoisonAccount && a.seq > p3PoisonSeq && a.err == nil {
			after = append(after, strconv.Itoa(a.seq))
		}
	}
	l.mu.Unlock()
	r.figures("Once it was dead-lettered:",
		Figure{"dead letters", float64(len(dls)), "count"},
		Figure{"attempts in its history", float64(attemptsKept), "count"},
		Figure{fmt.Sprintf("%s payments applied after it", p3PoisonAccount), float64(len(after)), "msg"})
	r.info("%s's payments %s were applied once the poisoned one left the way.", p3PoisonAccount, strings.Join(after, ", "))

	r.step("3. The fix is deployed (the parser accepts the amount), and the dead letter is redriven into the subscription.")
	l.fixed.Store(true)
	n, _, err := r.s.c.RedriveDeadLetters(ctx, stream, sub, sluice.RedriveOptions{PerSecond: 50})
	if err != nil {
		return stop(err)
	}
	if err := waitFor(ctx, redriven, p3Wait, "the redriven payment"); err != nil {
		return stop(err)
	}
	stopWorker()
	wg.Wait()
	l.mu.Lock()
	var redone []applied
	for _, a := range l.log {
		if a.account == p3PoisonAccount && a.seq == p3PoisonSeq && a.err == nil {
			redone = append(redone, a)
		}
	}
	total, errs := l.applied, l.errs
	l.mu.Unlock()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	info, err := r.s.c.Subscription(ctx, stream, sub)
	if err != nil {
		return err
	}
	r.figures("After the redrive:",
		Figure{"redriven", float64(n), "count"},
		Figure{"delivery count of the redriven payment", float64(redone[0].deliveries), "count"},
		Figure{"processed after redrive", float64(len(redone)), "count"},
		Figure{"payments applied", float64(total), "msg"},
		Figure{"backlog", float64(info.Backlog), "msg"})
	r.info("The redriven payment came back with a fresh delivery count and was applied. It was applied after %s's later payments: a redrive restores the message, not its place in its key's order, so a handler that cares checks a version or sequence.", p3PoisonAccount)

	r.done("One malformed payment cost %d deliveries spaced by backoff and then went to the dead-letter stream with its reason and attempts. Only its account waited (%d of its payments held); the other accounts made %d deliveries meanwhile. After the fix, a redrive applied it: %d of %d payments applied, none lost, and the queue never stopped.",
		len(attempts), held, others, total, p3Payments)
	return nil
}

// parkedWatch is what watchParked saw.
type parkedWatch struct {
	keys    map[string]bool // every key listed
	maxHeld int             // the most messages held behind a parked key
}

// watchParked lists the parked keys every few milliseconds until dead is
// closed, and reports the first sighting of each key as it happens. The held
// count grows while parked: the subscription holds a key's later messages as
// it reads past them for the other keys.
func (r *run) watchParked(ctx context.Context, stream, sub string, dead <-chan struct{}) (parkedWatch, error) {
	w := parkedWatch{keys: map[string]bool{}}
	deadline := time.NewTimer(p3Wait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-dead:
			return w, nil
		case <-ctx.Done():
			return w, ctx.Err()
		case <-deadline.C:
			return w, fmt.Errorf("drill: the poisoned payment's dead-lettering: not within %v", p3Wait)
		case <-tick.C:
		}
		pks, err := r.s.c.ParkedKeys(ctx, stream, sub, 10)
		if err != nil {
			return w, err
		}
		for _, pk := range pks {
			w.maxHeld = max(w.maxHeld, pk.Held)
			if w.keys[pk.Key] {
				continue
			}
			w.keys[pk.Key] = true
			r.info("ParkedKeys lists %s: its payment at offset %d failed on delivery %d (%s); the next attempt is due in %v, and the later payments of the key wait behind it.",
				pk.Key, pk.Offset, pk.Deliveries, pk.LastError, time.Until(time.UnixMilli(pk.NotBefore)).Round(time.Millisecond))
		}
	}
}

// work fetches and applies payments until ctx ends: those of one fetch in
// parallel (they are of different accounts), each acknowledged, or nacked with
// the parse error.
func (l *ledger) work(ctx context.Context, cons sluice.Consumer) {
	for {
		ds, err := cons.Fetch(ctx, p3Accounts)
		if err != nil {
			if ctx.Err() == nil {
				l.fail(fmt.Errorf("worker: %w", err))
			}
			return
		}
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Go(func() { l.apply(ctx, cons, d) })
		}
		wg.Wait()
	}
}

func (l *ledger) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// apply handles one delivery.
func (l *ledger) apply(ctx context.Context, cons sluice.Consumer, d sluice.Delivery) {
	a := applied{at: time.Now(), deliveries: d.Deliveries}
	var p payment
	if err := json.Unmarshal(d.Body, &p); err != nil {
		l.fail(fmt.Errorf("worker: payment %s: %w", d.Body, err))
		return
	}
	a.account, a.seq = p.Account, p.Seq
	amount := p.Amount
	if l.fixed.Load() {
		amount = strings.NewReplacer(",", ".", "O", "0").Replace(amount)
	}
	if _, err := strconv.ParseFloat(amount, 64); err != nil {
		a.err = fmt.Errorf("parse amount: %w", err)
	} else if err := pause(ctx, p3Work); err != nil {
		return // stopping
	}
	if a.err != nil {
		if err := cons.Nack(ctx, d, sluice.NackOptions{Reason: a.err.Error()}); err != nil {
			if ctx.Err() == nil {
				l.fail(fmt.Errorf("worker: nack: %w", err))
			}
			return
		}
	} else if err := cons.Ack(ctx, d); err != nil {
		if ctx.Err() == nil {
			l.fail(fmt.Errorf("worker: ack: %w", err))
		}
		return
	}
	settled := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, a)
	switch {
	case a.err != nil && d.Deliveries == 1:
		l.firstErr = settled
	case a.err != nil && d.Deliveries >= p3MaxDeliveries:
		l.deadAt = settled
		closeLocked(&l.dead)
	case a.err == nil:
		l.applied++
		if l.applied == p3Payments-1 {
			closeLocked(&l.others)
		}
		if a.account == p3PoisonAccount && a.seq == p3PoisonSeq {
			closeLocked(&l.redriven)
		}
	}
}
