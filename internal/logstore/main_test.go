package logstore

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every Partition a
// test opens must be closed, including after a simulated crash.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
