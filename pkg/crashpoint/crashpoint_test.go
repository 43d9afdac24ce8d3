package crashpoint

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestHitKillsOnlyAtTheArmedPoint(t *testing.T) {
	if os.Getenv("CRASHPOINT_CHILD") == "1" {
		Hit("create/before")
		os.Stdout.WriteString("passed create/before\n")
		Hit("create/after-intent")
		os.Stdout.WriteString("passed create/after-intent\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKillsOnlyAtTheArmedPoint$")
	cmd.Env = append(os.Environ(), "CRASHPOINT_CHILD=1", Env+"=create/after-intent")
	out, err := cmd.Output()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v (%v), want SIGKILL", err, cmd.ProcessState)
	}
	if string(out) != "passed create/before\n" {
		t.Fatalf("child output %q: it must die exactly at the armed point", out)
	}
}

func TestHitDoesNothingWhenDisarmed(t *testing.T) {
	Arm("")
	Hit("anything")
}
