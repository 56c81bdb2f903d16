package main

import (
	"math"
	"slices"
)

// percentiles returns the 50th, 99th and 99.9th percentiles of xs (nearest
// rank), or zeros when xs is empty. It sorts xs.
func percentiles(xs []float64) (p50, p99, p999 float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	slices.Sort(xs)
	return rank(xs, 0.50), rank(xs, 0.99), rank(xs, 0.999)
}

// rank is the nearest-rank percentile q of sorted xs.
func rank(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// spread is the median of a figure over the runs, with its range.
type spread struct {
	Median, Min, Max float64
}

// summarize returns the median (the mean of the middle two for an even
// count) and the range of xs.
func summarize(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: m, Min: s[0], Max: s[len(s)-1]}
}
