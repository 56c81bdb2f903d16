//go:build !linux

package childserver

import "os/exec"

// setPdeathsig does nothing where the kernel cannot kill a child when its
// parent dies.
func setPdeathsig(cmd *exec.Cmd) {}
