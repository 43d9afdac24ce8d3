//go:build vm

package dmthin

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func ctx(t testing.TB) context.Context { return vmenv.Context(t, 5*time.Minute) }

// env is a pool's two loop devices and its options.
type env struct {
	opts dmthin.Options
}

// newEnv makes the devices of a pool called dmt-<name>: a metadata device of metaMiB, a data
// device of dataMiB. Every dm device of the pool is removed when the test ends (before the
// loop devices are detached).
func newEnv(t testing.TB, name string, metaMiB, dataMiB int64) *env {
	t.Helper()
	meta, data := vmenv.DMThinDevices(t, "dmt-"+name, fmt.Sprintf("%dM", metaMiB), fmt.Sprintf("%dM", dataMiB))
	return &env{opts: dmthin.Options{
		MetadataDevice: meta,
		DataDevice:     data,
		Name:           "dmt-" + name,
		NodeDir:        filepath.Join(t.TempDir(), "dev"),
	}}
}

// open opens the pool (closed when the test ends unless the test closed or shut it down).
func (e *env) open(t testing.TB) *dmthin.Pool {
	t.Helper()
	p, err := dmthin.Open(ctx(t), e.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// shutdown deactivates the pool and checks it with thin_check and thin_ls.
func (e *env) shutdown(t testing.TB, p *dmthin.Pool) {
	t.Helper()
	vmenv.ShutdownAndCheckThin(ctx(t), t, p, e.opts)
}

// record is a volume record for tests.
func record(id string, sizeMiB int64) pool.Record {
	return pool.Record{ID: id, SizeBytes: sizeMiB * mib, Name: "name-" + id, UUID: uuidOf(id),
		Labels: map[string]string{"test": "yes"}, CreatedUnixNano: 1700000000000000000}
}

func uuidOf(id string) string {
	h := fmt.Sprintf("%032x", []byte(id))[:32]
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func mustCreate(t testing.TB, p *dmthin.Pool, id string, sizeMiB int64) pool.Volume {
	t.Helper()
	v, err := p.Create(ctx(t), record(id, sizeMiB))
	if err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	return v
}

func mustActivate(t testing.TB, p *dmthin.Pool, id string) string {
	t.Helper()
	v, err := p.Activate(ctx(t), id)
	if err != nil {
		t.Fatalf("Activate %s: %v", id, err)
	}
	if v.Path == "" {
		t.Fatalf("Activate %s: no path", id)
	}
	return v.Path
}

// noSuspended fails the test if a device of the pool is suspended or has an inactive table.
func noSuspended(t testing.TB, name string) {
	t.Helper()
	for _, info := range vmenv.DMDevices(t, name+"-") {
		if info.Suspended || info.InactiveTable || !info.LiveTable {
			t.Errorf("device %s: suspended %v, inactive table %v, live table %v", info.Name, info.Suspended, info.InactiveTable, info.LiveTable)
		}
	}
}

// activeThins lists the pool's active thin devices (names without the pool prefix).
func activeThins(t testing.TB, name string) []string {
	t.Helper()
	var out []string
	for _, info := range vmenv.DMDevices(t, name+"-") {
		rest := strings.TrimPrefix(info.Name, name+"-")
		if !strings.HasPrefix(rest, "pool") {
			out = append(out, rest)
		}
	}
	return out
}
