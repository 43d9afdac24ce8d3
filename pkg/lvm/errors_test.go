package lvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
)

// TestClassifyRealStderr runs the classifier over what lvm 2.03.16 printed in the test VM
// (testdata/stderr, captured with the exact commands this package runs).
func TestClassifyRealStderr(t *testing.T) {
	want := map[string]error{
		"lvcreate-exists":        nil, // existence is asked of lvs, not read from stderr
		"lvcreate-poolfull":      ErrNoSpace,
		"snapshot-poolfull":      ErrNoSpace,
		"lvcreate-thick-nospace": ErrNoSpace,
		"lvextend-shrink":        ErrShrink,
		"lvremove-inuse":         ErrInUse,
		"lvchange-an-inuse":      ErrInUse,
		"lvextend-missing":       nil,
		"lvchange-missing":       nil,
		"lvremove-missing":       nil,
		"snapshot-missing":       nil,
		"dmname-long":            nil,
		"fullname-127":           nil,
	}
	files, err := filepath.Glob("testdata/stderr/*.txt")
	if err != nil || len(files) != len(want) {
		t.Fatalf("testdata/stderr has %d files (%v), want %d", len(files), err, len(want))
	}
	sentinels := []error{ErrNotFound, ErrExists, ErrNoSpace, ErrShrink, ErrInUse}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: no expectation", name)
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in := &command.Error{Cmd: "lvm", ExitCode: 5, Stderr: string(raw), Err: errors.New("exit status 5")}
		got := classify(in)
		if !errors.Is(got, in) {
			t.Errorf("%s: classify lost the original error: %v", name, got)
		}
		for _, s := range sentinels {
			if errors.Is(got, s) != (s == w) {
				t.Errorf("%s: classify = %v; want sentinel %v", name, got, w)
			}
		}
	}
}

func TestClassifyLeavesOtherErrorsAlone(t *testing.T) {
	for _, in := range []error{
		nil,
		errors.New("plain"),
		&command.Error{Cmd: "lvm", ExitCode: -1, Stderr: "insufficient free space", Err: context.Canceled},
	} {
		if got := classify(in); got != in {
			t.Errorf("classify(%v) = %v", in, got)
		}
	}
}
