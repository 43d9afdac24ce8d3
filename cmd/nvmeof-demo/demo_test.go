package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
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

func TestFlagsTakeABackend(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil || o.backend != backendDMThin {
		t.Fatalf("default backend %q, %v; want %s", o.backend, err, backendDMThin)
	}
	if o, err := parseFlags([]string{"--backend", "lvm"}); err != nil || o.backend != backendLVM {
		t.Errorf("--backend lvm: %q, %v", o.backend, err)
	}
	if _, err := parseFlags([]string{"--backend", "zfs"}); err == nil {
		t.Error("--backend zfs accepted")
	}
}

// TestStageLogReadsTheNodesLines logs as the node does, through klog set up as the demo sets
// it up, and expects the stage log to have the phases of that volume, whole lines only.
func TestStageLogReadsTheNodesLines(t *testing.T) {
	e := &env{dir: t.TempDir()}
	e.logPath = filepath.Join(e.dir, "demo.log")
	if err := e.logToFile(); err != nil {
		t.Fatal(err)
	}
	defer klog.SetOutput(io.Discard)
	log := klog.Background().WithName("nvmeof-csi").WithValues("method", "/csi.v1.Node/NodeStageVolume", "volumeID", "demo-storage/vol-1", "subsysNQN", "nqn.x:vol-1")
	log.Info("Staged filesystem volume", "device", "/dev/nvme1n1", "fsType", "ext4", "formatted", false,
		"stagingPath", "/a b/globalmount", "took", stringer("connect=95ms probe=40ms mount=1.31s resize=120ms"))
	log.Info("Staged filesystem volume", "volumeID", "other", "took", stringer("connect=oops"))
	klog.Background().Info("Volume already staged", "volumeID", "demo-storage/vol-2")
	klog.Flush()
	want := []phase{{"connect", 95 * time.Millisecond}, {"probe", 40 * time.Millisecond}, {"mount", 1310 * time.Millisecond}, {"resize", 120 * time.Millisecond}}
	if got := e.stages.phases("demo-storage/vol-1"); !slices.Equal(got, want) {
		raw, _ := os.ReadFile(e.logPath)
		t.Fatalf("phases %v, want %v; the log:\n%s", got, want, raw)
	}
	if got := e.stages.phases("other"); got != nil {
		t.Errorf("a malformed took: %v", got)
	}
	if got := e.stages.phases("demo-storage/vol-2"); got != nil {
		t.Errorf("a line that is no stage result: %v", got)
	}

	s := newStageLog()
	line := `I0101 00:00:00.000000 1 stage.go:1] "Staged block volume" volumeID="v\"3" took="connect=1s"` + "\n"
	for _, part := range []string{line[:20], line[20:60], line[60:]} {
		if _, err := s.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.phases(`v"3`); !slices.Equal(got, []phase{{"connect", time.Second}}) {
		t.Errorf("a line written in parts: %v", got)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestPoolSizing(t *testing.T) {
	for data, want := range map[int64]int64{
		40 << 30:                256 << 20, // the minimum
		1 << 40:                 4 << 30,   // 1/256
		8 << 40:                 16 << 30,  // the most the kernel uses, and a little
		(100 << 30) + (1 << 20): 401 << 20, // whole MiB, rounded up
	} {
		if got := metadataSize(data); got != want {
			t.Errorf("metadataSize(%s) = %s, want %s", human(data), human(got), human(want))
		}
	}
	for _, args := range [][]string{nil, {"--clones", "64"}, {"--clones", "4", "--volume-size", "2Gi"}, {"--pool-size", "1Ti"}} {
		o, err := parseFlags(args)
		if err != nil {
			t.Fatal(err)
		}
		limit := overcommitRatio(o) * float64(o.poolSize)
		if need := float64(provisioned(o)); limit < need || overcommitRatio(o) < 10 {
			t.Errorf("%q: overcommit %g allows %s, the demo provisions %s", args, overcommitRatio(o), human(int64(limit)), human(int64(need)))
		}
	}
}

func TestBreakdownRows(t *testing.T) {
	env := func(name string, create, stage, total time.Duration, phases ...phase) *devEnv {
		return &devEnv{name: name, v: &pv{took: callTimes{create: create, attach: 10 * time.Millisecond, stage: stage, publish: time.Millisecond}},
			took: total, stage: phases}
	}
	ph := func(connect, mount time.Duration) []phase {
		return []phase{{"connect", connect}, {"probe", time.Millisecond}, {"mount", mount}, {"resize", 2 * time.Millisecond}}
	}
	one := env("dev-00", 5*time.Millisecond, 500*time.Millisecond, time.Second, ph(100*time.Millisecond, 300*time.Millisecond)...)
	many := []*devEnv{
		env("dev-01", 7*time.Millisecond, 900*time.Millisecond, 2*time.Second, ph(400*time.Millisecond, 300*time.Millisecond)...),
		env("dev-02", 3*time.Millisecond, 700*time.Millisecond, 3*time.Second, ph(200*time.Millisecond, 300*time.Millisecond)...),
		env("dev-03", 9*time.Millisecond, 800*time.Millisecond, 1*time.Second, ph(300*time.Millisecond, 300*time.Millisecond)...),
	}
	rows := map[string]breakdownRow{}
	var order []string
	for _, r := range breakdownRows(one, many) {
		rows[strings.TrimSpace(r.what)] = r
		order = append(order, strings.TrimSpace(r.what))
	}
	if len(order) != 10 || order[0] != "CreateVolume (clone of the snapshot)" || order[9] != "CreateVolume to mounted" {
		t.Fatalf("rows %q", order)
	}
	for what, want := range map[string][3]time.Duration{
		"CreateVolume (clone of the snapshot)":     {5 * time.Millisecond, 7 * time.Millisecond, 9 * time.Millisecond},
		"connect (every portal, namespace device)": {100 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond},
		"rest (RPC, locks, stash)":                 {97 * time.Millisecond, 197 * time.Millisecond, 197 * time.Millisecond},
		"CreateVolume to mounted":                  {time.Second, 2 * time.Second, 3 * time.Second},
	} {
		r := rows[what]
		if got := [3]time.Duration{r.one, r.median, r.slowest}; got != want || !r.known {
			t.Errorf("%s: one, median, slowest %v (known %v); want %v", what, got, r.known, want)
		}
	}

	// A node that logs no phases: the calls are still there, the phases not.
	bare := env("dev-00", time.Millisecond, time.Second, time.Second)
	rows2 := breakdownRows(bare, []*devEnv{bare})
	for _, r := range rows2 {
		if strings.HasPrefix(r.what, "  ") {
			t.Errorf("phase row %q without phases", r.what)
		}
	}
	if len(rows2) != 5 {
		t.Errorf("%d rows without phases, want the 5 calls and the total", len(rows2))
	}
}

func TestMedianAndGoals(t *testing.T) {
	if got := median([]time.Duration{1, 2, 3}); got != 2 {
		t.Errorf("median of 3: %v", got)
	}
	if got := median([]time.Duration{1, 2, 3, 4}); got != 2 {
		t.Errorf("median of 4: %v, want the lower middle", got)
	}
	if median(nil) != 0 || ratio(time.Second, 0) != 0 || ratio(3*time.Second, 2*time.Second) != 1.5 {
		t.Error("median(nil), ratio")
	}
	if goal(2, 2) != "met" || goal(2.01, 2) != "not met" {
		t.Error("goal")
	}
	s := sizeResult{size: 64 << 30, samples: []time.Duration{3 * time.Second, time.Second, 2 * time.Second}}
	if s.p50() != 2*time.Second || sizeName(64<<30) != "64g" || sizeName(1<<30) != "1g" {
		t.Errorf("p50 %v, names %q %q", s.p50(), sizeName(64<<30), sizeName(1<<30))
	}
	h := hold{freeze: 5 * time.Millisecond, work: 80 * time.Millisecond, thaw: 2 * time.Millisecond}
	if h.total() != 87*time.Millisecond || h.String() != "0.09s (freeze 5 ms, then 80 ms, thaw 2 ms)" {
		t.Errorf("hold %v: %s", h.total(), h)
	}
}

func TestUnionMergesOverlappingAndTouchingRanges(t *testing.T) {
	got := union([]byteRange{{0, 10}, {40, 10}}, []byteRange{{5, 10}, {15, 5}, {60, 1}})
	want := []byteRange{{0, 20}, {40, 10}, {60, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("union = %v, want %v", got, want)
	}
}

func TestDataExtentsOfASparseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 4096), 8<<20); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	got, err := dataExtents(path, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].off > 8<<20 || got[0].off+got[0].n < 8<<20+4096 {
		t.Fatalf("data extents %v, want one covering the 4 KiB at 8 MiB", got)
	}
}
