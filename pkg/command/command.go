// Package command is the one seam through which the project runs subprocesses.
//
// Code that needs a program's output takes a Runner; production wires in Exec, unit tests a
// fake from the commandtest package. Every run is bounded by the caller's context and sees
// LC_ALL=C, so messages and number formats do not depend on the host's locale.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Runner runs a program and returns its standard output. Implementations bound the process
// by ctx and report failures as *Error. They are safe for concurrent use.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// DefaultWaitDelay is how long Exec waits after asking a cancelled process to stop (SIGTERM)
// before it kills it and stops waiting for its output.
const DefaultWaitDelay = 10 * time.Second

// maxStderr caps the standard error kept for an Error; the tail beyond it is dropped.
const maxStderr = 64 << 10

// Exec is the real Runner: exec.CommandContext with the process environment plus LC_ALL=C and
// Env (later entries win). Standard input is empty. When ctx ends, the process gets SIGTERM
// (so tools such as lvm can release their locks), then SIGKILL after WaitDelay.
// The zero value is ready to use.
type Exec struct {
	// Env is added to the environment after LC_ALL=C.
	Env []string
	// WaitDelay overrides DefaultWaitDelay when positive.
	WaitDelay time.Duration
}

// Run runs name with args and returns its standard output, which is also returned, as far as
// it was written, when the command fails. A failure is an *Error; when the context ended the
// run, the *Error unwraps to ctx.Err().
func (e Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C"), e.Env...)
	var stdout bytes.Buffer
	stderr := &capWriter{max: maxStderr}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = DefaultWaitDelay
	if e.WaitDelay > 0 {
		cmd.WaitDelay = e.WaitDelay
	}
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	cerr := &Error{Cmd: name, Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		cerr.ExitCode = exitErr.ExitCode()
	}
	if ctx.Err() != nil {
		cerr.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return stdout.Bytes(), cerr
}

// Error is a failed run: the program could not start, exited non-zero, or was stopped because
// its context ended.
type Error struct {
	// Cmd and Args are the program and its arguments.
	Cmd  string
	Args []string
	// ExitCode is the exit status, or -1 when the program did not exit normally.
	ExitCode int
	// Stderr is what the program wrote to standard error (at most 64 KiB, the rest dropped).
	Stderr string
	// Err is the underlying error: the context's error when it ended the run, else an
	// *exec.ExitError or the error from starting the program.
	Err error
}

// Error reads "cmd args: exit N: stderr" on one line (stderr lines joined with "; ").
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Cmd)
	for _, a := range e.Args {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	switch {
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, ": exit %d", e.ExitCode)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if s := oneLine(e.Stderr); s != "" {
		b.WriteString(": ")
		b.WriteString(s)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// quoteArg quotes an argument only when it would otherwise read ambiguously.
func quoteArg(a string) string {
	if a == "" || strings.ContainsAny(a, " \t\n\"'\\") {
		return strconv.Quote(a)
	}
	return a
}

// oneLine trims s and joins its non-empty lines with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// capWriter keeps the first max bytes written to it and drops the rest.
type capWriter struct {
	buf bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (w *capWriter) String() string { return w.buf.String() }
