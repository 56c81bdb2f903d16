package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// isTerminal reports whether f is a terminal (a character device other than
// the null device) rather than a pipe or a file.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

// progressEvery bounds how often a progress line is redrawn.
const progressEvery = 200 * time.Millisecond

// progress draws one self-overwriting status line of long work (a large
// publish, a redrive) on standard error when it is a terminal, and nothing at
// all when it is piped or redirected, so scripts see only the results.
type progress struct {
	w     io.Writer // nil: quiet
	start time.Time
	last  time.Time
	shown bool
	now   func() time.Time
}

// newProgress returns a progress line on standard error, quiet unless that is
// a terminal.
func newProgress() *progress {
	p := &progress{start: time.Now(), now: time.Now}
	if isTerminal(os.Stderr) {
		p.w = os.Stderr
	}
	return p
}

// update redraws the line with text unless it was drawn less than
// progressEvery ago.
func (p *progress) update(text string) {
	if p.w == nil {
		return
	}
	now := p.now()
	if !p.last.IsZero() && now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	p.shown = true
	fmt.Fprintf(p.w, "\r\x1b[K%s", text)
}

// clear erases the line, before other output goes to the same terminal. The
// next update still waits for its turn.
func (p *progress) clear() {
	if p.w != nil && p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// done replaces the line with a final summary (on a terminal only).
func (p *progress) done(summary string) {
	if p.w == nil {
		return
	}
	p.clear()
	fmt.Fprintln(p.w, summary)
}

// elapsed is the time since the work began.
func (p *progress) elapsed() time.Duration { return p.now().Sub(p.start) }

// rate formats n per second over the time since the work began.
func (p *progress) rate(n int64) string {
	s := p.elapsed().Seconds()
	if s <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/s", float64(n)/s)
}

// humanBytes formats a byte count with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
