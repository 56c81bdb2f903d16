package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestCronNext(t *testing.T) {
	utc := time.UTC
	ny := mustLoc(t, "America/New_York")
	at := func(s string, loc *time.Location) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		expr, after, want string
		loc               *time.Location
	}{
		{"* * * * *", "2026-03-01 10:00", "2026-03-01 10:01", utc},
		{"*/15 * * * *", "2026-03-01 10:07", "2026-03-01 10:15", utc},
		{"0 9 * * 1-5", "2026-03-06 09:00", "2026-03-09 09:00", utc}, // Friday 9:00 -> Monday
		{"30 8-18/2 * * *", "2026-03-01 18:30", "2026-03-02 08:30", utc},
		{"0 0 1 * *", "2026-01-31 12:00", "2026-02-01 00:00", utc},
		{"0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00", utc},
		{"0 12 * * 0", "2026-03-01 12:00", "2026-03-08 12:00", utc}, // Sunday
		{"0 12 * * 7", "2026-03-01 12:00", "2026-03-08 12:00", utc}, // 7 is Sunday too
		{"0 0 13 * 5", "2026-03-01 00:00", "2026-03-06 00:00", utc}, // the 13th or any Friday
		{"30 2 * * *", "2026-03-07 03:00", "2026-03-09 02:30", ny},  // 2:30 does not exist on 2026-03-08
		{"30 1 * * *", "2026-11-01 01:30", "2026-11-02 01:30", ny},  // the repeated 1:30 fires once
	} {
		c0, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("%q: %v", c.expr, err)
		}
		after := at(c.after, c.loc)
		if c.expr == "30 1 * * *" { // the first 1:30 of the fall-back night
			after = time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)
		}
		got, err := c0.Next(after, c.loc)
		if err != nil || !got.Equal(at(c.want, c.loc)) {
			t.Errorf("Next(%q after %s) = %v, %v; want %s", c.expr, c.after, got, err, c.want)
		}
	}
}

func TestCronRejectsBadExpressions(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
		"* * * * 8", "5-1 * * * *", "*/0 * * * *", "a * * * *", strings.Repeat("1,", 200) + "1 * * * *"} {
		if _, err := Parse(expr); err == nil {
			t.Errorf("%q was accepted", expr)
		}
	}
	c, err := Parse("0 0 30 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(time.Now(), time.UTC); !errors.Is(err, ErrNever) {
		t.Fatalf("February 30: %v", err)
	}
}

// FuzzParse: the parser never panics, and what it accepts has a Next that never
// goes backwards.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 1,15 * 1-5", "0 0 29 2 *", "59 23 31 12 7", "1-2/0 * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := Parse(expr)
		if err != nil {
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		next, err := c.Next(from, time.UTC)
		if err == nil && !next.After(from) {
			t.Fatalf("%q: Next(%v) = %v", expr, from, next)
		}
	})
}

func TestNextEvery(t *testing.T) {
	anchor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		after time.Time
		want  time.Time
	}{
		{anchor.Add(-time.Hour), anchor},
		{anchor, anchor.Add(time.Minute)},
		{anchor.Add(90 * time.Second), anchor.Add(2 * time.Minute)},
		{anchor.Add(2 * time.Minute), anchor.Add(3 * time.Minute)},
	} {
		if got := NextEvery(anchor, time.Minute, c.after); !got.Equal(c.want) {
			t.Errorf("NextEvery after %v = %v, want %v", c.after, got, c.want)
		}
	}
}
