//go:build vm

package nvme

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

func TestIdentityIsCreatedOnceAndPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "nvme")
	id, err := nvme.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"hostnqn": id.HostNQN + "\n", "hostid": id.HostID + "\n"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", name, fi.Mode().Perm())
		}
		if raw, _ := os.ReadFile(filepath.Join(dir, name)); string(raw) != want {
			t.Errorf("%s = %q, want %q", name, raw, want)
		}
	}
	again, err := nvme.LoadOrCreateIdentity(dir)
	if err != nil || again != id {
		t.Errorf("reload = %+v, %v; want %+v", again, err, id)
	}
	if err := nvme.ValidNQN(id.HostNQN); err != nil {
		t.Error(err)
	}
}
