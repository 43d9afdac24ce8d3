package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// A step is a Go function of the test binary that a test running on the host has a Machine run
// in its guest: the binary is the same on both sides, so a step registered at package level
// (NewStep in a var declaration) exists in the guest too. A step gets a *Step, which is a
// testing.TB: the project's test helpers (tests/vmenv) work in it unchanged.
//
// Steps live in one long-running process per guest, so what a step starts (an agent, a writer)
// keeps running after it returns, for later steps; Step.Cleanup defers work to the end of the
// guest session (Machine.Shutdown), not of the step.

// DefaultStepTimeout bounds a step whose context has no deadline.
const DefaultStepTimeout = 10 * time.Minute

// stepReplyGrace is how long the host waits past a step's deadline for the guest's answer
// before it gives up on the step.
const stepReplyGrace = 30 * time.Second

type stepHandler func(s *Step, arg json.RawMessage) (any, error)

var (
	stepsMu sync.Mutex
	steps   = map[string]stepHandler{}
)

func registerStep(name string, h stepHandler) {
	stepsMu.Lock()
	defer stepsMu.Unlock()
	if _, dup := steps[name]; dup || strings.HasPrefix(name, "vmtest.") {
		panic(fmt.Sprintf("vmtest: step %q registered twice or reserved", name))
	}
	steps[name] = h
}

func lookupStep(name string) (stepHandler, bool) {
	stepsMu.Lock()
	defer stepsMu.Unlock()
	h, ok := steps[name]
	return h, ok
}

// StepFunc is a registered step taking In and returning Out, both JSON-encodable.
type StepFunc[In, Out any] struct{ name string }

// NewStep registers fn under name (unique in the binary) and returns the handle the host uses
// to run it. Call it at package level so that the guest, running the same binary, has it too.
func NewStep[In, Out any](name string, fn func(s *Step, in In) Out) StepFunc[In, Out] {
	registerStep(name, func(s *Step, raw json.RawMessage) (any, error) {
		var in In
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &in); err != nil {
				return nil, fmt.Errorf("step %s: decoding its argument: %w", name, err)
			}
		}
		return fn(s, in), nil
	})
	return StepFunc[In, Out]{name: name}
}

// Name is the step's registered name.
func (f StepFunc[In, Out]) Name() string { return f.name }

// Run runs the step in m's guest, bounded by DefaultStepTimeout, and returns its result; a
// failed step (or a guest that does not answer) fails t at once with the step's messages.
func (f StepFunc[In, Out]) Run(t testing.TB, m *Machine, in In) Out {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStepTimeout)
	defer cancel()
	out, err := f.Call(ctx, m, in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Call runs the step in m's guest, bounded by ctx (its deadline becomes the step's context
// deadline in the guest; without one, DefaultStepTimeout), and returns its result, or an error
// when the step failed, the guest did not answer or the machine stopped.
func (f StepFunc[In, Out]) Call(ctx context.Context, m *Machine, in In) (Out, error) {
	var out Out
	arg, err := json.Marshal(in)
	if err != nil {
		return out, err
	}
	raw, err := m.call(ctx, f.name, arg)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("%s: step %s: decoding its result: %w", m.Name(), f.name, err)
	}
	return out, nil
}

// Step is what a step function gets: a testing.TB scoped to one call. Error and Fatal fail
// the step (Fatal and FailNow end it, as in a test); Log goes to the guest's console, which the
// host shows prefixed with the machine's name. Cleanup runs at the end of the guest session.
// A step cannot be skipped: Skip fails it.
type Step struct {
	// TB is nil: embedding it gives Step testing.TB's unexported method. Every exported
	// method is Step's own.
	testing.TB

	name    string
	machine string
	ctx     context.Context
	sess    *session
	out     io.Writer

	mu     sync.Mutex
	failed bool
	msgs   []string
}

// Name is "<machine>/<step>".
func (s *Step) Name() string { return s.machine + "/" + s.name }

// Context ends when the step's deadline passes.
func (s *Step) Context() context.Context { return s.ctx }

// Helper does nothing: step messages carry no file positions.
func (s *Step) Helper() {}

// Log writes to the guest's console.
func (s *Step) Log(args ...any) { s.logf("%s", fmt.Sprintln(args...)) }

// Logf writes to the guest's console.
func (s *Step) Logf(format string, args ...any) { s.logf(format, args...) }

func (s *Step) logf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	fmt.Fprintf(s.out, "%s: %s\n", s.name, msg)
}

// Output is the guest's console.
func (s *Step) Output() io.Writer { return s.out }

// Attr logs the attribute.
func (s *Step) Attr(key, value string) { s.Logf("attr %s=%s", key, value) }

// Fail marks the step failed.
func (s *Step) Fail() {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
}

// Failed reports whether the step has failed.
func (s *Step) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// FailNow fails the step and ends its goroutine, which must be the step's own.
func (s *Step) FailNow() {
	s.Fail()
	runtime.Goexit()
}

func (s *Step) record(msg string) {
	msg = strings.TrimRight(msg, "\n")
	s.logf("%s", msg)
	s.mu.Lock()
	s.failed = true
	s.msgs = append(s.msgs, msg)
	s.mu.Unlock()
}

// Error records a failure and goes on.
func (s *Step) Error(args ...any) { s.record(fmt.Sprintln(args...)) }

// Errorf records a failure and goes on.
func (s *Step) Errorf(format string, args ...any) { s.record(fmt.Sprintf(format, args...)) }

// Fatal records a failure and ends the step.
func (s *Step) Fatal(args ...any) {
	s.record(fmt.Sprintln(args...))
	runtime.Goexit()
}

// Fatalf records a failure and ends the step.
func (s *Step) Fatalf(format string, args ...any) {
	s.record(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// Skip fails the step: a step that cannot do its work must say so, never pass unseen.
func (s *Step) Skip(args ...any) { s.Fatal(append([]any{"step skipped:"}, args...)...) }

// Skipf fails the step (see Skip).
func (s *Step) Skipf(format string, args ...any) { s.Fatalf("step skipped: "+format, args...) }

// SkipNow fails the step (see Skip).
func (s *Step) SkipNow() { s.Fatal("step skipped") }

// Skipped is always false.
func (s *Step) Skipped() bool { return false }

// Cleanup runs f at the end of the guest session, after the cleanups registered later.
func (s *Step) Cleanup(f func()) { s.sess.addCleanup(f) }

// TempDir returns a new directory in the guest (its tmpfs-backed root overlay).
func (s *Step) TempDir() string {
	dir, err := os.MkdirTemp("", "step-"+s.name+"-")
	if err != nil {
		s.Fatalf("TempDir: %v", err)
	}
	return dir
}

// ArtifactDir is a TempDir.
func (s *Step) ArtifactDir() string { return s.TempDir() }

// Setenv sets an environment variable of the whole guest process, for the rest of the session.
func (s *Step) Setenv(key, value string) {
	if err := os.Setenv(key, value); err != nil {
		s.Fatalf("Setenv: %v", err)
	}
}

// Chdir changes the guest process's directory, for the rest of the session.
func (s *Step) Chdir(dir string) {
	if err := os.Chdir(dir); err != nil {
		s.Fatalf("Chdir: %v", err)
	}
}

// session is one guest process serving steps: the cleanups its steps registered.
type session struct {
	mu       sync.Mutex
	cleanups []func()
}

func (ss *session) addCleanup(f func()) {
	ss.mu.Lock()
	ss.cleanups = append(ss.cleanups, f)
	ss.mu.Unlock()
}

// runCleanups runs the cleanups, last registered first, each protected from panics.
func (ss *session) runCleanups(out io.Writer) {
	for {
		ss.mu.Lock()
		n := len(ss.cleanups)
		if n == 0 {
			ss.mu.Unlock()
			return
		}
		f := ss.cleanups[n-1]
		ss.cleanups = ss.cleanups[:n-1]
		ss.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(out, "vmtest: a cleanup panicked: %v\n%s", r, debug.Stack())
				}
			}()
			f()
		}()
	}
}

// runStep runs one step in its own goroutine (so that FailNow ends it alone) and returns its
// encoded result, or an error carrying its failure messages.
func runStep(ctx context.Context, sess *session, machine, name string, arg json.RawMessage, out io.Writer) (json.RawMessage, error) {
	h, ok := lookupStep(name)
	if !ok {
		return nil, fmt.Errorf("no step %q in the guest's binary", name)
	}
	s := &Step{name: name, machine: machine, ctx: ctx, sess: sess, out: out}
	type result struct {
		v        any
		err      error
		finished bool
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				s.record(fmt.Sprintf("panic: %v\n%s", p, debug.Stack()))
			}
			done <- r
		}()
		r.v, r.err = h(s, arg)
		r.finished = true
	}()
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	if s.Failed() {
		s.mu.Lock()
		msgs := strings.Join(s.msgs, "\n")
		s.mu.Unlock()
		if msgs == "" {
			msgs = "(the step failed without a message)"
		}
		return nil, fmt.Errorf("step %s failed:\n%s", s.Name(), msgs)
	}
	if !r.finished {
		return nil, fmt.Errorf("step %s ended early without a failure (runtime.Goexit)", s.Name())
	}
	raw, err := json.Marshal(r.v)
	if err != nil {
		return nil, fmt.Errorf("step %s: encoding its result: %w", s.Name(), err)
	}
	return raw, nil
}
