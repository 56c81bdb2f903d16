package childserver

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill the server when the driver dies, so that
// no server outlives an interrupted run.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
