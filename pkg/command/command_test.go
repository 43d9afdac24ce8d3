package command

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestExecReturnsStdoutOnly(t *testing.T) {
	out, err := Exec{}.Run(context.Background(), "sh", "-c", "echo out; echo err >&2")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "out\n" {
		t.Errorf("stdout = %q, want %q", out, "out\n")
	}
}

func TestExecSetsCLocaleAndExtraEnv(t *testing.T) {
	out, err := Exec{Env: []string{"EXTRA=1", "LC_ALL=POSIX"}}.Run(context.Background(),
		"sh", "-c", `printf '%s %s' "$LC_ALL" "$EXTRA"`)
	if err != nil {
		t.Fatal(err)
	}
	// Env comes after LC_ALL=C, so a caller can still override it deliberately.
	if string(out) != "POSIX 1" {
		t.Errorf("env seen by the child = %q", out)
	}
	out, err = Exec{}.Run(context.Background(), "sh", "-c", `printf '%s' "$LC_ALL"`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "C" {
		t.Errorf("LC_ALL = %q, want C", out)
	}
}

func TestExecFailureIsAnError(t *testing.T) {
	out, err := Exec{}.Run(context.Background(), "sh", "-c", "echo partial; echo '  first\n\n  second  ' >&2; exit 3")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %#v, want *Error", err)
	}
	if cerr.ExitCode != 3 {
		t.Errorf("ExitCode = %d, want 3", cerr.ExitCode)
	}
	if !strings.Contains(cerr.Stderr, "first") {
		t.Errorf("Stderr = %q", cerr.Stderr)
	}
	if string(out) != "partial\n" {
		t.Errorf("stdout on failure = %q", out)
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Errorf("does not unwrap to *exec.ExitError: %v", err)
	}
	want := `sh -c "echo partial; echo '  first\n\n  second  ' >&2; exit 3": exit 3: first; second`
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
}

func TestExecMissingProgram(t *testing.T) {
	_, err := Exec{}.Run(context.Background(), "nvmeof-csi-no-such-program")
	var cerr *Error
	if !errors.As(err, &cerr) || cerr.ExitCode != -1 {
		t.Fatalf("err = %#v, want *Error with ExitCode -1", err)
	}
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("does not unwrap to exec.ErrNotFound: %v", err)
	}
}

func TestExecStopsAtDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Exec{WaitDelay: time.Second}.Run(ctx, "sleep", "30")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to stop", d)
	}
}

func TestExecKillsWhatIgnoresSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Exec{WaitDelay: 300 * time.Millisecond}.Run(ctx, "sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to stop", d)
	}
}

func TestExecCapsStderr(t *testing.T) {
	_, err := Exec{}.Run(context.Background(), "sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x >&2; exit 1")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatal(err)
	}
	if len(cerr.Stderr) != maxStderr {
		t.Errorf("len(Stderr) = %d, want %d", len(cerr.Stderr), maxStderr)
	}
}

func TestErrorWithoutExit(t *testing.T) {
	e := &Error{Cmd: "lvm", Args: []string{"lvs", ""}, ExitCode: -1, Err: context.Canceled}
	if got, want := e.Error(), `lvm lvs "": context canceled`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, context.Canceled) {
		t.Error("does not unwrap")
	}
}

func TestStreamHandsOverTheOutputAndDrainsTheRest(t *testing.T) {
	var first string
	err := Exec{}.Stream(context.Background(), func(r io.Reader) error {
		line, err := bufio.NewReader(r).ReadString('\n')
		first = line
		return err
	}, "sh", "-c", "echo one; echo two; echo LC_ALL=$LC_ALL")
	if err != nil || first != "one\n" {
		t.Fatalf("Stream = %v, first line %q", err, first)
	}
}

func TestStreamStopsTheProgramWhenReadGivesUp(t *testing.T) {
	stop := errors.New("enough")
	start := time.Now()
	err := Exec{WaitDelay: time.Second}.Stream(context.Background(), func(r io.Reader) error {
		_, _ = io.ReadFull(r, make([]byte, 4096))
		return stop
	}, "sh", "-c", "yes")
	if !errors.Is(err, stop) {
		t.Fatalf("Stream = %v, want read's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping took %v", d)
	}
}

func TestStreamReportsAFailedProgram(t *testing.T) {
	err := Exec{}.Stream(context.Background(), func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}, "sh", "-c", "echo half; echo 'no space' >&2; exit 3")
	var cerr *Error
	if !errors.As(err, &cerr) || cerr.ExitCode != 3 || cerr.Stderr != "no space\n" {
		t.Fatalf("Stream = %#v", err)
	}
	// The program succeeded but read found its output wrong: what it said comes along.
	bad := errors.New("truncated document")
	err = Exec{}.Stream(context.Background(), func(r io.Reader) error {
		_, _ = io.Copy(io.Discard, r)
		return bad
	}, "sh", "-c", "echo 'metadata changed under me' >&2")
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), "metadata changed under me") {
		t.Fatalf("Stream = %v", err)
	}
}

func TestStreamStopsAtDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := Exec{}.Stream(ctx, func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}, "sleep", "60")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stream = %v, want DeadlineExceeded", err)
	}
}
