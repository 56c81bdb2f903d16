package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxExprLen bounds a cron expression.
const MaxExprLen = 256

// searchYears bounds how far Next looks for a matching time.
const searchYears = 5

// ErrNever is returned by Next when an expression matches no time within five
// years (for example February 30).
var ErrNever = errors.New("schedule: cron expression never fires")

// Cron is a parsed cron expression.
type Cron struct {
	expr                     string
	minute, hour, dom, month uint64 // bit i set: value i matches
	dow                      uint64 // bits 0-6, Sunday = 0
	domStar, dowStar         bool
}

type field struct {
	name     string
	min, max int
}

var fields = [5]field{{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7}}

// Parse parses a five-field cron expression.
func Parse(expr string) (*Cron, error) {
	if len(expr) > MaxExprLen {
		return nil, fmt.Errorf("schedule: cron expression of %d bytes, limit %d", len(expr), MaxExprLen)
	}
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return nil, fmt.Errorf("schedule: cron expression %q has %d fields, want 5 (minute hour day-of-month month day-of-week)", expr, len(parts))
	}
	c := &Cron{expr: strings.Join(parts, " ")}
	sets := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, p := range parts {
		bits, err := parseField(p, fields[i])
		if err != nil {
			return nil, fmt.Errorf("schedule: cron %s field %q: %w", fields[i].name, p, err)
		}
		*sets[i] = bits
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar, c.dowStar = parts[2] == "*" || parts[2] == "?", parts[4] == "*" || parts[4] == "?"
	return c, nil
}

func parseField(s string, f field) (uint64, error) {
	var bits uint64
	for _, item := range strings.Split(s, ",") {
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("step %q must be 1..%d", stepStr, f.max)
			}
			step = n
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*" || rng == "?":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = number(a, f); err != nil {
				return 0, err
			}
			if hi, err = number(b, f); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %d-%d is backwards", lo, hi)
			}
		default:
			n, err := number(rng, f)
			if err != nil {
				return 0, err
			}
			lo = n
			if !hasStep {
				hi = n
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

func number(s string, f field) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < f.min || n > f.max {
		return 0, fmt.Errorf("%q is not a number in %d..%d", s, f.min, f.max)
	}
	return n, nil
}

// String returns the expression.
func (c *Cron) String() string { return c.expr }

func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<t.Day()) != 0
	dow := c.dow&(1<<int(t.Weekday())) != 0
	switch {
	case c.domStar && c.dowStar:
		return true
	case c.domStar:
		return dow
	case c.dowStar:
		return dom
	}
	return dom || dow
}

// Next returns the first time strictly after t, in loc, that the expression
// matches. Times that a daylight-saving jump skips are skipped; a repeated hour
// fires once, at its first occurrence.
func (c *Cron) Next(t time.Time, loc *time.Location) (time.Time, error) {
	after := wall(t.In(loc))
	t = t.In(loc).Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(searchYears, 0, 0)
	for t.Before(limit) {
		switch {
		case c.month&(1<<int(t.Month())) == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
		case !c.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
		case c.hour&(1<<t.Hour()) == 0:
			next := time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
			if !next.After(t) { // a repeated hour: move on by the clock
				next = t.Truncate(time.Hour).Add(time.Hour)
			}
			t = next
		case c.minute&(1<<t.Minute()) == 0 || wall(t) <= after:
			// The second pass through a repeated (fall-back) hour reads the same wall
			// times again: they already fired.
			t = t.Add(time.Minute)
		default:
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %q", ErrNever, c.expr)
}

// wall is t's wall-clock minute as a sortable number.
func wall(t time.Time) int64 {
	return int64(t.Year())*100000000 + int64(t.Month())*1000000 + int64(t.Day())*10000 + int64(t.Hour())*100 + int64(t.Minute())
}
