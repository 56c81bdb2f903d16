package schedule

import "time"

// Interval limits.
const (
	MinInterval = time.Second
	MaxInterval = 366 * 24 * time.Hour
)

// NextEvery returns the first tick strictly after t of a schedule that fires every
// d from anchor: anchor + k*d for the smallest such k.
func NextEvery(anchor time.Time, d time.Duration, t time.Time) time.Time {
	if t.Before(anchor) {
		return anchor
	}
	k := t.Sub(anchor)/d + 1
	return anchor.Add(k * d)
}
