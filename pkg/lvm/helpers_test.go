package lvm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command/commandtest"
)

// testdata reads a captured lvm report or stderr sample.
func testdata(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// devices records the paths a Pool waited for.
type devices struct {
	mu    sync.Mutex
	paths []string
	err   error
}

func (d *devices) wait(_ context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paths = append(d.paths, path)
	return d.err
}

func (d *devices) waited() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.paths)
}

// newPool returns the pool of the captured samples (nvmeof/pool) on a fake runner.
func newPool() (*Pool, *commandtest.Fake, *devices) {
	f := commandtest.New()
	d := &devices{}
	return &Pool{VG: "nvmeof", ThinPool: "pool", Runner: f, WaitForDevice: d.wait}, f, d
}

// onSelect answers lvs calls selecting name with the sample report file.
func onSelect(f *commandtest.Fake, name, file string, t *testing.T) *commandtest.Rule {
	sel := `lv_name="` + name + `"`
	out := testdata(t, file)
	return f.OnFunc(func(c commandtest.Call) bool {
		return len(c.Args) > 0 && c.Args[0] == "lvs" && c.HasArgs("--select", sel)
	}).Return(out)
}

// lvsArgs is what every lv report of the pool runs, before its selection.
var lvsArgs = []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", lvFields}
