package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicemq/sluice/internal/batch"
)

// Options says what Run damages.
type Options struct {
	// Seed makes the choices repeatable.
	Seed uint64
	// Flips is how many random bits to flip, each in a random sealed segment or
	// index file (as Kind allows).
	Flips int
	// Truncate cuts one random sealed segment or index file short.
	Truncate bool
	// Kind restricts flips and truncation: "all" (default), "segments" or
	// "indexes".
	Kind string
	// TearActive writes, after the data of every non-empty active segment, a
	// prefix of a batch: what a write torn by a power failure leaves.
	TearActive bool
	// FlipActive flips one bit inside the data of one random non-empty active
	// segment: damage to bytes that were synced and acknowledged.
	FlipActive bool
}

// Action is one change Run made.
type Action struct {
	Op   string // "flip", "truncate" or "tear"
	File string // path relative to the data directory
	// Offset is the byte flipped (flip) or where the torn write starts (tear).
	Offset int64
	Bit    int   // flip: the bit, 0 the lowest
	From   int64 // truncate: the old size; tear: the data's end
	To     int64 // truncate: the new size; tear: the file's new end of torn bytes
	Old    byte  // flip: the byte before
	New    byte  // flip: the byte after
}

func (a Action) String() string {
	switch a.Op {
	case "flip":
		return fmt.Sprintf("flip %s offset=%d bit=%d (0x%02x -> 0x%02x)", a.File, a.Offset, a.Bit, a.Old, a.New)
	case "truncate":
		return fmt.Sprintf("truncate %s from=%d to=%d", a.File, a.From, a.To)
	default:
		return fmt.Sprintf("tear %s offset=%d bytes=%d (a prefix of a batch after the data)", a.File, a.Offset, a.To-a.Offset)
	}
}

// Partition is the files of one partition directory.
type Partition struct {
	Dir     string   // relative to the data directory
	Sealed  []string // sealed segments (*.log but the last), oldest first
	Indexes []string // index files of sealed segments
	Active  string   // the last *.log, "" if none
}

// Partitions lists the partitions of every stream under data: the numbered
// directories of data/streams/<name>/. Subscription journals are left out.
func Partitions(data string) ([]Partition, error) {
	streams, err := os.ReadDir(filepath.Join(data, "streams"))
	if err != nil {
		return nil, err
	}
	var out []Partition
	for _, s := range streams {
		if !s.IsDir() || strings.HasPrefix(s.Name(), ".") {
			continue
		}
		parts, err := os.ReadDir(filepath.Join(data, "streams", s.Name()))
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if _, err := strconv.Atoi(p.Name()); err != nil || !p.IsDir() {
				continue
			}
			rel := filepath.Join("streams", s.Name(), p.Name())
			files, err := os.ReadDir(filepath.Join(data, rel))
			if err != nil {
				return nil, err
			}
			var logs []string
			idx := map[string]bool{}
			for _, f := range files {
				switch {
				case strings.HasSuffix(f.Name(), ".log"):
					logs = append(logs, f.Name())
				case strings.HasSuffix(f.Name(), ".index"):
					idx[f.Name()] = true
				}
			}
			sort.Strings(logs) // fixed-width names sort by base offset
			part := Partition{Dir: rel}
			for i, l := range logs {
				if i == len(logs)-1 {
					part.Active = filepath.Join(rel, l)
					break
				}
				part.Sealed = append(part.Sealed, filepath.Join(rel, l))
				if n := strings.TrimSuffix(l, ".log") + ".index"; idx[n] {
					part.Indexes = append(part.Indexes, filepath.Join(rel, n))
				}
			}
			out = append(out, part)
		}
	}
	return out, nil
}

// Run damages the files under data, which no server may have open, as o says, and
// returns what it did.
func Run(data string, o Options) ([]Action, error) {
	parts, err := Partitions(data)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	var targets []string
	for _, p := range parts {
		switch o.Kind {
		case "", "all":
			targets = append(append(targets, p.Sealed...), p.Indexes...)
		case "segments":
			targets = append(targets, p.Sealed...)
		case "indexes":
			targets = append(targets, p.Indexes...)
		default:
			return nil, fmt.Errorf("kind %q: want all, segments or indexes", o.Kind)
		}
	}
	sort.Strings(targets)
	if (o.Flips > 0 || o.Truncate) && len(targets) == 0 {
		return nil, errors.New("no sealed segment or index file to damage: publish more, or use smaller segments")
	}
	var acts []Action
	for range o.Flips {
		a, err := flip(data, targets[rng.IntN(len(targets))], 0, -1, rng)
		if err != nil {
			return acts, err
		}
		acts = append(acts, a)
	}
	if o.Truncate {
		name := targets[rng.IntN(len(targets))]
		path := filepath.Join(data, name)
		st, err := os.Stat(path)
		if err != nil {
			return acts, err
		}
		if st.Size() > 0 {
			to := rng.Int64N(st.Size())
			if err := os.Truncate(path, to); err != nil {
				return acts, err
			}
			acts = append(acts, Action{Op: "truncate", File: name, From: st.Size(), To: to})
		}
	}
	if o.FlipActive {
		var live []string
		for _, p := range parts {
			if p.Active != "" {
				if end, err := dataEnd(filepath.Join(data, p.Active)); err == nil && end > 0 {
					live = append(live, p.Active)
				}
			}
		}
		if len(live) > 0 {
			name := live[rng.IntN(len(live))]
			end, _ := dataEnd(filepath.Join(data, name))
			a, err := flip(data, name, 0, end, rng)
			if err != nil {
				return acts, err
			}
			acts = append(acts, a)
		}
	}
	if o.TearActive {
		for _, p := range parts {
			if p.Active == "" {
				continue
			}
			a, ok, err := tear(data, p.Active, rng)
			if err != nil {
				return acts, err
			}
			if ok {
				acts = append(acts, a)
			}
		}
	}
	return acts, nil
}

// flip flips one random bit of name in [lo, hi), hi -1 meaning the file's end.
func flip(data, name string, lo, hi int64, rng *rand.Rand) (Action, error) {
	path := filepath.Join(data, name)
	b, err := os.ReadFile(path)
	if err != nil {
		return Action{}, err
	}
	if hi < 0 || hi > int64(len(b)) {
		hi = int64(len(b))
	}
	if hi <= lo {
		return Action{}, fmt.Errorf("%s: no byte to flip in [%d, %d)", name, lo, hi)
	}
	off := lo + rng.Int64N(hi-lo)
	bit := rng.IntN(8)
	a := Action{Op: "flip", File: name, Offset: off, Bit: bit, Old: b[off], New: b[off] ^ 1<<bit}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return Action{}, err
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{a.New}, off); err != nil {
		return Action{}, err
	}
	return a, f.Sync()
}

// dataEnd returns where the valid batches of a segment file end: the rest is
// zeros (preallocated) or damage.
func dataEnd(path string) (int64, error) {
	_, end, err := lastBatch(path)
	return end, err
}

// lastBatch returns the bytes of the last valid batch of a segment and where the
// valid batches end.
func lastBatch(path string) (last []byte, end int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	pos := 0
	for pos < len(b) {
		size, err := batch.PeekSize(b[pos:])
		if err != nil || size <= 0 || pos+size > len(b) {
			break
		}
		if _, err := batch.Verify(b[pos : pos+size]); err != nil {
			break
		}
		last = b[pos : pos+size]
		pos += size
	}
	return last, int64(pos), nil
}

// tear writes a prefix of a copy of the segment's last batch, renumbered to follow
// it, right after the data: the bytes a write torn by a power failure leaves. It
// reports false for a segment with no batch.
func tear(data, name string, rng *rand.Rand) (Action, bool, error) {
	path := filepath.Join(data, name)
	last, end, err := lastBatch(path)
	if err != nil || last == nil {
		return Action{}, false, err
	}
	h, err := batch.ParseHeader(last)
	if err != nil {
		return Action{}, false, err
	}
	torn := append([]byte(nil), last...)
	batch.SetBaseOffset(torn, h.NextOffset())
	// At least the length field, so that the tail is not all zeros (the clean end
	// of a preallocated segment), and never the whole batch.
	torn = torn[:12+rng.IntN(len(torn)-12)]
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return Action{}, false, err
	}
	defer f.Close()
	if _, err := f.WriteAt(torn, end); err != nil {
		return Action{}, false, err
	}
	if err := f.Sync(); err != nil {
		return Action{}, false, err
	}
	return Action{Op: "tear", File: name, Offset: end, From: end, To: end + int64(len(torn))}, true, nil
}
