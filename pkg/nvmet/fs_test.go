package nvmet_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// OSFS on a plain directory; on configfs it is exercised by the VM tests (tests/nvmet).
func TestOSFS(t *testing.T) {
	var o nvmet.OSFS
	dir := t.TempDir()
	sub, link, file := filepath.Join(dir, "sub"), filepath.Join(dir, "link"), filepath.Join(dir, "sub", "attr")
	must(t, o.Mkdir(sub))
	if err := o.WriteFile(file, []byte("x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile created a file: %v", err)
	}
	must(t, o.Symlink(sub, link))
	if dest, err := o.Readlink(link); err != nil || dest != sub {
		t.Errorf("Readlink = %q, %v", dest, err)
	}
	for path, want := range map[string]fs.FileMode{sub: fs.ModeDir, link: fs.ModeSymlink} {
		if mode, err := o.Lstat(path); err != nil || mode != want {
			t.Errorf("Lstat(%s) = %v, %v", path, mode, err)
		}
	}
	if names, err := o.ReadDir(dir); err != nil || !slices.Equal(names, []string{"link", "sub"}) {
		t.Errorf("ReadDir = %v, %v", names, err)
	}
	if err := o.Rmdir(link); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Rmdir of a link: %v, want ENOTDIR", err)
	}
	must(t, o.Unlink(link))
	if err := o.Unlink(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Unlink twice: %v", err)
	}
	must(t, o.Rmdir(sub))
	if _, err := o.ReadFile(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile: %v", err)
	}
}
