package nvme

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadTree builds the fake sysfs tree described by testdata/<name>.tree (format in
// testdata/multipath.tree) in a fresh temporary directory and returns its root.
func loadTree(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".tree"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := t.TempDir()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := addEntry(root, line); err != nil {
			t.Fatalf("%s.tree:%d: %v", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return root
}

// addEntry creates one tree entry ("dir/", "file = value" or "link -> target") under root.
func addEntry(root, line string) error {
	var path string
	create := func(p string) error { return os.MkdirAll(p, 0o755) }
	if p, target, ok := strings.Cut(line, " -> "); ok {
		path = p
		create = func(p string) error { return os.Symlink(target, p) }
	} else if p, ok := strings.CutSuffix(line, " ="); ok {
		path = p
		create = func(p string) error { return os.WriteFile(p, nil, 0o644) }
	} else if p, value, ok := strings.Cut(line, " = "); ok {
		path = p
		create = func(p string) error { return os.WriteFile(p, []byte(value+"\n"), 0o644) }
	} else {
		path = strings.TrimSuffix(line, "/")
	}
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return create(full)
}

func TestLoadTreeReproducesTheKernelLayout(t *testing.T) {
	root := loadTree(t, "multipath")
	// Relative symlinks resolve inside the tree as they do in /sys.
	got, err := os.ReadFile(filepath.Join(root, "class/block/nvme0n1/device/nvme1/subsysnqn"))
	if err != nil || strings.TrimSpace(string(got)) != "nqn.2024-01.io.example:vol1" {
		t.Fatalf("class/block/nvme0n1/device/nvme1/subsysnqn = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "class/nvme/nvme0/delete_controller")); err != nil || fi.Size() != 0 {
		t.Fatalf("delete_controller: %v, %v", fi, err)
	}
}
