package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/internal/drill"
)

const drillHelp = `sluice drill [N | list | progress | reset [N]] [flags]

The four design drills about queues. Each is a question to answer on a
whiteboard against a timer of 5 to 10 minutes, a checklist of what a strong
answer covers, then a live run of the scenario on a broker embedded in this
process (its data in a temporary directory, removed at the end): no server
is needed, and the figures are measured, not canned.

  sluice drill list          the drills, with a check mark and the date of those done
  sluice drill N             drill N, 1 to 4: question, timer, checklist, live run
  sluice drill progress      what is saved: last run, timer, the items covered
  sluice drill reset [N]     clear the saved progress, of drill N only if given

On a terminal the timer counts down on standard error and Enter ends it
early; nothing of the answer is shown before. The checklist then asks y or n
for each item, and the items not covered are printed at the end as your study
list. Without a terminal nothing waits: pass --no-timer, and --ticks for the
items covered (none otherwise).

Progress is saved in drills.json, in the directory SLUICE_CONFIG_DIR names,
or else in sluice/ under the user's configuration directory.

examples:
  sluice drill list
  sluice drill 1
  sluice drill 3 --minutes 8
  sluice drill 2 --no-timer --ticks 1,3,5
  sluice drill 4 --no-timer --ticks all --no-live
  sluice drill progress
  sluice drill reset 2`

// Limits of the drill verb.
const (
	// maxDrillProgressBytes bounds the progress file read: a larger one is not
	// ours.
	maxDrillProgressBytes = 1 << 20
	drillProgressFile     = "drills.json"
	drillProgressVersion  = 1
	// drillLiveTimeout bounds a live run, which takes a few seconds.
	drillLiveTimeout = 2 * time.Minute
	// drillWidth is where the text is wrapped.
	drillWidth = 78
)

// errDrillInterrupted ends a drill on Ctrl-C; nothing is saved.
var errDrillInterrupted = errors.New("interrupted: progress not saved")

// drillFlags are the flags of 'sluice drill'.
type drillFlags struct {
	minutes         int
	noTimer, noLive bool
	ticks           string
	yes             bool
	set             map[string]bool // the flags given
}

func runDrill(args []string) error {
	c := newCommand("drill", drillHelp)
	var f drillFlags
	c.fs.IntVar(&f.minutes, "minutes", int(drill.MinTimer/time.Minute), fmt.Sprintf("the whiteboard timer, `M` minutes: %d to %d", drill.MinTimer/time.Minute, drill.MaxTimer/time.Minute))
	c.fs.BoolVar(&f.noTimer, "no-timer", false, "skip the whiteboard timer")
	c.fs.StringVar(&f.ticks, "ticks", "", "the checklist items covered, `LIST`: 1,3,5, all or none (then nothing is asked)")
	c.fs.BoolVar(&f.noLive, "no-live", false, "skip the live run")
	c.fs.BoolVar(&f.yes, "yes", false, "ask nothing: no checklist questions, no confirmation before reset")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	f.set = map[string]bool{}
	c.fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if len(pos) == 0 {
		return &usageError{cmd: c, msg: "missing the drill: a number 1 to 4, or list, progress or reset"}
	}
	word, rest := pos[0], pos[1:]
	if n, err := strconv.Atoi(word); err == nil {
		if err := c.args(rest); err != nil {
			return err
		}
		return runDrillN(c, n, f)
	}
	only := func(allowed ...string) error {
		for name := range f.set {
			if !slices.Contains(allowed, name) {
				return c.usageErr("--%s applies to 'sluice drill N' only", name)
			}
		}
		return nil
	}
	switch word {
	case "list", "progress":
		if err := only(); err != nil {
			return err
		}
		if err := c.args(rest); err != nil {
			return err
		}
		if word == "list" {
			return drillList(os.Stdout)
		}
		return drillShowProgress(os.Stdout)
	case "reset":
		if err := only("yes"); err != nil {
			return err
		}
		return drillReset(c, rest, f.yes)
	}
	ue := &usageError{cmd: c, msg: fmt.Sprintf("unknown command %q: give a drill number 1 to 4, or list, progress or reset", word)}
	if m := closest(word, []string{"list", "progress", "reset"}); m != "" {
		ue.hint = fmt.Sprintf("did you mean 'sluice drill %s'?", m)
	}
	return ue
}

// runDrillN runs drill n: question, timer, checklist, live run, study list,
// and saves the progress.
func runDrillN(c *command, n int, f drillFlags) error {
	d, err := drill.Get(n)
	if err != nil {
		return c.usageErr("%v", err)
	}
	lo, hi := int(drill.MinTimer/time.Minute), int(drill.MaxTimer/time.Minute)
	if f.minutes < lo || f.minutes > hi {
		return c.usageErr("--minutes %d is outside %d to %d", f.minutes, lo, hi)
	}
	var ticks []int
	if f.set["ticks"] {
		if ticks, err = parseTicks(f.ticks, len(d.Checklist)); err != nil {
			return c.usageErr("--ticks %s: %v (drill %d has checklist items 1 to %d)", f.ticks, err, n, len(d.Checklist))
		}
	}
	terminal := isTerminal(os.Stdin)
	if !f.noTimer && !terminal {
		return &usageError{cmd: c, msg: "standard input is not a terminal, so nothing can end the whiteboard timer",
			hint: "pass --no-timer to run without it (and --ticks for the checklist items you covered)"}
	}
	path, err := drillProgressPath()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lines <-chan string
	if terminal {
		lines = readLines(os.Stdin)
	}
	out := os.Stdout

	fmt.Fprintf(out, "Drill %d of %d: %s\n\n%s\n", d.Number, len(drill.All()), d.Title, wrap(d.Question, "", ""))
	timer := 0
	if !f.noTimer {
		timer = f.minutes
		if err := whiteboard(ctx, time.Duration(f.minutes)*time.Minute, lines); err != nil {
			return err
		}
	}

	if !f.set["ticks"] && terminal && !f.yes {
		if ticks, err = askChecklist(ctx, d, lines); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\nA strong answer covers:")
	for i, item := range d.Checklist {
		mark := "[ ]"
		if slices.Contains(ticks, i+1) {
			mark = "[x]"
		}
		fmt.Fprintln(out, wrap(item, fmt.Sprintf("  %s %d. ", mark, i+1), "         "))
	}
	fmt.Fprintf(out, "You covered %d of %d.\n", len(ticks), len(d.Checklist))

	var liveErr error
	if !f.noLive {
		fmt.Fprintf(out, "\nLive run, on a broker embedded in this process:\n%s\n", wrap(d.Live, "", ""))
		liveErr = drillLive(ctx, n, out)
		if ctx.Err() != nil {
			return errDrillInterrupted
		}
	}

	fmt.Fprintln(out)
	if len(ticks) == len(d.Checklist) {
		fmt.Fprintln(out, "Your study list is empty: you covered every item.")
	} else {
		fmt.Fprintln(out, "Your study list:")
		for i, item := range d.Checklist {
			if !slices.Contains(ticks, i+1) {
				fmt.Fprintln(out, wrap(item, fmt.Sprintf("  %d. ", i+1), "     "))
			}
		}
	}

	rec := drillRecord{Done: liveErr == nil, LastRun: time.Now().Truncate(time.Second), Ticks: ticks,
		TimerMinutes: timer, LiveRun: !f.noLive && liveErr == nil}
	if err := saveDrillRecord(path, n, rec); err != nil {
		return errors.Join(liveErr, err)
	}
	fmt.Fprintf(out, "\nProgress saved in %s.\n", path)
	if liveErr != nil {
		return fmt.Errorf("live run of drill %d: %w", n, liveErr)
	}
	return nil
}

// parseTicks reads "1,3,5", "all" or "none" for a checklist of n items and
// returns the item numbers, sorted, once each.
func parseTicks(s string, n int) ([]int, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "all":
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out, nil
	case "none":
		return []int{}, nil
	case "":
		return nil, errors.New("give item numbers (1,3,5), all or none")
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("%q is not an item number", strings.TrimSpace(part))
		}
		if k < 1 || k > n {
			return nil, fmt.Errorf("no item %d", k)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// readLines reads r line by line into the channel it returns, closed at the
// end of r. The reading goroutine ends with the process: a read from a
// terminal cannot be cancelled.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// whiteboard runs the timer until it ends or a line (Enter) arrives, counting
// down on standard error when it is a terminal.
func whiteboard(ctx context.Context, d time.Duration, lines <-chan string) error {
	start := time.Now()
	end := start.Add(d)
	live := isTerminal(os.Stderr)
	fmt.Fprintf(os.Stderr, "\nWhiteboard: %d minutes to sketch your answer. Press Enter when you are done.\n", int(d/time.Minute))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeUp := time.NewTimer(d)
	defer timeUp.Stop()
	for {
		if live {
			left := time.Until(end).Round(time.Second)
			fmt.Fprintf(os.Stderr, "\r\x1b[K  %d:%02d left", int(left.Minutes()), int(left.Seconds())%60)
		}
		select {
		case <-ctx.Done():
			if live {
				fmt.Fprint(os.Stderr, "\r\x1b[K")
			}
			return errDrillInterrupted
		case <-timeUp.C:
			if live {
				fmt.Fprint(os.Stderr, "\r\x1b[K")
			}
			fmt.Fprintln(os.Stderr, "Time is up.")
			return nil
		case <-lines:
			if live {
				fmt.Fprint(os.Stderr, "\r\x1b[K")
			}
			took := time.Since(start).Round(time.Second)
			fmt.Fprintf(os.Stderr, "Done after %d:%02d.\n", int(took.Minutes()), int(took.Seconds())%60)
			return nil
		case <-tick.C:
		}
	}
}

// askChecklist asks y or n for each item of d and returns those answered y.
// The end of the input answers n for the items left.
func askChecklist(ctx context.Context, d drill.Drill, lines <-chan string) ([]int, error) {
	fmt.Fprintln(os.Stderr, "\nDid your answer cover it? y or n for each item.")
	ticks := []int{}
	for i, item := range d.Checklist {
		fmt.Fprintln(os.Stderr, wrap(item, fmt.Sprintf("  %d/%d. ", i+1, len(d.Checklist)), "        "))
		for {
			fmt.Fprint(os.Stderr, "      covered? [y/n] ")
			var line string
			var ok bool
			select {
			case <-ctx.Done():
				fmt.Fprintln(os.Stderr)
				return nil, errDrillInterrupted
			case line, ok = <-lines:
			}
			if !ok {
				fmt.Fprintln(os.Stderr)
				return ticks, nil
			}
			switch strings.ToLower(strings.TrimSpace(line)) {
			case "y", "yes":
				ticks = append(ticks, i+1)
			case "n", "no":
			default:
				continue
			}
			break
		}
	}
	return ticks, nil
}

// drillLive runs drill n's scenario on a broker embedded in a temporary
// directory, printing each event to out.
func drillLive(ctx context.Context, n int, out io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "sluice-drill-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o700); err != nil {
		return err
	}
	b, err := sluice.Open(filepath.Join(dir, "data"), &sluice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, drillLiveTimeout)
	defer cancel()
	return drill.Run(ctx, b, n, drill.Options{Prefix: fmt.Sprintf("drill%d", n), Dir: files}, func(e drill.Event) {
		printDrillEvent(out, e)
	})
}

// printDrillEvent prints one event of a live run: steps as paragraphs,
// observations indented, figures as aligned name, value and unit lines.
func printDrillEvent(w io.Writer, e drill.Event) {
	switch e.Kind {
	case drill.KindStep:
		fmt.Fprintf(w, "\n%s\n", wrap(e.Text, "", ""))
	case drill.KindFigures:
		fmt.Fprintln(w, wrap(e.Text, "  ", "  "))
		nameW, valueW := 0, 0
		for _, f := range e.Figures {
			nameW, valueW = max(nameW, utf8.RuneCountInString(f.Name)), max(valueW, len(formatFigure(f)))
		}
		for _, f := range e.Figures {
			fmt.Fprintf(w, "    %-*s  %*s %s\n", nameW, f.Name, valueW, formatFigure(f), f.Unit)
		}
	case drill.KindDone:
		fmt.Fprintf(w, "\n%s\n", wrap(e.Text, "Conclusion: ", ""))
	default:
		fmt.Fprintln(w, wrap(e.Text, "  ", "  "))
	}
}

// formatFigure formats a figure's value to the precision its unit deserves.
func formatFigure(f drill.Figure) string {
	switch {
	case f.Unit == "ms":
		return strconv.FormatFloat(f.Value, 'f', 1, 64)
	case f.Unit == "s":
		return strconv.FormatFloat(f.Value, 'f', 2, 64)
	case f.Value == float64(int64(f.Value)):
		return strconv.FormatInt(int64(f.Value), 10)
	}
	return strconv.FormatFloat(f.Value, 'f', 1, 64)
}

// wrap breaks text into lines of at most drillWidth characters (a longer
// word stays whole): the first line starts with first, the others with rest.
func wrap(text, first, rest string) string {
	var b strings.Builder
	b.WriteString(first)
	line := len([]rune(first))
	for i, word := range strings.Fields(text) {
		n := len([]rune(word))
		switch {
		case i == 0:
		case line+1+n > drillWidth:
			b.WriteString("\n" + rest)
			line = len([]rune(rest))
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += n
	}
	return b.String()
}

// drillRecord is the saved progress of one drill.
type drillRecord struct {
	// Done: the drill ran to its end (its live run succeeded, or was skipped).
	Done bool `json:"done"`
	// LastRun is when it last ran, in RFC 3339.
	LastRun time.Time `json:"last_run"`
	// Ticks are the checklist items covered, numbered from 1.
	Ticks []int `json:"ticks"`
	// TimerMinutes is the whiteboard timer chosen, 0 without it.
	TimerMinutes int `json:"timer_minutes"`
	// LiveRun: the live run ran and succeeded.
	LiveRun bool `json:"live_run"`
}

// drillProgress is the progress file: a record per drill number.
type drillProgress struct {
	Version int                 `json:"version"`
	Drills  map[int]drillRecord `json:"drills"`
}

// drillProgressPath is the progress file: drills.json in SLUICE_CONFIG_DIR, or
// in sluice/ under the user's configuration directory.
func drillProgressPath() (string, error) {
	if dir := os.Getenv("SLUICE_CONFIG_DIR"); dir != "" {
		return filepath.Join(dir, drillProgressFile), nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("where to save drill progress: %w; set SLUICE_CONFIG_DIR to a directory", err)
	}
	return filepath.Join(dir, "sluice", drillProgressFile), nil
}

// loadDrillProgress reads the progress file; a missing one is no progress.
func loadDrillProgress(path string) (drillProgress, error) {
	p := drillProgress{Version: drillProgressVersion, Drills: map[int]drillRecord{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("read drill progress: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDrillProgressBytes+1))
	if err != nil {
		return p, fmt.Errorf("read drill progress: %w", err)
	}
	corrupt := func(format string, a ...any) error {
		return fmt.Errorf("%s is not a drill progress file (%s): 'sluice drill reset' removes it and starts afresh", path, fmt.Sprintf(format, a...))
	}
	if len(data) > maxDrillProgressBytes {
		return p, corrupt("larger than %d bytes", maxDrillProgressBytes)
	}
	var got drillProgress
	if err := json.Unmarshal(data, &got); err != nil {
		return p, corrupt("%v", err)
	}
	if got.Version != drillProgressVersion {
		return p, corrupt("version %d, want %d", got.Version, drillProgressVersion)
	}
	lo, hi := int(drill.MinTimer/time.Minute), int(drill.MaxTimer/time.Minute)
	for n, rec := range got.Drills {
		d, err := drill.Get(n)
		if err != nil {
			return p, corrupt("%v", err)
		}
		if rec.TimerMinutes != 0 && (rec.TimerMinutes < lo || rec.TimerMinutes > hi) {
			return p, corrupt("drill %d: timer of %d minutes, outside %d to %d", n, rec.TimerMinutes, lo, hi)
		}
		for i, k := range rec.Ticks {
			if k < 1 || k > len(d.Checklist) || i > 0 && k <= rec.Ticks[i-1] {
				return p, corrupt("drill %d: ticks %v are not increasing item numbers from 1 to %d", n, rec.Ticks, len(d.Checklist))
			}
		}
	}
	if got.Drills != nil {
		p.Drills = got.Drills
	}
	return p, nil
}

// saveDrillRecord sets drill n's record in the progress file. Done stays true
// once a drill was done.
func saveDrillRecord(path string, n int, rec drillRecord) error {
	p, err := loadDrillProgress(path)
	if err != nil {
		return fmt.Errorf("progress not saved: %w", err)
	}
	rec.Done = rec.Done || p.Drills[n].Done
	p.Drills[n] = rec
	return writeDrillProgress(path, p)
}

// writeDrillProgress replaces the progress file atomically: a temporary file
// in the same directory, synced, renamed over it, and the directory synced.
func writeDrillProgress(path string, p drillProgress) (err error) {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save drill progress: %w", err)
	}
	tmp, err := os.CreateTemp(dir, drillProgressFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("save drill progress: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("save drill progress: %w", err)
		}
	}()
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// drillList prints the drills, with a check mark and the date of those done.
// A progress file that cannot be read is reported after the list.
func drillList(w io.Writer) error {
	path, err := drillProgressPath()
	var p drillProgress
	if err == nil {
		p, err = loadDrillProgress(path)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, d := range drill.All() {
		done := ""
		if rec := p.Drills[d.Number]; rec.Done {
			done = "✓ " + rec.LastRun.Local().Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", d.Number, d.Title, d.Slug, done)
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	return err
}

// drillShowProgress prints what is saved, drill by drill.
func drillShowProgress(w io.Writer) error {
	path, err := drillProgressPath()
	if err != nil {
		return err
	}
	p, err := loadDrillProgress(path)
	if err != nil {
		return err
	}
	if len(p.Drills) == 0 {
		fmt.Fprintf(w, "No progress saved yet (%s): 'sluice drill N' runs drill N.\n", path)
		return nil
	}
	fmt.Fprintf(w, "Progress saved in %s:\n", path)
	for _, d := range drill.All() {
		rec, ok := p.Drills[d.Number]
		if !ok {
			continue
		}
		state := "not done"
		if rec.Done {
			state = "done"
		}
		timer := "no timer"
		if rec.TimerMinutes > 0 {
			timer = fmt.Sprintf("timer %d min", rec.TimerMinutes)
		}
		live := "live run skipped or failed"
		if rec.LiveRun {
			live = "live run seen"
		}
		fmt.Fprintf(w, "\n%d. %s: %s, last run %s, %s, %s\n", d.Number, d.Title, state,
			rec.LastRun.Local().Format("2006-01-02 15:04"), timer, live)
		var covered []string
		for _, k := range rec.Ticks {
			covered = append(covered, strconv.Itoa(k))
		}
		if len(covered) == 0 {
			covered = []string{"none"}
		}
		fmt.Fprintf(w, "   covered %d of %d items: %s\n", len(rec.Ticks), len(d.Checklist), strings.Join(covered, ", "))
		for i, item := range d.Checklist {
			if !slices.Contains(rec.Ticks, i+1) {
				fmt.Fprintln(w, wrap(item, fmt.Sprintf("   to study: %d. ", i+1), "                 "))
			}
		}
	}
	return nil
}

// drillReset clears the progress of drill N, or of every drill, asking first
// on a terminal unless yes.
func drillReset(c *command, args []string, yes bool) error {
	if len(args) > 1 {
		return c.usageErr("unexpected argument %q", args[1])
	}
	n := 0
	if len(args) == 1 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil {
			return c.usageErr("reset %q: give a drill number 1 to %d, or nothing for every drill", args[0], len(drill.All()))
		}
		if _, err := drill.Get(n); err != nil {
			return c.usageErr("%v", err)
		}
	}
	path, err := drillProgressPath()
	if err != nil {
		return err
	}
	what := "every drill"
	if n > 0 {
		what = "drill " + strconv.Itoa(n)
	}
	if !yes && isTerminal(os.Stdin) {
		fmt.Fprintf(os.Stderr, "Clear the saved progress of %s? [y/N] ", what)
		line := <-readLines(os.Stdin)
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(os.Stderr, "Nothing cleared.")
			return nil
		}
	}
	if n == 0 {
		// Also a file that cannot be read: starting afresh is what reset is for.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reset drill progress: %w", err)
		}
	} else {
		p, err := loadDrillProgress(path)
		if err != nil {
			return err
		}
		if _, ok := p.Drills[n]; ok {
			delete(p.Drills, n)
			if err := writeDrillProgress(path, p); err != nil {
				return err
			}
		}
	}
	fmt.Printf("Cleared the progress of %s.\n", what)
	return nil
}
