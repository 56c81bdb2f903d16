// Package schedule computes when periodic jobs fire: five-field cron expressions
// (minute hour day-of-month month day-of-week) in a time zone, and fixed intervals.
// It is pure computation; the broker persists schedules and publishes their
// messages.
//
// Cron fields accept *, numbers, lists (1,15), ranges (1-5) and steps (*/10,
// 8-18/2). Day of week is 0-7 with 0 and 7 both Sunday. As in Vixie cron, when both
// day of month and day of week are restricted, a day matches if either does.
package schedule
