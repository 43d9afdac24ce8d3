package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestByteSizeParsesBinarySuffixes(t *testing.T) {
	for in, want := range map[string]int64{"8Gi": 8 << 30, "256Mi": 256 << 20, "512Ki": 512 << 10, "1Ti": 1 << 40, "4096": 4096} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, bad := range []string{"", "8G", "8GB", "-1Mi", "0", "1.5Gi", "Mi"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if got := human(8 << 30); got != "8 GiB" {
		t.Errorf("human(8 GiB) = %q", got)
	}
	if got := human(3 << 19); got != "1.5 MiB" {
		t.Errorf("human(1.5 MiB) = %q", got)
	}
}

func TestFlagsRejectSizesThatDoNotFit(t *testing.T) {
	if _, err := parseFlags(nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, args := range [][]string{
		{"--dataset-size", "5Gi"}, // more than half the volume
		{"--pool-size", "10Gi"},   // no room for production and its copy
		{"--clones", "0"}, {"--transport", "fc"}, {"extra"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestPlanAddsUpToTheDatasetSize(t *testing.T) {
	for _, total := range []int64{16 << 20, 256 << 20, 1 << 30} {
		specs := plan(total)
		var sum int64
		paths := map[string]bool{}
		users := 0
		for _, s := range specs {
			sum += s.size
			if paths[s.path] {
				t.Errorf("%d: duplicate path %s", total, s.path)
			}
			paths[s.path] = true
			if s.path == usersFile {
				users++
			}
		}
		if users != 1 {
			t.Errorf("%d: %d users tables", total, users)
		}
		if sum < total*9/10 || sum > total*11/10 {
			t.Errorf("plan(%d) adds up to %d", total, sum)
		}
	}
}

// TestDatasetRoundTripAndScrub writes a dataset, verifies it, scrubs the users table and
// expects exactly that file to differ; the generator is deterministic.
func TestDatasetRoundTripAndScrub(t *testing.T) {
	root := t.TempDir()
	specs := plan(16 << 20)
	var total int64
	for _, s := range specs {
		total += s.size
	}
	p := newReporter(&strings.Builder{}).progress("written", total, 4, nil)
	sums, err := writeDataset(context.Background(), root, specs, p)
	if err != nil {
		t.Fatal(err)
	}
	if bad, err := verify(root, sums); err != nil || len(bad) > 0 {
		t.Fatalf("verify after write: %v, %v", bad, err)
	}
	manifest, err := os.ReadFile(filepath.Join(root, manifestFile))
	if err != nil || strings.Count(string(manifest), "\n") != len(sums) {
		t.Fatalf("manifest: %d lines for %d files, %v", strings.Count(string(manifest), "\n"), len(sums), err)
	}
	again, err := generate(t.TempDir(), specs[3], false)
	if err != nil || again != sums[3] {
		t.Errorf("generate is not deterministic: %+v vs %+v (%v)", again, sums[3], err)
	}

	users := specs[slices.IndexFunc(specs, func(s fileSpec) bool { return s.path == usersFile })]
	if _, err := generate(root, users, true); err != nil {
		t.Fatal(err)
	}
	bad, err := verify(root, sums)
	if err != nil || !slices.Equal(bad, []string{usersFile}) {
		t.Fatalf("after the scrub: %v, %v; want only %s", bad, err, usersFile)
	}
	raw, _ := os.ReadFile(filepath.Join(root, usersFile))
	if strings.Contains(string(raw), "@corp.example") || int64(len(raw)) != users.size {
		t.Errorf("scrubbed users table: %d bytes, personal data left: %v", len(raw), strings.Contains(string(raw), "@corp.example"))
	}
}

func TestParallelStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	failAt3 := func(ran *atomic.Int32) func(i int) error {
		return func(i int) error {
			ran.Add(1)
			if i == 3 {
				return boom
			}
			return nil
		}
	}
	// One worker: exactly the items up to the failing one run, nothing after it.
	var ran atomic.Int32
	if err := parallel(context.Background(), 100, 1, failAt3(&ran)); !errors.Is(err, boom) || ran.Load() != 4 {
		t.Fatalf("one worker: err %v after %d calls, want boom after 4", err, ran.Load())
	}
	// Several workers: the first error is what comes back (how many other items ran before
	// the cancellation was seen depends on the scheduler).
	ran.Store(0)
	if err := parallel(context.Background(), 100, 2, failAt3(&ran)); !errors.Is(err, boom) {
		t.Fatalf("two workers: err %v, want boom", err)
	}
	if err := parallel(context.Background(), 5, 3, func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestCallRetriesLikeTheSidecars: transient codes are retried until they clear, other
// failures twice (with a warning each), and errors about the request itself never.
func TestCallRetriesLikeTheSidecars(t *testing.T) {
	for _, tc := range []struct {
		code      codes.Code
		failures  int
		wantCalls int
		wantOK    bool
		warnings  int
	}{
		{codes.Aborted, 5, 6, true, 0},
		{codes.Unavailable, 3, 4, true, 0},
		{codes.Internal, 2, 3, true, 2},
		{codes.Internal, 5, 3, false, 2},
		{codes.InvalidArgument, 1, 1, false, 0},
		{codes.FailedPrecondition, 1, 1, false, 0},
	} {
		calls, warnings := 0, 0
		_, err := call(context.Background(), func(string) { warnings++ }, "Op", func(context.Context) (int, error) {
			calls++
			if calls <= tc.failures {
				return 0, status.Error(tc.code, "no")
			}
			return 1, nil
		})
		if calls != tc.wantCalls || (err == nil) != tc.wantOK || warnings != tc.warnings {
			t.Errorf("%s ×%d: %d calls, %d warnings, err %v; want %d calls, %d warnings, ok=%v",
				tc.code, tc.failures, calls, warnings, err, tc.wantCalls, tc.warnings, tc.wantOK)
		}
	}
}
