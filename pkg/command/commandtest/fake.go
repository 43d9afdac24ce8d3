// Package commandtest provides a scriptable fake command.Runner for unit tests.
//
// A Fake answers each call with the first rule that matches it, in the order the rules were
// added. A rule matches a program name plus an argument prefix (On) or any predicate
// (OnFunc), and answers with fixed output, a failure shaped like the real one
// (*command.Error), or a function. Rules can be limited to a number of uses, so a sequence of
// answers to the same command is a sequence of rules. Every call is recorded. A call no rule
// matches fails with exit code 127 and is recorded too; Unmatched lists them.
//
//	f := commandtest.New()
//	f.On("lvm", "lvs").Once().Return(emptyReport)
//	f.On("lvm", "lvcreate").Fail(5, `Logical Volume "v1" already exists in volume group "vg"`)
//	pool := lvm.Pool{VG: "vg", ThinPool: "pool", Runner: f}
//
// A Fake is safe for concurrent use.
package commandtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
)

// Call is one recorded run.
type Call struct {
	Name string
	Args []string
}

// String renders the call as a command line.
func (c Call) String() string { return strings.Join(append([]string{c.Name}, c.Args...), " ") }

// HasArgs reports whether want appears in the call's arguments as a contiguous run.
func (c Call) HasArgs(want ...string) bool {
	if len(want) == 0 {
		return true
	}
	for i := 0; i+len(want) <= len(c.Args); i++ {
		if slices.Equal(c.Args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

// Fake is a scriptable command.Runner. The zero value has no rules; New is the same.
type Fake struct {
	mu        sync.Mutex
	rules     []*Rule
	calls     []Call
	unmatched []Call
}

// New returns a Fake with no rules.
func New() *Fake { return &Fake{} }

// Rule is one scripted answer. Configure it right after adding it, before the Fake is used.
type Rule struct {
	match func(Call) bool
	left  int // uses left; negative means unlimited
	do    func(ctx context.Context, c Call) ([]byte, error)
}

// On adds a rule for calls of name whose arguments start with argsPrefix. Until configured,
// it answers with empty output and success.
func (f *Fake) On(name string, argsPrefix ...string) *Rule {
	prefix := slices.Clone(argsPrefix)
	return f.OnFunc(func(c Call) bool {
		return c.Name == name && len(c.Args) >= len(prefix) && slices.Equal(c.Args[:len(prefix)], prefix)
	})
}

// OnFunc adds a rule for the calls match accepts.
func (f *Fake) OnFunc(match func(Call) bool) *Rule {
	r := &Rule{match: match, left: -1}
	r.do = func(context.Context, Call) ([]byte, error) { return nil, nil }
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// Times limits the rule to n uses; after that it no longer matches.
func (r *Rule) Times(n int) *Rule {
	r.left = n
	return r
}

// Once is Times(1).
func (r *Rule) Once() *Rule { return r.Times(1) }

// Return makes the rule succeed with stdout.
func (r *Rule) Return(stdout string) *Rule {
	return r.Do(func(context.Context, Call) ([]byte, error) { return []byte(stdout), nil })
}

// Fail makes the rule fail like a program that exited with exitCode after writing stderr: the
// error is a *command.Error.
func (r *Rule) Fail(exitCode int, stderr string) *Rule {
	return r.Do(func(_ context.Context, c Call) ([]byte, error) {
		return nil, &command.Error{Cmd: c.Name, Args: c.Args, ExitCode: exitCode, Stderr: stderr,
			Err: fmt.Errorf("exit status %d", exitCode)}
	})
}

// Do makes the rule answer with fn, which may block (honouring ctx) to let a test observe
// concurrent behaviour.
func (r *Rule) Do(fn func(ctx context.Context, c Call) ([]byte, error)) *Rule {
	r.do = fn
	return r
}

// Run records the call and answers it with the first matching rule. A context that has
// already ended fails the call the way command.Exec would.
func (f *Fake) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	c := Call{Name: name, Args: slices.Clone(args)}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	var rule *Rule
	for _, r := range f.rules {
		if r.left != 0 && r.match(c) {
			if r.left > 0 {
				r.left--
			}
			rule = r
			break
		}
	}
	if rule == nil {
		f.unmatched = append(f.unmatched, c)
	}
	f.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return nil, &command.Error{Cmd: name, Args: c.Args, ExitCode: -1, Err: err}
	}
	if rule == nil {
		return nil, &command.Error{Cmd: name, Args: c.Args, ExitCode: 127,
			Stderr: "commandtest: no rule matches " + c.String(), Err: fmt.Errorf("exit status 127")}
	}
	return rule.do(ctx, c)
}

// Calls returns every call so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// CallsTo returns the calls of name whose arguments start with argsPrefix.
func (f *Fake) CallsTo(name string, argsPrefix ...string) []Call {
	var out []Call
	for _, c := range f.Calls() {
		if c.Name == name && len(c.Args) >= len(argsPrefix) && slices.Equal(c.Args[:len(argsPrefix)], argsPrefix) {
			out = append(out, c)
		}
	}
	return out
}

// Unmatched returns the calls no rule answered.
func (f *Fake) Unmatched() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.unmatched)
}

// Reset forgets the recorded calls; the rules stay.
func (f *Fake) Reset() {
	f.mu.Lock()
	f.calls, f.unmatched = nil, nil
	f.mu.Unlock()
}

var _ command.Runner = (*Fake)(nil)
