package mounter

import (
	"context"
	"fmt"
	"os"
	"strings"

	utilexec "k8s.io/utils/exec"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
)

// boundExec is a utilexec.Interface whose commands are all bound to ctx and run with
// LC_ALL=C. mount-utils calls Command (without a context); boundExec turns that into
// CommandContext. mkfs.* commands additionally take a token from sem.
type boundExec struct {
	ctx   context.Context
	inner utilexec.Interface
	sem   chan struct{}
}

var _ utilexec.Interface = boundExec{}

// Command returns a command bound to the context.
func (e boundExec) Command(name string, args ...string) utilexec.Cmd {
	return e.CommandContext(e.ctx, name, args...)
}

// CommandContext returns a command bound to ctx (which should be e.ctx or derived from it).
func (e boundExec) CommandContext(ctx context.Context, name string, args ...string) utilexec.Cmd {
	cmd := e.inner.CommandContext(ctx, name, args...)
	cmd.SetEnv(cEnv())
	c := &boundCmd{Cmd: cmd, ctx: ctx, name: name}
	if strings.HasPrefix(name, "mkfs") {
		c.sem = e.sem
	}
	return c
}

// LookPath finds a program in PATH.
func (e boundExec) LookPath(file string) (string, error) { return e.inner.LookPath(file) }

// cEnv is the process environment with the C locale forced, so that tool output and messages
// never depend on the host's locale.
func cEnv() []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LC_ALL=") {
			out = append(out, kv)
		}
	}
	return append(out, "LC_ALL=C")
}

// boundCmd runs a command so that Run, Output and CombinedOutput return when ctx ends, even if
// the process cannot be reaped (a process in uninterruptible sleep ignores SIGKILL until its
// I/O completes): the wait then goes on in the background, and every lock held for ctx
// (keylock.Hold, TryHold, Do) stays held until the process has ended.
type boundCmd struct {
	utilexec.Cmd
	ctx  context.Context
	name string
	sem  chan struct{}
}

// Run runs the command, bounded by the context.
func (c *boundCmd) Run() error {
	_, err := c.bounded(func() ([]byte, error) { return nil, c.Cmd.Run() })
	return err
}

// Output runs the command and returns its standard output, bounded by the context.
func (c *boundCmd) Output() ([]byte, error) { return c.bounded(c.Cmd.Output) }

// CombinedOutput runs the command and returns its output, bounded by the context.
func (c *boundCmd) CombinedOutput() ([]byte, error) { return c.bounded(c.Cmd.CombinedOutput) }

func (c *boundCmd) bounded(run func() ([]byte, error)) ([]byte, error) {
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
		case <-c.ctx.Done():
			return nil, fmt.Errorf("%s: waiting for a format slot: %w", c.name, c.ctx.Err())
		}
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned run must not block forever
	// Registered before the process starts: if the call returns first, the caller's locks
	// stay held until the process has really ended (keylock.Outlive).
	ended := keylock.Outlive(c.ctx)
	go func() {
		out, err := run()
		if c.sem != nil {
			<-c.sem
		}
		// Before the caller sees the result, so that its release frees the locks at once
		// (else the next call on the volume could find it still locked, and be Aborted).
		ended()
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && c.ctx.Err() != nil {
			// Killed because the context ended: say so rather than "signal: killed".
			return r.out, fmt.Errorf("%s: %w (%v)", c.name, c.ctx.Err(), r.err)
		}
		return r.out, r.err
	case <-c.ctx.Done():
		return nil, fmt.Errorf("%s: %w (the process may still be running; its volume stays locked until it ends)", c.name, c.ctx.Err())
	}
}
