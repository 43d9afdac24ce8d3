package commandtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
)

func TestFirstMatchingRuleAnswers(t *testing.T) {
	f := New()
	f.On("lvm", "lvs", "vg/a").Return("a")
	f.On("lvm", "lvs").Return("any")
	f.On("lvm").Return("lvm")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"lvs", "vg/a"}, "a"},
		{[]string{"lvs", "vg/b"}, "any"},
		{[]string{"lvs"}, "any"},
		{[]string{"vgs"}, "lvm"},
		{nil, "lvm"},
	}
	for _, tt := range tests {
		out, err := f.Run(context.Background(), "lvm", tt.args...)
		if err != nil || string(out) != tt.want {
			t.Errorf("Run(lvm %v) = %q, %v; want %q", tt.args, out, err, tt.want)
		}
	}
}

func TestTimesLimitsARule(t *testing.T) {
	f := New()
	f.On("lvm", "lvs").Times(2).Return("first")
	f.On("lvm", "lvs").Return("later")
	var got []string
	for range 4 {
		out, _ := f.Run(context.Background(), "lvm", "lvs")
		got = append(got, string(out))
	}
	if fmt.Sprint(got) != "[first first later later]" {
		t.Errorf("answers = %v", got)
	}
}

func TestFailLooksLikeExec(t *testing.T) {
	f := New()
	f.On("lvm", "lvcreate").Fail(5, "  already exists\n")
	_, err := f.Run(context.Background(), "lvm", "lvcreate", "-n", "x")
	var cerr *command.Error
	if !errors.As(err, &cerr) || cerr.ExitCode != 5 || cerr.Stderr != "  already exists\n" {
		t.Fatalf("err = %#v", err)
	}
	if got, want := err.Error(), "lvm lvcreate -n x: exit 5: already exists"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestOnFuncAndDo(t *testing.T) {
	f := New()
	f.OnFunc(func(c Call) bool { return c.HasArgs("--addtag", "t") }).
		Do(func(_ context.Context, c Call) ([]byte, error) { return []byte(c.Args[0]), nil })
	out, err := f.Run(context.Background(), "lvm", "lvchange", "--addtag", "t", "vg/x")
	if err != nil || string(out) != "lvchange" {
		t.Errorf("Run = %q, %v", out, err)
	}
}

func TestUnmatchedCallsFailAndAreRecorded(t *testing.T) {
	f := New()
	_, err := f.Run(context.Background(), "lvm", "vgs")
	var cerr *command.Error
	if !errors.As(err, &cerr) || cerr.ExitCode != 127 {
		t.Fatalf("err = %v", err)
	}
	if u := f.Unmatched(); len(u) != 1 || u[0].String() != "lvm vgs" {
		t.Errorf("Unmatched() = %v", u)
	}
}

func TestEndedContextFails(t *testing.T) {
	f := New()
	f.On("lvm").Return("x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Run(ctx, "lvm"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestCallsAreRecordedConcurrently(t *testing.T) {
	f := New()
	f.On("lvm", "lvcreate").Return("")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { _, _ = f.Run(context.Background(), "lvm", "lvcreate", fmt.Sprint(i)) })
	}
	wg.Wait()
	if n := len(f.CallsTo("lvm", "lvcreate")); n != 50 {
		t.Errorf("recorded %d calls, want 50", n)
	}
	f.Reset()
	if n := len(f.Calls()); n != 0 {
		t.Errorf("after Reset: %d calls", n)
	}
}

func TestHasArgs(t *testing.T) {
	c := Call{Name: "lvm", Args: []string{"lvcreate", "--name", "v", "vg"}}
	for _, tt := range []struct {
		want []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--name", "v"}, true},
		{[]string{"vg"}, true},
		{[]string{"--name", "vg"}, false},
		{[]string{"vg", "x"}, false},
	} {
		if got := c.HasArgs(tt.want...); got != tt.ok {
			t.Errorf("HasArgs(%q) = %v, want %v", tt.want, got, tt.ok)
		}
	}
}
