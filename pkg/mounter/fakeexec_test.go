package mounter

import (
	"context"
	"slices"
	"strings"
	"sync"

	utilexec "k8s.io/utils/exec"
)

// fakeExec records every command and answers with respond, which may block.
type fakeExec struct {
	mu      sync.Mutex
	calls   []*fakeCmd
	respond func(c *fakeCmd) ([]byte, error)
}

func (f *fakeExec) Command(name string, args ...string) utilexec.Cmd {
	return f.CommandContext(context.Background(), name, args...)
}

func (f *fakeExec) CommandContext(ctx context.Context, name string, args ...string) utilexec.Cmd {
	c := &fakeCmd{f: f, ctx: ctx, name: name, args: args}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	return c
}

func (f *fakeExec) LookPath(file string) (string, error) { return "/usr/bin/" + file, nil }

// commands returns the command lines run so far ("mount -o bind a b").
func (f *fakeExec) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.line())
	}
	return out
}

// fakeCmd implements the parts of utilexec.Cmd that mount-utils and this package use; the
// embedded nil interface panics on anything else.
type fakeCmd struct {
	utilexec.Cmd
	f    *fakeExec
	ctx  context.Context
	name string
	args []string
	env  []string
}

func (c *fakeCmd) line() string { return strings.Join(append([]string{c.name}, c.args...), " ") }

func (c *fakeCmd) SetEnv(env []string) { c.env = slices.Clone(env) }

func (c *fakeCmd) CombinedOutput() ([]byte, error) {
	if c.f.respond == nil {
		return nil, nil
	}
	return c.f.respond(c)
}

func (c *fakeCmd) Output() ([]byte, error) { return c.CombinedOutput() }

func (c *fakeCmd) Run() error {
	_, err := c.CombinedOutput()
	return err
}
