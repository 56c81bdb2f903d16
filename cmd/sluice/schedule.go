package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluicemq/sluice"
)

var scheduleGroup = group{name: "schedule", help: `sluice schedule COMMAND [NAME] [flags]

Manages schedules: named jobs of the server that publish a message to a stream
on a cron expression or at a fixed interval, once per tick across restarts.

  sluice schedule create NAME --stream STREAM (--cron EXPR | --every DURATION) [--tz ZONE] BODY
  sluice schedule list [--json]
  sluice schedule pause NAME
  sluice schedule resume NAME
  sluice schedule delete NAME

examples:
  sluice schedule create nightly-report --stream jobs --cron '0 2 * * *' --tz Europe/Paris '{"job":"report"}'
  sluice schedule create heartbeat --stream pings --every 30s ping
  sluice schedule pause nightly-report`}

func init() {
	scheduleGroup.subs = []verb{
		{"create", "create a schedule", runScheduleCreate},
		{"list", "list the schedules and their next fire times", runScheduleList},
		{"pause", "pause a schedule", func(args []string) error { return runSchedulePause(args, true) }},
		{"resume", "resume a paused schedule", func(args []string) error { return runSchedulePause(args, false) }},
		{"delete", "delete a schedule", runScheduleDelete},
	}
}

// runSchedule manages schedules.
func runSchedule(args []string) error { return scheduleGroup.run(args) }

const scheduleCreateHelp = `sluice schedule create NAME --stream STREAM (--cron EXPR | --every DURATION) [flags] BODY

Creates a schedule that publishes BODY to STREAM at every tick: on a five-field
cron expression (minute hour day-of-month month day-of-week) read in --tz, or
every DURATION from now. Each message carries the headers sluice-schedule and
sluice-schedule-tick. Ticks missed while the server was down are skipped, or
with --missed catch-up-once fired once.

examples:
  sluice schedule create nightly-report --stream jobs --cron '0 2 * * *' --tz Europe/Paris '{"job":"report"}'
  sluice schedule create heartbeat --stream pings --every 30s ping
  sluice schedule create sweep --stream jobs --every 1h --key sweep --header kind=maintenance --paused sweep`

func runScheduleCreate(args []string) error {
	c := newCommand("schedule create", scheduleCreateHelp)
	stream := c.fs.String("stream", "", "the `STREAM` to publish to (required)")
	cron := c.fs.String("cron", "", "five-field cron `EXPR`, as in '*/5 * * * *'")
	every := c.fs.Duration("every", 0, "fire every `DURATION` (1s to 366 days), instead of --cron")
	tz := c.fs.String("tz", "", "IANA time `ZONE` the cron expression is read in (default UTC)")
	missed := c.fs.String("missed", "", "ticks missed while the server was down: `skip` (default) or catch-up-once")
	key := c.fs.String("key", "", "message `KEY`")
	var headers headerFlag
	c.fs.Var(&headers, "header", "a header `KEY=VALUE`; repeat for more")
	partition := c.fs.Int("partition", -1, "publish to partition `N` instead of the one the key chooses")
	paused := c.fs.Bool("paused", false, "create it paused")
	pos, err := c.parseArgs(args, "NAME", "BODY")
	if err != nil {
		return err
	}
	if *stream == "" {
		return c.usageErr("missing --stream STREAM")
	}
	if (*cron == "") == (*every == 0) {
		return c.usageErr("give one of --cron EXPR and --every DURATION")
	}
	cfg := sluice.ScheduleConfig{Name: pos[0], Stream: *stream, Cron: *cron, Every: *every, TimeZone: *tz, Paused: *paused,
		Message: sluice.Message{Body: []byte(pos[1]), Headers: headers}}
	if *key != "" {
		cfg.Message.Key = []byte(*key)
	}
	if *partition >= 0 {
		cfg.Message.Partition = sluice.ToPartition(*partition)
	}
	if *missed != "" {
		m, err := enumValue("missed", *missed, "skip", "catch_up_once")
		if err != nil {
			return err
		}
		cfg.Missed = sluice.MissedPolicy(m)
	}
	cl, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.CreateSchedule(context.Background(), cfg)
	if err != nil {
		return err
	}
	fmt.Printf("created %s: %s to %s, next %s\n", info.Config.Name, scheduleWhen(info.Config), info.Config.Stream, fireTime(info))
	return nil
}

// scheduleWhen describes when a schedule fires.
func scheduleWhen(c sluice.ScheduleConfig) string {
	if c.Every != 0 {
		return "every " + c.Every.String()
	}
	return fmt.Sprintf("cron %q %s", c.Cron, c.TimeZone)
}

func fireTime(info sluice.ScheduleInfo) string {
	if info.Config.Paused || info.NextFire.IsZero() {
		return "paused"
	}
	return info.NextFire.Format(time.RFC3339)
}

const scheduleListHelp = `sluice schedule list [--json]

Lists the schedules, one a line: name, stream, when it fires, the next fire
time (or paused), and how many times it fired.

examples:
  sluice schedule list
  sluice schedule list --json`

func runScheduleList(args []string) error {
	c := newCommand("schedule list", scheduleListHelp)
	asJSON := c.fs.Bool("json", false, "print the schedules as a JSON array")
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	defer cl.Close()
	list, err := cl.ListSchedules(context.Background())
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\tnext %s\tfired %d\n", s.Config.Name, s.Config.Stream, scheduleWhen(s.Config), fireTime(s), s.Fired)
	}
	return tw.Flush()
}

const schedulePauseHelp = `sluice schedule pause|resume NAME

Pauses a schedule (it does not fire), or resumes it: the ticks that passed
while it was paused are skipped.

examples:
  sluice schedule pause nightly-report
  sluice schedule resume nightly-report`

func runSchedulePause(args []string, pause bool) error {
	name := "schedule resume"
	if pause {
		name = "schedule pause"
	}
	c := newCommand(name, schedulePauseHelp)
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.PauseSchedule(context.Background(), pos[0], pause)
	if err != nil {
		return err
	}
	if pause {
		fmt.Printf("paused %s\n", info.Config.Name)
	} else {
		fmt.Printf("resumed %s: next %s\n", info.Config.Name, fireTime(info))
	}
	return nil
}

const scheduleDeleteHelp = `sluice schedule delete NAME

Deletes a schedule. The messages it published stay.

examples:
  sluice schedule delete nightly-report`

func runScheduleDelete(args []string) error {
	c := newCommand("schedule delete", scheduleDeleteHelp)
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.DeleteSchedule(context.Background(), pos[0]); err != nil {
		return err
	}
	fmt.Printf("deleted %s\n", pos[0])
	return nil
}
