//go:build vm

package dmthin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// TestCrashPoints kills a child process at every crash point of every operation (the
// operation's origins or targets active and holding data), then opens the pool in the test
// process, which re-attaches to the devices the child left and recovers: nothing
// acknowledged is lost, nothing unacknowledged is half there, no device is left suspended,
// and after a Shutdown thin_check finds the thin metadata clean and thin_ls lists exactly
// the thin ids the records hold.
func TestCrashPoints(t *testing.T) {
	ops := []string{"create", "snapshot", "clone", "group", "delete", "expand"}
	if got := slices.Sorted(mapsKeys(dmthin.CrashPoints)); !slices.Equal(got, slices.Sorted(slices.Values(ops))) {
		t.Fatalf("CrashPoints has operations %v", got)
	}
	for _, op := range ops {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t, "crash-"+op, 32, 1024)
			p := e.open(t)
			e.shutdown(t, p)
			for n, point := range dmthin.CrashPoints[op] {
				start := time.Now()
				crashAt(t, e, op, point, n)
				t.Logf("%-28s recovered and checked in %s", point, timing.Since(start))
			}
		})
	}
}

func mapsKeys(m map[string][]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// crashAt runs op in a child killed at point, recovers and checks.
func crashAt(t *testing.T, e *env, op, point string, n int) {
	t.Helper()
	p := e.open(t)
	id := fmt.Sprintf("new-%d", n)
	data := blocktest.Pattern(uint64(n), mib)
	j := job{Op: op, ID: id, SizeMiB: 64}
	var origins []string
	switch op {
	case "snapshot", "clone":
		origins = []string{fmt.Sprintf("origin-%d", n)}
		j.Origin = origins[0]
	case "group":
		for k := range 3 {
			origins = append(origins, fmt.Sprintf("origin-%d-%d", n, k))
			j.IDs = append(j.IDs, fmt.Sprintf("new-%d-%d", n, k))
		}
		j.Origins = origins
	case "delete", "expand":
		origins = []string{id}
		if op == "expand" {
			j.SizeMiB = 96
		}
	}
	for _, o := range origins {
		mustCreate(t, p, o, 64)
		blocktest.Write(t, mustActivate(t, p, o), 0, data)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !e.runChild(t, j, point) {
		t.Fatalf("the child finished without reaching %s", point)
	}

	p = e.open(t)
	noSuspended(t, e.opts.Name)
	acked := strings.HasSuffix(point, "/after-settle")
	switch op {
	case "create":
		expectPresent(t, p, id, acked)
	case "snapshot", "clone":
		if expectPresent(t, p, id, acked) {
			blocktest.Expect(t, mustActivate(t, p, id), 0, data, "snapshot after a crash at "+point)
		}
	case "group":
		for _, gid := range j.IDs {
			if expectPresent(t, p, gid, acked) {
				blocktest.Expect(t, mustActivate(t, p, gid), 0, data, "group snapshot after a crash at "+point)
			}
		}
	case "delete":
		expectPresent(t, p, id, point == "delete/after-deactivate")
	case "expand":
		// The intent is written before every point: the expansion is completed.
		v, err := p.Get(ctx(t), id)
		if err != nil || v.SizeBytes != 96*mib {
			t.Errorf("after a crash at %s: %+v, %v; want the volume grown to 96 MiB", point, v, err)
		} else if v.Path != "" && blocktest.Size(t, v.Path) != 96*mib {
			t.Errorf("after a crash at %s the active device has %d bytes", point, blocktest.Size(t, v.Path))
		}
	}
	// Every active thin device has a record, and is listed with its path.
	list, err := p.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var withPath []string
	for _, v := range list {
		if v.Path != "" {
			withPath = append(withPath, v.ID)
		}
	}
	if got := activeThins(t, e.opts.Name); !slices.Equal(got, withPath) {
		t.Errorf("after a crash at %s: active thin devices %v, active volumes %v", point, got, withPath)
	}
	// The pool still works.
	probe := fmt.Sprintf("probe-%d", n)
	mustCreate(t, p, probe, 8)
	if err := p.Delete(ctx(t), probe); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t, p)
}

// expectPresent checks that id exists (or not) and reports whether it does.
func expectPresent(t *testing.T, p *dmthin.Pool, id string, want bool) bool {
	t.Helper()
	_, err := p.Get(ctx(t), id)
	switch {
	case err == nil && !want:
		t.Errorf("%s exists, though its operation was not acknowledged", id)
	case errors.Is(err, pool.ErrNotFound) && want:
		t.Errorf("%s is gone, though its operation was acknowledged", id)
	case err != nil && !errors.Is(err, pool.ErrNotFound):
		t.Errorf("Get %s: %v", id, err)
	}
	return err == nil
}
