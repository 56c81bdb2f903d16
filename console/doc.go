// Package console is sluice's web console: one page of HTML, CSS and plain
// JavaScript, embedded in the binary, with no build step and nothing fetched
// from outside. `sluice serve` serves it at / beside the API.
//
// The page speaks only the public API (Connect's JSON protocol, with the
// bearer token the user enters), exactly as curl or any other client would:
// streams, subscriptions and their rates, consuming by hand, the dead-letter
// view with redrive and purge, and the design drills, whose live runs go
// through DrillService. Drill progress stays in the browser's local storage.
package console
