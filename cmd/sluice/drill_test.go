package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// drillCLI runs the binary with SLUICE_CONFIG_DIR=dir and standard input
// not a terminal.
func drillCLI(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	return runCLI(t, []string{"SLUICE_CONFIG_DIR=" + dir}, "", args...)
}

// drillOK runs args and fails the test unless it succeeds; it returns
// standard output.
func drillOK(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := drillCLI(t, dir, args...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("sluice %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.errOut)
	}
	return r.out
}

// TestCLIDrill runs drill 3 as a script would, then reads the progress back
// with list and progress, and clears it with reset.
func TestCLIDrill(t *testing.T) {
	dir := t.TempDir()
	list := drillOK(t, dir, "drill", "list")
	lines := outputLines(list)
	if len(lines) != 4 {
		t.Fatalf("drill list printed %d lines:\n%s", len(lines), list)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, string(rune('1'+i))+" ") || strings.Contains(l, "✓") {
			t.Errorf("drill list line %d: %q", i+1, l)
		}
	}

	start := time.Now()
	out := drillOK(t, dir, "drill", "3", "--no-timer", "--ticks", "1,2")
	t.Logf("drill 3 took %v", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"Drill 3 of 4: A poisoned message", "  [x] 1. ", "  [x] 2. ", "  [ ] 3. ", "You covered 2 of 8.",
		"Live run, on a broker embedded in this process:", "\nConclusion: ", "\nYour study list:\n  3. "} {
		if !strings.Contains(out, want) {
			t.Errorf("drill 3 lacks %q:\n%s", want, out)
		}
	}
	for _, re := range []string{
		`(?m)^    deliveries of the poisoned payment +3 count$`,
		`(?m)^    dead letters +1 count$`,
		`(?m)^    payments applied +30 msg$`,
		`(?m)^    gap before attempt 2 +\d+\.\d ms$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("drill 3 lacks a figure line matching %s:\n%s", re, out)
		}
	}
	study := out[strings.Index(out, "Your study list:"):]
	if strings.Contains(study, "\n  1. ") || strings.Contains(study, "\n  2. ") || !strings.Contains(study, "\n  8. ") {
		t.Errorf("the study list holds a ticked item or lacks an unticked one:\n%s", study)
	}
	if strings.Index(out, "A strong answer covers") > strings.Index(out, "Live run") {
		t.Error("the live run came before the checklist")
	}

	var p drillProgress
	data, err := os.ReadFile(filepath.Join(dir, "drills.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("drills.json: %v\n%s", err, data)
	}
	rec, ok := p.Drills[3]
	if !ok || !rec.Done || !rec.LiveRun || !slices.Equal(rec.Ticks, []int{1, 2}) || rec.TimerMinutes != 0 || time.Since(rec.LastRun) > time.Minute {
		t.Fatalf("drills.json: %s", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the config directory holds %d files, want drills.json alone", len(entries))
	}

	list = drillOK(t, dir, "drill", "list")
	today := time.Now().Format(time.DateOnly)
	for _, l := range outputLines(list) {
		done := strings.Contains(l, "✓ ")
		if strings.HasPrefix(l, "3 ") != done || done && !strings.Contains(l, today) {
			t.Errorf("drill list after drill 3: %q", l)
		}
	}
	prog := drillOK(t, dir, "drill", "progress")
	for _, want := range []string{"3. A poisoned message: done, last run " + today, "no timer", "covered 2 of 8 items: 1, 2", "to study: 3. "} {
		if !strings.Contains(prog, want) {
			t.Errorf("drill progress lacks %q:\n%s", want, prog)
		}
	}

	out = drillOK(t, dir, "drill", "1", "--no-timer", "--ticks", "all", "--no-live")
	if strings.Contains(out, "Live run") || !strings.Contains(out, "Your study list is empty") {
		t.Errorf("drill 1 --no-live --ticks all:\n%s", out)
	}
	prog = drillOK(t, dir, "drill", "progress")
	if !strings.Contains(prog, "1. A queue between two services, or not: done") || !strings.Contains(prog, "covered 9 of 9 items") {
		t.Errorf("drill progress after drill 1:\n%s", prog)
	}

	drillOK(t, dir, "drill", "reset", "3")
	if prog := drillOK(t, dir, "drill", "progress"); strings.Contains(prog, "poisoned") || !strings.Contains(prog, "1. A queue") {
		t.Errorf("drill progress after reset 3:\n%s", prog)
	}
	drillOK(t, dir, "drill", "reset", "--yes")
	if prog := drillOK(t, dir, "drill", "progress"); !strings.Contains(prog, "No progress saved yet") {
		t.Errorf("drill progress after reset:\n%s", prog)
	}
}

// TestCLIDrillUsage checks that a drill command line that cannot run exits
// with status 2, names the limit, and saves nothing.
func TestCLIDrillUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string // in standard error
	}{
		{[]string{"drill", "7", "--no-timer"}, []string{"sluice drill: drill 7: there are drills 1 to 4", "usage: sluice drill"}},
		{[]string{"drill", "0", "--no-timer"}, []string{"drill 0: there are drills 1 to 4"}},
		{[]string{"drill", "3", "--no-timer", "--minutes", "12"}, []string{"--minutes 12 is outside 5 to 10"}},
		{[]string{"drill", "3", "--no-timer", "--minutes", "4"}, []string{"--minutes 4 is outside 5 to 10"}},
		{[]string{"drill", "3", "--no-timer", "--ticks", "9"}, []string{"--ticks 9: no item 9 (drill 3 has checklist items 1 to 8)"}},
		{[]string{"drill", "3", "--no-timer", "--ticks", "1,x"}, []string{`"x" is not an item number`, "items 1 to 8"}},
		{[]string{"drill", "3", "--no-timer", "--ticks", ""}, []string{"give item numbers (1,3,5), all or none"}},
		{[]string{"drill", "3"}, []string{"standard input is not a terminal", "pass --no-timer"}},
		{[]string{"drill", "3", "--ticks", "1"}, []string{"pass --no-timer"}},
		{[]string{"drill"}, []string{"missing the drill: a number 1 to 4, or list, progress or reset"}},
		{[]string{"drill", "lsit"}, []string{`unknown command "lsit"`, "did you mean 'sluice drill list'?"}},
		{[]string{"drill", "list", "--ticks", "1"}, []string{"--ticks applies to 'sluice drill N' only"}},
		{[]string{"drill", "3", "4", "--no-timer"}, []string{`unexpected argument "4"`}},
		{[]string{"drill", "reset", "9"}, []string{"drill 9: there are drills 1 to 4"}},
		{[]string{"drill", "reset", "all"}, []string{`reset "all": give a drill number 1 to 4`}},
	} {
		r := drillCLI(t, dir, tc.args...)
		if r.code != 2 {
			t.Errorf("sluice %s: exit %d, want 2\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), r.code, r.out, r.errOut)
			continue
		}
		if r.out != "" {
			t.Errorf("sluice %s printed to standard output before refusing:\n%s", strings.Join(tc.args, " "), r.out)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.errOut, w) {
				t.Errorf("sluice %s: standard error lacks %q:\n%s", strings.Join(tc.args, " "), w, r.errOut)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused command lines saved %d files", len(entries))
	}
}

// TestCLIDrillCorruptProgress checks that a damaged or foreign progress file
// is reported, not trusted or overwritten, and that reset clears it.
func TestCLIDrillCorruptProgress(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":      "{\"version\": 1, \"drills\": {",
		"unknown drill": `{"version": 1, "drills": {"9": {"done": true}}}`,
		"bad ticks":     `{"version": 1, "drills": {"2": {"ticks": [3, 1]}}}`,
		"bad timer":     `{"version": 1, "drills": {"2": {"timer_minutes": 60}}}`,
		"other version": `{"version": 2, "drills": {}}`,
		"too large":     `{"version": 1, "drills": {}, "pad": "` + strings.Repeat("x", maxDrillProgressBytes) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "drills.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			r := drillCLI(t, dir, "drill", "progress")
			if r.code != 1 || !strings.Contains(r.errOut, "is not a drill progress file") || !strings.Contains(r.errOut, "'sluice drill reset'") {
				t.Fatalf("drill progress: exit %d\n%s", r.code, r.errOut)
			}
			r = drillCLI(t, dir, "drill", "list")
			if r.code != 1 || len(outputLines(r.out)) != 4 || !strings.Contains(r.errOut, "is not a drill progress file") {
				t.Fatalf("drill list: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.errOut)
			}
			r = drillCLI(t, dir, "drill", "2", "--no-timer", "--no-live")
			if r.code != 1 || !strings.Contains(r.errOut, "progress not saved") {
				t.Fatalf("drill 2: exit %d\nstderr: %s", r.code, r.errOut)
			}
			if data, _ := os.ReadFile(path); string(data) != content {
				t.Fatal("the damaged progress file was overwritten")
			}
			drillOK(t, dir, "drill", "reset")
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("drills.json after reset: %v", err)
			}
		})
	}
}

func TestDrillParseTicks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  string
	}{
		{"1,3,5", []int{1, 3, 5}, ""},
		{" 5, 1 ,3,3", []int{1, 3, 5}, ""},
		{"all", []int{1, 2, 3, 4, 5, 6}, ""},
		{"None", []int{}, ""},
		{"0", nil, "no item 0"},
		{"7", nil, "no item 7"},
		{"1,,2", nil, `"" is not an item number`},
		{"", nil, "give item numbers"},
	} {
		got, err := parseTicks(tc.in, 6)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseTicks(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseTicks(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDrillWrap(t *testing.T) {
	text := strings.Repeat("word ", 40)
	got := wrap(text, "  1. ", "     ")
	lines := strings.Split(got, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "  1. word") {
		t.Fatalf("wrap:\n%s", got)
	}
	for _, l := range lines {
		if len(l) > drillWidth {
			t.Errorf("line of %d characters: %q", len(l), l)
		}
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "     word") {
			t.Errorf("continuation line %q", l)
		}
	}
}
