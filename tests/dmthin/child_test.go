//go:build vm

package dmthin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/crashpoint"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

const childEnv = "NVMEOF_DMTHIN_CHILD"

// job is one operation a child process does on a pool.
type job struct {
	MetadataDevice, DataDevice, Name, NodeDir string

	Op      string // create, snapshot, clone, group, delete, expand
	ID      string
	Origin  string
	IDs     []string // group
	Origins []string // group
	SizeMiB int64
}

// maybeRunChild runs the job of a child process started by runChild, and exits.
func maybeRunChild() {
	s := os.Getenv(childEnv)
	if s == "" {
		return
	}
	var j job
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := dmthin.Open(ctx, dmthin.Options{MetadataDevice: j.MetadataDevice, DataDevice: j.DataDevice, Name: j.Name, NodeDir: j.NodeDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if err := j.run(ctx, p); err != nil {
		fmt.Fprintln(os.Stderr, j.Op, err)
		os.Exit(3)
	}
	os.Exit(0) // no Close: the process ends as it is
}

func (j job) run(ctx context.Context, p *dmthin.Pool) error {
	switch j.Op {
	case "create":
		_, err := p.Create(ctx, record(j.ID, j.SizeMiB))
		return err
	case "snapshot", "clone":
		_, err := p.Snapshot(ctx, j.Origin, record(j.ID, j.SizeMiB), j.Op == "snapshot")
		return err
	case "group":
		var specs []pool.SnapshotSpec
		for i, id := range j.IDs {
			specs = append(specs, pool.SnapshotSpec{Origin: j.Origins[i], Record: record(id, j.SizeMiB)})
		}
		_, err := p.SnapshotGroup(ctx, specs)
		return err
	case "delete":
		return p.Delete(ctx, j.ID)
	case "expand":
		_, err := p.Resize(ctx, j.ID, j.SizeMiB*mib)
		return err
	}
	return fmt.Errorf("unknown op %q", j.Op)
}

// runChild runs j in a child process armed to die at point, and reports whether it was
// killed (SIGKILL) rather than finishing.
func (e *env) runChild(t testing.TB, j job, point string) (killed bool) {
	t.Helper()
	j.MetadataDevice, j.DataDevice, j.Name, j.NodeDir = e.opts.MetadataDevice, e.opts.DataDevice, e.opts.Name, e.opts.NodeDir
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), childEnv+"="+string(b), crashpoint.Env+"="+point)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return false
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	t.Fatalf("child %s at %s: %v\n%s", j.Op, point, err, out)
	return false
}
