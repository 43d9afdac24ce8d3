// Package pooltest is the one contract suite every pool.Pool backend passes, against the real
// kernel (VM tier): every operation and its errors, records that survive a reopen, data that
// snapshots and clones really hold, idempotent retries, parallel calls, and a SIGKILL at every
// crash point a backend declares, after which the reopened pool holds every acknowledged
// change, nothing half-made, and passes an independent oracle (thin_check, lvs).
//
// A VM test package registers its backends and calls MaybeRunChild first thing in TestMain (the
// crash tests run operations in a child process: the test binary itself), then Run per backend.
package pooltest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// MiB is a mebibyte.
const MiB = 1 << 20

// Backend is a pool backend under test.
type Backend struct {
	// Name names the backend in test names and in the crash tests' child processes.
	Name string
	// New prepares fresh, empty pool devices for one test (removed when it ends) and returns
	// the configuration Open takes.
	New func(t testing.TB) string
	// Open opens the pool of a configuration New returned (formatting it on first use). It
	// is also called in crash tests' child processes, so it must depend on config only.
	Open func(ctx context.Context, config string) (pool.Pool, error)
	// Check verifies a closed pool with an independent oracle: its metadata is consistent and
	// it holds exactly the thin devices ids, nothing orphaned.
	Check func(ctx context.Context, t testing.TB, config string, ids []string)
	// CrashPoints are the backend's crash points per operation: create, snapshot, clone,
	// delete, expand, group.
	CrashPoints map[string][]string
	// GroupSnapshots: SnapshotGroup is supported (otherwise it must be ErrUnsupported).
	GroupSnapshots bool
}

// Run runs the contract suite against b.
func Run(t *testing.T, b Backend) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"RecordsSurviveReopen", testRecordsSurviveReopen},
		{"CreateOfATakenIDIsExistsWithTheVolume", testCreateExists},
		{"SnapshotsHoldThePastAndClonesAreWritable", testSnapshotsAndClones},
		{"CloneMayGrowButNeverShrink", testCloneSizes},
		{"SnapshotOfAMissingOriginIsNotFound", testMissingOrigin},
		{"DeleteRefusesAnOpenDeviceAndIsNotFoundTwice", testDelete},
		{"SnapshotOutlivesItsOrigin", testSnapshotOutlivesOrigin},
		{"ResizeGrowsAndNeverShrinks", testResize},
		{"SetHostsIsDurable", testSetHosts},
		{"UsageCountsWrittenData", testUsage},
		{"ParallelCreatesOfDifferentIDs", testParallelCreates},
		{"GroupSnapshotIsOneInstant", testGroupSnapshot},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t, b)) })
	}
	t.Run("Crash", func(t *testing.T) { runCrashes(t, b) })
}

// harness is one fresh pool.
type harness struct {
	t      *testing.T
	b      Backend
	config string
	p      pool.Pool
}

func newHarness(t *testing.T, b Backend) *harness {
	h := &harness{t: t, b: b, config: b.New(t)}
	h.open()
	t.Cleanup(func() {
		if h.p != nil {
			_ = h.p.Close()
		}
	})
	return h
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	h.t.Cleanup(cancel)
	return ctx
}

func (h *harness) open() {
	h.t.Helper()
	p, err := h.b.Open(h.ctx(), h.config)
	if err != nil {
		h.t.Fatalf("Open: %v", err)
	}
	h.p = p
}

// reopen closes the pool and opens it again, as a restarted agent would.
func (h *harness) reopen() {
	h.t.Helper()
	if err := h.p.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.p = nil
	h.open()
}

// check closes the pool, runs the backend's oracle and reopens the pool.
func (h *harness) check(ids ...string) {
	h.t.Helper()
	if err := h.p.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.p = nil
	if h.b.Check != nil {
		h.b.Check(h.ctx(), h.t, h.config, ids)
	}
	h.open()
}

// Record builds a full record for id: every field set, so round trips are checked.
func Record(id string, size int64) pool.Record {
	return pool.Record{
		ID:              id,
		SizeBytes:       size,
		Name:            "pvc-" + id,
		UUID:            newUUID(),
		CreatedUnixNano: time.Date(2026, 12, 3, 4, 5, 6, 7, time.UTC).UnixNano(),
		Labels:          map[string]string{"csi.storage.k8s.io/pvc/name": "data-" + id, "team": "dev"},
	}
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (h *harness) create(rec pool.Record) pool.Volume {
	h.t.Helper()
	v, err := h.p.Create(h.ctx(), rec)
	if err != nil {
		h.t.Fatalf("Create(%s): %v", rec.ID, err)
	}
	return v
}

func (h *harness) snapshot(origin string, rec pool.Record, readOnly bool) pool.Volume {
	h.t.Helper()
	v, err := h.p.Snapshot(h.ctx(), origin, rec, readOnly)
	if err != nil {
		h.t.Fatalf("Snapshot(%s of %s): %v", rec.ID, origin, err)
	}
	return v
}

func (h *harness) activate(id string) string {
	h.t.Helper()
	v, err := h.p.Activate(h.ctx(), id)
	if err != nil {
		h.t.Fatalf("Activate(%s): %v", id, err)
	}
	if v.Path == "" {
		h.t.Fatalf("Activate(%s) returned no device path", id)
	}
	return v.Path
}

func (h *harness) get(id string) pool.Volume {
	h.t.Helper()
	v, err := h.p.Get(h.ctx(), id)
	if err != nil {
		h.t.Fatalf("Get(%s): %v", id, err)
	}
	return v
}

// sameRecord fails unless got holds want's record.
func sameRecord(t testing.TB, got pool.Volume, want pool.Record) {
	t.Helper()
	g := got.Record
	if g.ID != want.ID || g.SizeBytes != want.SizeBytes || g.Name != want.Name || g.UUID != want.UUID ||
		g.Source != want.Source || g.CreatedUnixNano != want.CreatedUnixNano ||
		len(g.Labels) != len(want.Labels) || !sameSet(g.Transports, want.Transports) ||
		!sameSet(g.Hosts, want.Hosts) {
		t.Fatalf("record\n got %+v\nwant %+v", g, want)
	}
	for k, v := range want.Labels {
		if g.Labels[k] != v {
			t.Fatalf("label %s = %q, want %q", k, g.Labels[k], v)
		}
	}
}

// sameSet compares two slices as sets: backends need not keep the order of hosts and
// transports.
func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}
