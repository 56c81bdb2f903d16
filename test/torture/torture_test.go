package main

import (
	"context"
	"testing"
	"time"

	"github.com/sluicemq/sluice/test/internal/childserver"
)

// TestTortureShort is the CI version of the torture: about 25 s of kill -9
// at random moments 2 to 6 s apart, then the clean restart, the drain and
// every check.
func TestTortureShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the torture runs for about 40 s; skipped with -short")
	}
	if _, err := childserver.GoTool(); err != nil {
		t.Skipf("building the server needs the go command: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Duration: 25 * time.Second, KillMin: 2 * time.Second, KillMax: 6 * time.Second,
		DrainTimeout: time.Minute, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Details() {
		t.Log(l)
	}
	t.Log(rep.Summary())
	t.Log(rep.Line())
	if rep.Kills < 2 {
		t.Errorf("only %d kills: the run did not exercise recovery", rep.Kills)
	}
	if rep.Acked < 1000 {
		t.Errorf("only %d acknowledged publishes: the run did not exercise the broker", rep.Acked)
	}
	if rep.Lost != 0 || rep.OrderViolations != 0 || rep.Failed() {
		t.Errorf("lost=%d order_violations=%d acked_redelivered=%d: the checks failed", rep.Lost, rep.OrderViolations, rep.AckedRedelivered)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-min(1, len(p))]))
	return len(p), nil
}
