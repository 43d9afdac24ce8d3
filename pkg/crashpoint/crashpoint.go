// Package crashpoint lets crash tests kill a process at a named step of an operation, to prove
// that an interruption at that instant loses nothing acknowledged and leaves nothing half
// done once the process starts again.
//
// Production code marks its steps with Hit("create/after-intent"). Hit does nothing unless
// the process was started with NVMEOF_CRASHPOINT naming that step, in which case it kills the
// process at once with SIGKILL: no deferred call, no flush, exactly like kill -9. The check is
// one atomic load, so marks stay in hot paths.
package crashpoint

import (
	"os"
	"sync/atomic"
	"syscall"
)

// Env is the environment variable that names the step to die at.
const Env = "NVMEOF_CRASHPOINT"

var armed atomic.Pointer[string]

func init() {
	if name := os.Getenv(Env); name != "" {
		armed.Store(&name)
	}
}

// Hit kills the process with SIGKILL if name is the armed crash point.
func Hit(name string) {
	if p := armed.Load(); p != nil && *p == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; never go on
	}
}

// Arm sets the crash point of this process (tests; "" disarms).
func Arm(name string) {
	if name == "" {
		armed.Store(nil)
		return
	}
	armed.Store(&name)
}
