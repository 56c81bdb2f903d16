package sluice

import (
	"context"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/internal/vfs"
)

// Power-cut test: names and sizes.
const (
	pcStream     = "pc"
	pcParts      = 3
	pcKeys       = 8
	pcQueue      = "queue"   // QueueMode, AtLeastOnce
	pcOrdered    = "ordered" // KeyOrderedMode, AtLeastOnce
	pcAtMostOnce = "amo"     // QueueMode, AtMostOnce
	pcMaxOps     = 600       // a cut lands after 1..pcMaxOps operations
)

// TestPowerCutsKeepEveryAcknowledgement cuts the power under a busy broker at many
// random points and checks, after each restart, everything the broker promised
// before the cut. Each cut is a fresh broker on vfs.Mem (a stream of pcParts
// partitions with 4 KiB segments, so that segments roll and sealed indexes are
// written), two publishers (single messages and batches, half of them with
// idempotency keys), and one consumer on each of three subscriptions: queue and
// key_ordered under at_least_once, acking most deliveries and leaving the rest in
// flight, and queue under at_most_once. After a random number of operations the
// power goes out (vfs.Mem.PowerCut: unsynced bytes are lost, the last write kept
// torn, at 512-byte sectors on even cuts and at any byte on odd ones); the broker
// restarts and checkCut checks:
//
//   - every acknowledged publish is stored at its position with its body; offsets
//     are dense; every stored body is whole (bodies carry their own CRC) and stored
//     once;
//   - every message stored with an idempotency key, acknowledged or not, is still
//     deduplicated: publishing it again returns Duplicate at its position;
//   - every delivery before the cut is stored (nothing is visible before it is
//     durable) with the delivered body;
//   - at_least_once: every stored message whose Ack had not returned nil is
//     delivered after the restart (nothing lost); an acknowledged one may come back
//     (the journal syncs every 50 ms, see SubscriptionConfig.Delivery), which is
//     counted, not failed;
//   - at_most_once: no message a Fetch returned before the cut comes back;
//   - key_ordered: a key's messages are delivered one at a time in offset order,
//     before and after the cut, and none after the restart overtakes an older one
//     of its key that was not acknowledged.
//
// The number of cuts is SLUICE_POWER_CUTS (default 300: well under a minute with
// -race on two cores; 40 with -short); SLUICE_POWER_SEED fixes the first seed
// (default: from the clock, logged). The long run of TESTING.md is
// SLUICE_POWER_CUTS=10000. Goroutine scheduling makes a cut's exact point vary, so
// a seed reproduces the workload and the crash's choices, not the interleaving.
// The summary line is "POWERCUTS cuts=N acked=M lost=L ...".
func TestPowerCutsKeepEveryAcknowledgement(t *testing.T) {
	cuts := 300
	if testing.Short() {
		cuts = 40
	}
	if v := os.Getenv("SLUICE_POWER_CUTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SLUICE_POWER_CUTS=%q: want a positive integer", v)
		}
		cuts = n
	}
	base := uint64(time.Now().UnixNano())
	if v := os.Getenv("SLUICE_POWER_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_POWER_SEED=%q: want an unsigned integer", v)
		}
		base = n
	}
	t.Logf("SLUICE_POWER_SEED=%d", base)
	var total pcTotals
	done := 0
	defer func() {
		t.Logf("POWERCUTS cuts=%d acked=%d lost=%d stored=%d delivered_after=%d acks_returned=%d dedupe_checked=%d",
			done, total.acked, total.lost, total.stored, total.deliveredAfter, total.acksReturned, total.dedupe)
	}()
	for i := range uint64(cuts) {
		seed := base + i
		ev := runPowerCut(t, seed)
		problems := checkCut(ev, &total)
		if len(problems) > 0 {
			for _, p := range problems[:min(len(problems), 10)] {
				t.Errorf("seed %d: %s", seed, p)
			}
			t.Fatalf("seed %d: %d problems after the power cut (SLUICE_POWER_SEED=%d SLUICE_POWER_CUTS=1 to replay its workload)", seed, len(problems), seed)
		}
		done++
	}
}

// pcTotals sums what the cuts checked.
type pcTotals struct {
	acked, lost, stored, deliveredAfter, acksReturned, dedupe int
}

// pcBody is a message body that carries its own checksum: id, padding, CRC-32 of
// both. parsePCBody tells a whole body from a damaged one.
func pcBody(id string, pad int) string {
	s := id + " " + strings.Repeat("x", pad)
	return fmt.Sprintf("%s %08x", s, crc32.ChecksumIEEE([]byte(s)))
}

func parsePCBody(body string) (id string, ok bool) {
	i := strings.LastIndexByte(body, ' ')
	if i < 0 {
		return "", false
	}
	sum, err := strconv.ParseUint(body[i+1:], 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE([]byte(body[:i])) {
		return "", false
	}
	id, _, _ = strings.Cut(body[:i], " ")
	return id, true
}

// pcSent is a message as published.
type pcSent struct {
	key, body, idem string
}

// pcRecord is a message as read back, or as delivered.
type pcRecord struct {
	part int
	off  int64
	key  string
	body string
	idem string
}

// pcEvent is one step of a subscription's single consumer before the cut: a
// delivery, or an Ack that returned nil.
type pcEvent struct {
	ack bool
	rec pcRecord
}

// pcSub is what one subscription did before and after the cut.
type pcSub struct {
	atMostOnce, keyOrdered bool
	before                 []pcEvent  // in the consumer's order
	after                  []pcRecord // deliveries after the restart, each acked at once
	stuck                  string     // set when the drain after the restart did not finish
}

// pcEvidence is everything checkCut needs about one cut.
type pcEvidence struct {
	sent        map[string]pcSent   // id → message, every publish attempted
	acked       map[string]Position // id → position, publishes that returned nil
	log         [][]pcRecord        // per partition, read back from offset 0 after the restart
	readErr     []string            // errors reading the log back
	republished map[string]Position // idempotency key → result of publishing it again
	subs        map[string]*pcSub
}

// runPowerCut runs one cut and collects its evidence.
func runPowerCut(t *testing.T, seed uint64) *pcEvidence {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	fsys := vfs.NewMem()
	if seed%2 == 0 {
		fsys.SetTearMode(vfs.TearSectors)
	}
	open := func() *Broker {
		b, err := Open("/data", &Options{fs: fsys, Logger: quiet})
		if err != nil {
			t.Fatalf("seed %d: open: %v", seed, err)
		}
		return b
	}
	b := open()
	if _, err := b.CreateStream(ctx, StreamConfig{Name: pcStream, Partitions: pcParts, SegmentBytes: 4096}); err != nil {
		t.Fatal(err)
	}
	subCfgs := map[string]SubscriptionConfig{
		pcQueue:      {Name: pcQueue, Mode: QueueMode, Lease: time.Hour},
		pcOrdered:    {Name: pcOrdered, Mode: KeyOrderedMode, Lease: time.Hour},
		pcAtMostOnce: {Name: pcAtMostOnce, Mode: QueueMode, Delivery: AtMostOnce},
	}
	ev := &pcEvidence{sent: map[string]pcSent{}, acked: map[string]Position{}, republished: map[string]Position{}, subs: map[string]*pcSub{}}
	for name, cfg := range subCfgs {
		if _, err := b.CreateSubscription(ctx, pcStream, cfg); err != nil {
			t.Fatal(err)
		}
		ev.subs[name] = &pcSub{atMostOnce: cfg.Delivery == AtMostOnce, keyOrdered: cfg.Mode == KeyOrderedMode}
	}

	// The run: every publish, fetch and ack is an operation; the one that reaches
	// target cuts the power, wherever the others are.
	rng := rand.New(rand.NewPCG(seed, 0x9c))
	target := int64(1 + rng.IntN(pcMaxOps))
	crashRng := rand.New(rand.NewPCG(seed, 0xc7))
	runCtx, stop := context.WithCancel(ctx)
	var ops atomic.Int64
	var cut atomic.Bool
	op := func() bool {
		if cut.Load() {
			return false
		}
		if ops.Add(1) == target {
			fsys.PowerCut(crashRng)
			cut.Store(true)
			stop()
			return false
		}
		return true
	}
	var mu sync.Mutex // guards ev.sent and ev.acked during the run
	message := func(r *rand.Rand, id string) Message {
		m := pcSent{key: fmt.Sprintf("k%d", r.IntN(pcKeys)), body: pcBody(id, r.IntN(300))}
		if r.IntN(2) == 0 {
			m.idem = "i-" + id
		}
		mu.Lock()
		ev.sent[id] = m
		mu.Unlock()
		return Message{Key: []byte(m.key), Body: []byte(m.body), IdempotencyKey: m.idem}
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := 0; op(); n++ {
				if w == 0 {
					id := fmt.Sprintf("s%d", n)
					pos, err := b.Publish(runCtx, pcStream, message(r, id))
					if err == nil {
						mu.Lock()
						ev.acked[id] = pos
						mu.Unlock()
					}
					continue
				}
				ids := make([]string, 1+r.IntN(5))
				msgs := make([]Message, len(ids))
				for i := range ids {
					ids[i] = fmt.Sprintf("b%d.%d", n, i)
					msgs[i] = message(r, ids[i])
				}
				pos, err := b.PublishBatch(runCtx, pcStream, msgs)
				if err == nil {
					mu.Lock()
					for i, id := range ids {
						ev.acked[id] = pos[i]
					}
					mu.Unlock()
				}
			}
		})
	}
	var consumers []Consumer
	for name, s := range ev.subs {
		c, err := b.NewConsumer(ctx, pcStream, name, ConsumerConfig{Name: "c-" + name, MaxInFlight: 1000})
		if err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, c)
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(len(name))))
			for op() {
				ds, err := c.Fetch(runCtx, 1+r.IntN(8))
				if err != nil {
					continue
				}
				for _, d := range ds {
					s.before = append(s.before, pcEvent{rec: pcRecordOf(d.Record)})
					if s.atMostOnce || r.IntN(10) == 0 || !op() {
						continue // left in flight
					}
					if c.Ack(runCtx, d) == nil {
						s.before = append(s.before, pcEvent{ack: true, rec: pcRecordOf(d.Record)})
					}
				}
			}
		})
	}
	wg.Wait()
	stop()
	for _, c := range consumers {
		c.Close()
	}
	b.Close() // after the cut every write fails; errors are expected
	fsys.PowerOn()

	// The restart.
	b = open()
	defer b.Close()
	info, err := b.Stream(ctx, pcStream)
	if err != nil {
		t.Fatalf("seed %d: the stream is gone after the cut: %v", seed, err)
	}
	ev.log = make([][]pcRecord, pcParts)
	for p, pi := range info.Partitions {
		if pi.StartOffset != 0 {
			ev.readErr = append(ev.readErr, fmt.Sprintf("partition %d starts at %d, not 0", p, pi.StartOffset))
		}
		if pi.HighWatermark == 0 {
			continue
		}
		r, err := b.NewReader(ctx, pcStream, ReaderConfig{Partition: p, Start: Earliest()})
		if err != nil {
			t.Fatal(err)
		}
		for next := pi.StartOffset; next < pi.HighWatermark; {
			// Below the high watermark Next does not wait; the timeout only ends a
			// read that would.
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			rec, err := r.Next(rctx)
			cancel()
			if err != nil {
				ev.readErr = append(ev.readErr, fmt.Sprintf("partition %d: read at offset %d of %d: %v", p, next, pi.HighWatermark, err))
				break
			}
			ev.log[p] = append(ev.log[p], pcRecordOf(rec))
			next = rec.Offset + 1
		}
		r.Close()
	}
	for name, s := range ev.subs {
		s.after, s.stuck = drainPC(ctx, b, name, s.atMostOnce)
	}
	// Publishing again every idempotency key tried, last, since it may store new
	// messages.
	for id, m := range ev.sent {
		if m.idem == "" {
			continue
		}
		pos, err := b.Publish(ctx, pcStream, Message{Key: []byte(m.key), Body: []byte(m.body), IdempotencyKey: m.idem})
		if err != nil {
			t.Fatalf("seed %d: republish %s: %v", seed, id, err)
		}
		ev.republished[m.idem] = pos
	}
	return ev
}

// drainPC consumes a subscription after the restart until nothing is left, acking
// every delivery at once.
func drainPC(ctx context.Context, b *Broker, name string, atMostOnce bool) (got []pcRecord, stuck string) {
	c, err := b.NewConsumer(ctx, pcStream, name, ConsumerConfig{MaxInFlight: 1000})
	if err != nil {
		return nil, err.Error()
	}
	defer c.Close()
	for {
		info, err := b.Subscription(ctx, pcStream, name)
		if err != nil {
			return got, err.Error()
		}
		if info.Backlog == 0 {
			return got, ""
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ds, err := c.Fetch(fctx, 100)
		cancel()
		if err != nil {
			return got, fmt.Sprintf("fetch with a backlog of %d: %v", info.Backlog, err)
		}
		for _, d := range ds {
			got = append(got, pcRecordOf(d.Record))
			if !atMostOnce {
				if err := c.Ack(ctx, d); err != nil {
					return got, fmt.Sprintf("ack after the restart: %v", err)
				}
			}
		}
	}
}

func pcRecordOf(r Record) pcRecord {
	out := pcRecord{part: r.Partition, off: r.Offset, key: string(r.Key), body: string(r.Body)}
	for _, h := range r.Headers {
		if h.Key == IdempotencyKeyHeader {
			out.idem = string(h.Value)
		}
	}
	return out
}

// checkCut returns every broken promise it finds in ev, and adds its figures to
// total.
func checkCut(ev *pcEvidence, total *pcTotals) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	bad = append(bad, ev.readErr...)

	// The log: dense, whole, each message once.
	at := map[[2]int64]pcRecord{}
	where := map[string][2]int64{}
	for p, recs := range ev.log {
		for i, r := range recs {
			if r.part != p || r.off != int64(i) {
				fail("partition %d: record %d read as %d/%d: offsets not dense", p, i, r.part, r.off)
			}
			id, ok := parsePCBody(r.body)
			if !ok {
				fail("%d/%d: damaged body %.40q", p, r.off, r.body)
				continue
			}
			if prev, dup := where[id]; dup {
				fail("%s stored twice, at %d/%d and %d/%d", id, prev[0], prev[1], p, r.off)
			}
			where[id] = [2]int64{int64(p), r.off}
			at[[2]int64{int64(p), r.off}] = r
			if s, ok := ev.sent[id]; !ok || s.body != r.body || s.key != r.key || s.idem != r.idem {
				fail("%d/%d: %s stored, unlike what was published", p, r.off, id)
			}
			total.stored++
		}
	}

	// Acknowledged publishes.
	for id, pos := range ev.acked {
		total.acked++
		r, ok := at[[2]int64{int64(pos.Partition), pos.Offset}]
		if !ok || r.body != ev.sent[id].body {
			total.lost++
			fail("acknowledged %s at %d/%d is lost (stored there: %.40q)", id, pos.Partition, pos.Offset, r.body)
		}
	}

	// Idempotency keys: a stored key is still deduplicated; a key not stored is
	// not taken for a duplicate.
	for key, pos := range ev.republished {
		total.dedupe++
		id := strings.TrimPrefix(key, "i-")
		stored, isStored := where[id]
		switch {
		case isStored && (!pos.Duplicate || pos.Partition != int(stored[0]) || pos.Offset != stored[1]):
			fail("idempotency key %s stored at %d/%d, republished as %+v", key, stored[0], stored[1], pos)
		case !isStored && pos.Duplicate:
			fail("idempotency key %s not stored, republished as a duplicate at %d/%d", key, pos.Partition, pos.Offset)
		}
	}

	// Subscriptions.
	for name, s := range ev.subs {
		checkPCSub(name, s, at, total, fail)
	}
	return bad
}

// checkPCSub checks one subscription's deliveries against the log read back.
func checkPCSub(name string, s *pcSub, at map[[2]int64]pcRecord, total *pcTotals, fail func(string, ...any)) {
	if s.stuck != "" {
		fail("%s: the drain after the restart stopped: %s", name, s.stuck)
	}
	type lane struct {
		part int
		key  string
	}
	pos := func(r pcRecord) [2]int64 { return [2]int64{int64(r.part), r.off} }
	stored := func(when string, r pcRecord) bool {
		if got, ok := at[pos(r)]; !ok || got.body != r.body {
			fail("%s: delivered %s %d/%d %.40q, stored there: %.40q", name, when, r.part, r.off, r.body, got.body)
			return false
		}
		return true
	}
	handed := map[[2]int64]bool{}
	acked := map[[2]int64]bool{}
	inFlight := map[lane][2]int64{} // key_ordered: the lane's delivery not acked yet
	last := map[lane]int64{}
	for _, e := range s.before {
		r, l := e.rec, lane{e.rec.part, e.rec.key}
		if e.ack {
			acked[pos(r)] = true
			if inFlight[l] == pos(r) {
				delete(inFlight, l)
			}
			continue
		}
		stored("before the cut", r)
		handed[pos(r)] = true
		if s.keyOrdered {
			if f, busy := inFlight[l]; busy {
				fail("%s: %d/%d delivered while %d/%d of key %s was in flight", name, r.part, r.off, f[0], f[1], r.key)
			}
			if prev, ok := last[l]; ok && r.off <= prev {
				fail("%s: key %s: %d/%d delivered after %d/%d", name, r.key, r.part, r.off, r.part, prev)
			}
			inFlight[l], last[l] = pos(r), r.off
		}
	}
	after := map[[2]int64]bool{}
	clear(last)
	for _, r := range s.after {
		total.deliveredAfter++
		if !stored("after the restart", r) {
			continue
		}
		p := pos(r)
		if after[p] {
			fail("%s: %d/%d delivered twice after the restart", name, r.part, r.off)
		}
		after[p] = true
		switch {
		case s.atMostOnce && handed[p]:
			fail("%s (at_most_once): %d/%d handed out before the cut and again after it", name, r.part, r.off)
		case acked[p]:
			total.acksReturned++
		}
		if s.keyOrdered {
			l := lane{r.part, r.key}
			if prev, ok := last[l]; ok && r.off <= prev {
				fail("%s: key %s: %d/%d delivered after %d/%d", name, r.key, r.part, r.off, r.part, prev)
			}
			last[l] = r.off
		}
	}
	if s.atMostOnce {
		return
	}
	// Nothing lost: every stored message not acknowledged is delivered again, and
	// under key_ordered none of its key overtakes it.
	keys := slices.Collect(func(yield func([2]int64) bool) {
		for p := range at {
			if !yield(p) {
				return
			}
		}
	})
	slices.SortFunc(keys, func(a, b [2]int64) int {
		if a[0] != b[0] {
			return int(a[0] - b[0])
		}
		return int(a[1] - b[1])
	})
	firstAfter := map[[2]int64]int{}
	for i, r := range s.after {
		if _, ok := firstAfter[pos(r)]; !ok {
			firstAfter[pos(r)] = i
		}
	}
	oldest := map[lane][2]int64{} // key_ordered: the lane's oldest message not acknowledged
	for _, p := range keys {
		r := at[p]
		if acked[p] {
			continue
		}
		i, ok := firstAfter[p]
		if !ok {
			total.lost++
			fail("%s: %d/%d (%s) never acknowledged, not delivered after the restart", name, p[0], p[1], r.key)
			continue
		}
		if !s.keyOrdered {
			continue
		}
		l := lane{r.part, r.key}
		if o, ok := oldest[l]; ok && firstAfter[o] > i {
			fail("%s: key %s: %d/%d delivered after the restart before %d/%d, not acknowledged", name, r.key, p[0], p[1], o[0], o[1])
		}
		if _, ok := oldest[l]; !ok {
			oldest[l] = p
		}
	}
}

// TestPowerCutCheckerCatchesBrokenPromises feeds checkCut evidence with one broken
// promise at a time and expects it reported: the power-cut test can fail.
func TestPowerCutCheckerCatchesBrokenPromises(t *testing.T) {
	rec := func(p int, off int64, id, key string) pcRecord {
		return pcRecord{part: p, off: off, key: key, body: pcBody(id, 3)}
	}
	good := func() *pcEvidence {
		ev := &pcEvidence{
			sent:        map[string]pcSent{},
			acked:       map[string]Position{},
			republished: map[string]Position{},
			subs: map[string]*pcSub{
				pcQueue:      {},
				pcOrdered:    {keyOrdered: true},
				pcAtMostOnce: {atMostOnce: true},
			},
			log: [][]pcRecord{{rec(0, 0, "a", "k1"), rec(0, 1, "b", "k1"), rec(0, 2, "c", "k2")}},
		}
		for _, r := range ev.log[0] {
			id, _ := parsePCBody(r.body)
			ev.sent[id] = pcSent{key: r.key, body: r.body}
			ev.acked[id] = Position{Partition: 0, Offset: r.off}
		}
		// a: acked before the cut everywhere; b, c: delivered after the restart.
		for _, name := range []string{pcQueue, pcOrdered} {
			s := ev.subs[name]
			s.before = []pcEvent{{rec: ev.log[0][0]}, {ack: true, rec: ev.log[0][0]}}
			s.after = []pcRecord{ev.log[0][1], ev.log[0][2]}
		}
		ev.subs[pcAtMostOnce].before = []pcEvent{{rec: ev.log[0][0]}}
		ev.subs[pcAtMostOnce].after = []pcRecord{ev.log[0][1]}
		return ev
	}
	if p := checkCut(good(), &pcTotals{}); len(p) > 0 {
		t.Fatalf("clean evidence reported: %v", p)
	}
	cases := map[string]func(ev *pcEvidence){
		"acknowledged message missing": func(ev *pcEvidence) {
			ev.log[0] = ev.log[0][:2]
			ev.subs[pcQueue].after = ev.subs[pcQueue].after[:1]
			ev.subs[pcOrdered].after = ev.subs[pcOrdered].after[:1]
		},
		"damaged body": func(ev *pcEvidence) {
			ev.log[0][2].body = strings.Replace(ev.log[0][2].body, "xxx", "xyx", 1)
		},
		"offset gap":           func(ev *pcEvidence) { ev.log[0][2].off = 3 },
		"delivery not stored":  func(ev *pcEvidence) { ev.subs[pcQueue].after[0].body = pcBody("z", 1) },
		"unacked not returned": func(ev *pcEvidence) { ev.subs[pcQueue].after = ev.subs[pcQueue].after[1:] },
		"at_most_once again": func(ev *pcEvidence) {
			ev.subs[pcAtMostOnce].after = append(ev.subs[pcAtMostOnce].after, ev.log[0][0])
		},
		"key order after the restart": func(ev *pcEvidence) {
			s := ev.subs[pcOrdered]
			s.before = nil
			s.after = []pcRecord{ev.log[0][1], ev.log[0][0], ev.log[0][2]}
		},
		"key delivered while in flight": func(ev *pcEvidence) {
			ev.subs[pcOrdered].before = []pcEvent{{rec: ev.log[0][0]}, {rec: ev.log[0][1]}}
		},
		"dedupe forgot a key": func(ev *pcEvidence) {
			id := "a"
			s := ev.sent[id]
			s.idem = "i-" + id
			ev.sent[id] = s
			ev.log[0][0].idem = s.idem
			ev.republished[s.idem] = Position{Partition: 0, Offset: 3}
		},
		"drain stuck": func(ev *pcEvidence) { ev.subs[pcOrdered].stuck = "fetch timed out" },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			ev := good()
			breakIt(ev)
			if p := checkCut(ev, &pcTotals{}); len(p) == 0 {
				t.Fatal("not reported")
			} else {
				t.Log(p[0])
			}
		})
	}
}
