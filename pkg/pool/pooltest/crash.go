package pooltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/crashpoint"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// childEnv carries a crash test's operation to the child process.
const childEnv = "NVMEOF_POOLTEST_CHILD"

// childOp is one operation a child runs (and is killed in).
type childOp struct {
	Backend string `json:"backend"`
	Config  string `json:"config"`
	Op      string `json:"op"`
}

// The fixture every crash test starts from: an active volume with data, one more volume, and
// the IDs the operations create.
var (
	crashOrigin  = volID(1) // active, 64 MiB, block 'O' at 0
	crashOther   = volID(2) // active, 64 MiB, block 'P' at 0
	crashNew     = volID(3) // create, clone
	crashSnap    = snapID(4)
	crashSnap2   = snapID(5)
	crashSizeNew = int64(128 * MiB)
)

// MaybeRunChild runs a crash test's operation and exits, when this process is such a child;
// otherwise it returns. Call it first in TestMain, with every backend the package runs.
func MaybeRunChild(backends ...Backend) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return
	}
	var op childOp
	if err := json.Unmarshal([]byte(raw), &op); err != nil {
		fmt.Fprintln(os.Stderr, "pooltest child:", err)
		os.Exit(2)
	}
	i := slices.IndexFunc(backends, func(b Backend) bool { return b.Name == op.Backend })
	if i < 0 {
		fmt.Fprintln(os.Stderr, "pooltest child: unknown backend", op.Backend)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := backends[i].Open(ctx, op.Config)
	if err == nil {
		err = runOp(ctx, p, op.Op)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pooltest child:", err)
		os.Exit(1)
	}
	os.Exit(0) // the crash point was never reached: the parent fails the test
}

// runOp is the operation under test.
func runOp(ctx context.Context, p pool.Pool, op string) error {
	var err error
	switch op {
	case "create":
		_, err = p.Create(ctx, crashRecord(crashNew, 64*MiB, ""))
	case "snapshot":
		_, err = p.Snapshot(ctx, crashOrigin, crashRecord(crashSnap, 64*MiB, crashOrigin), true)
	case "clone":
		_, err = p.Snapshot(ctx, crashOrigin, crashRecord(crashNew, crashSizeNew, crashOrigin), false)
	case "delete":
		err = p.Delete(ctx, crashOther)
	case "expand":
		_, err = p.Resize(ctx, crashOrigin, crashSizeNew)
	case "group":
		_, err = p.SnapshotGroup(ctx, []pool.SnapshotSpec{
			{Origin: crashOrigin, Record: crashRecord(crashSnap, 64*MiB, crashOrigin)},
			{Origin: crashOther, Record: crashRecord(crashSnap2, 64*MiB, crashOther)},
		})
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	return err
}

// crashRecord is a deterministic record, so parent and child agree on it.
func crashRecord(id string, size int64, source string) pool.Record {
	return pool.Record{ID: id, SizeBytes: size, Name: "name-" + id, UUID: "0f0e0d0c-0b0a-4908-8706-050403020100",
		Source: source, Labels: map[string]string{"k": "v"}}
}

// runCrashes kills a child at every crash point of every operation and checks the reopened
// pool.
func runCrashes(t *testing.T, b Backend) {
	ops := make([]string, 0, len(b.CrashPoints))
	for op := range b.CrashPoints {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	if len(ops) == 0 {
		t.Logf("backend %s declares no crash points (every operation is one atomic step)", b.Name)
	}
	for _, op := range ops {
		for _, point := range b.CrashPoints[op] {
			t.Run(point, func(t *testing.T) { crashAt(t, b, op, point) })
		}
	}
}

func crashAt(t *testing.T, b Backend, op, point string) {
	h := newHarness(t, b)
	h.create(crashRecord(crashOrigin, 64*MiB, ""))
	writeBlock(t, h.activate(crashOrigin), 0, 'O')
	h.create(crashRecord(crashOther, 64*MiB, ""))
	writeBlock(t, h.activate(crashOther), 0, 'P')
	if err := h.p.Close(); err != nil {
		t.Fatal(err)
	}
	h.p = nil

	raw, _ := json.Marshal(childOp{Backend: b.Name, Config: h.config, Op: op})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw), crashpoint.Env+"="+point)
	out, err := cmd.CombinedOutput()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child running %s was not killed at %s (%v): a declared crash point the operation never reaches proves nothing\n%s", op, point, err, out)
	}

	// A restarted agent: reopen, then everything is either done or absent, and the retry
	// completes it.
	h.open()
	checkAfterCrash(t, h, op)
	retryOK := func(err error) bool {
		return err == nil || errors.Is(err, pool.ErrExists) || (op == "delete" && errors.Is(err, pool.ErrNotFound))
	}
	if err := runOp(h.ctx(), h.p, op); !retryOK(err) {
		t.Fatalf("retrying %s after the crash: %v", op, err)
	}
	want := []string{crashOrigin, crashOther}
	switch op {
	case "create", "clone":
		want = append(want, crashNew)
	case "snapshot":
		want = append(want, crashSnap)
	case "delete":
		want = []string{crashOrigin}
	case "group":
		want = append(want, crashSnap, crashSnap2)
	}
	checkAfterCrash(t, h, op)
	for _, id := range want {
		h.get(id)
	}
	h.check(want...)
	wantBlock(t, h.activate(crashOrigin), 0, 'O', "the origin's data after the crash")
}

// checkAfterCrash asserts all-or-nothing for the interrupted operation.
func checkAfterCrash(t *testing.T, h *harness, op string) {
	t.Helper()
	exists := func(id string) bool {
		_, err := h.p.Get(h.ctx(), id)
		if err != nil && !errors.Is(err, pool.ErrNotFound) {
			t.Fatalf("Get(%s): %v", id, err)
		}
		return err == nil
	}
	whole := func(id string, size int64, source string) {
		if exists(id) {
			sameRecord(t, h.get(id), crashRecord(id, size, source))
		}
	}
	switch op {
	case "create":
		whole(crashNew, 64*MiB, "")
	case "snapshot":
		whole(crashSnap, 64*MiB, crashOrigin)
		if exists(crashSnap) {
			wantBlock(t, h.activate(crashSnap), 0, 'O', "snapshot made before the crash")
		}
	case "clone":
		whole(crashNew, crashSizeNew, crashOrigin)
		if exists(crashNew) {
			dev := h.activate(crashNew)
			wantBlock(t, dev, 0, 'O', "clone made before the crash")
			if got := blocktest.Size(t, dev); got != crashSizeNew {
				t.Fatalf("clone's device is %d bytes after the crash, want %d", got, crashSizeNew)
			}
		}
	case "delete":
		whole(crashOther, 64*MiB, "")
	case "expand":
		v := h.get(crashOrigin)
		if v.SizeBytes != 64*MiB && v.SizeBytes != crashSizeNew {
			t.Fatalf("size after a crash during expand: %d, want the old or the new size", v.SizeBytes)
		}
		if got := blocktest.Size(t, h.activate(crashOrigin)); got != v.SizeBytes {
			t.Fatalf("device is %d bytes, its record says %d", got, v.SizeBytes)
		}
	case "group":
		if exists(crashSnap) != exists(crashSnap2) {
			t.Fatal("a crash during a group snapshot left some members and not others")
		}
		whole(crashSnap, 64*MiB, crashOrigin)
		whole(crashSnap2, 64*MiB, crashOther)
	}
}
