package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLISchedule creates, lists, pauses, resumes and deletes schedules.
func TestCLISchedule(t *testing.T) {
	s := newCLIServer(t)
	s.ok("stream", "create", "jobs")
	out := s.ok("schedule", "create", "nightly", "--stream", "jobs", "--cron", "0 2 * * *", "--tz", "Europe/Paris",
		"--key", "report", "--header", "kind=report", `{"job":"report"}`)
	if !strings.HasPrefix(out, `created nightly: cron "0 2 * * *" Europe/Paris to jobs, next 20`) {
		t.Fatalf("schedule create printed %q", out)
	}
	s.ok("schedule", "create", "heartbeat", "--stream", "jobs", "--every", "1h", "ping")

	list := outputLines(s.ok("schedule", "list"))
	if len(list) != 2 || !strings.HasPrefix(list[0], "heartbeat") || !strings.Contains(list[0], "every 1h0m0s") ||
		!strings.HasPrefix(list[1], "nightly") || !strings.Contains(list[1], "fired 0") {
		t.Fatalf("schedule list: %q", list)
	}
	if out := s.ok("schedule", "pause", "nightly"); out != "paused nightly\n" {
		t.Fatalf("schedule pause printed %q", out)
	}
	var infos []struct {
		Config struct {
			Name     string `json:"name"`
			Paused   bool   `json:"paused"`
			TimeZone string `json:"time_zone"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(s.ok("schedule", "list", "--json")), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[1].Config.Name != "nightly" || !infos[1].Config.Paused || infos[1].Config.TimeZone != "Europe/Paris" {
		t.Fatalf("schedule list --json after pause: %+v", infos)
	}
	if !strings.Contains(outputLines(s.ok("schedule", "list"))[1], "next paused") {
		t.Fatal("schedule list does not show the pause")
	}
	if out := s.ok("schedule", "resume", "nightly"); !strings.HasPrefix(out, "resumed nightly: next 20") {
		t.Fatalf("schedule resume printed %q", out)
	}
	if out := s.ok("schedule", "delete", "heartbeat"); out != "deleted heartbeat\n" {
		t.Fatalf("schedule delete printed %q", out)
	}
	if list := outputLines(s.ok("schedule", "list")); len(list) != 1 {
		t.Fatalf("after delete: %q", list)
	}

	s.fails(2, "schedule", "create", "x", "--stream", "jobs", "body")                                      // neither --cron nor --every
	s.fails(2, "schedule", "create", "x", "--stream", "jobs", "--cron", "* * * * *", "--every", "1m", "b") // both
	s.fails(2, "schedule", "create", "x", "--every", "1m", "body")                                         // no --stream
	if errOut := s.fails(1, "schedule", "create", "x", "--stream", "jobs", "--cron", "61 * * * *", "b"); !strings.Contains(errOut, "cron") {
		t.Fatalf("a bad cron expression says %q", errOut)
	}
	if errOut := s.fails(1, "schedule", "create", "nightly", "--stream", "jobs", "--every", "1m", "b"); !strings.Contains(errOut, "schedule delete") {
		t.Fatalf("a name in use says %q", errOut)
	}
	if errOut := s.fails(1, "schedule", "pause", "missing"); !strings.Contains(errOut, "schedule list") {
		t.Fatalf("a missing schedule says %q", errOut)
	}
}
