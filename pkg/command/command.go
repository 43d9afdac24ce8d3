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
	"io"
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

// Streamer runs a program and hands its standard output to read while it runs, for output
// too large to hold (block maps). A failure of the program, or of starting it, is an *Error;
// an error read returns is returned as is, after the program was stopped. Implementations
// bound the process by ctx and are safe for concurrent use.
type Streamer interface {
	Stream(ctx context.Context, read func(stdout io.Reader) error, name string, args ...string) error
}

// command is the exec.Cmd of one run: the environment, standard error and how it is stopped.
func (e Exec) command(ctx context.Context, name string, args []string) (*exec.Cmd, *capWriter) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C"), e.Env...)
	stderr := &capWriter{max: maxStderr}
	cmd.Stderr = stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = DefaultWaitDelay
	if e.WaitDelay > 0 {
		cmd.WaitDelay = e.WaitDelay
	}
	return cmd, stderr
}

// failure is the *Error of a run that err (from Start, Run or Wait) ended; cause, when not
// nil, replaces err as what the Error unwraps to.
func failure(name string, args []string, stderr *capWriter, err, cause error) *Error {
	cerr := &Error{Cmd: name, Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		cerr.ExitCode = exitErr.ExitCode()
	}
	if cause != nil {
		cerr.Err = cause
	}
	return cerr
}

// Run runs name with args and returns its standard output, which is also returned, as far as
// it was written, when the command fails. A failure is an *Error; when the context ended the
// run, the *Error unwraps to ctx.Err().
func (e Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd, stderr := e.command(ctx, name, args)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	var cause error
	if ctx.Err() != nil {
		cause = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return stdout.Bytes(), failure(name, args, stderr, err, cause)
}

// Stream implements Streamer. When read returns before the output's end, the program is
// stopped as when ctx ends (SIGTERM, then SIGKILL after WaitDelay); when read returns nil, the
// rest of the output is drained. A read error after the program succeeded carries the
// program's standard error, which often says why its output was cut short.
func (e Exec) Stream(ctx context.Context, read func(io.Reader) error, name string, args ...string) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := e.command(ctx, name, args)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return failure(name, args, stderr, err, nil)
	}
	if err := cmd.Start(); err != nil {
		return failure(name, args, stderr, err, nil)
	}
	stdout := &eofReader{r: pipe}
	rerr := read(stdout)
	switch {
	case rerr == nil:
		_, rerr = io.Copy(io.Discard, stdout) // read stopped at the document's end
	case !stdout.eof:
		cancel() // read gave up half-way: stop the program, nobody reads the rest
	}
	werr := cmd.Wait()
	switch {
	case parent.Err() != nil:
		return failure(name, args, stderr, werr, fmt.Errorf("%w (%v)", parent.Err(), errors.Join(werr, rerr)))
	case rerr != nil && !stdout.eof:
		// read failed first (and the program was stopped for it).
		return rerr
	case werr != nil:
		// The program failed (a read error is only the output it cut short).
		return failure(name, args, stderr, werr, nil)
	case rerr != nil:
		if msg := oneLine(stderr.String()); msg != "" {
			return fmt.Errorf("%w (%s: %s)", rerr, name, msg)
		}
		return rerr
	}
	return nil
}

// eofReader notes whether its reader reached its end.
type eofReader struct {
	r   io.Reader
	eof bool
}

func (r *eofReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		r.eof = true
	}
	return n, err
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
