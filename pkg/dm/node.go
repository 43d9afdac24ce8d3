package dm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// NodeDir is where device nodes conventionally live: /dev/mapper/<name>.
const NodeDir = "/dev/mapper"

// EnsureNode makes dir/name a block device node for dev (mode 0600, owned by the caller) and
// returns its path. A node (or a symlink to one, as udev makes) that already names dev is
// kept; anything else at that path that is not a directory is replaced, atomically (a new
// node renamed over it). dir is created if missing. The name must be a valid device name.
func EnsureNode(dir, name string, dev uint64) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("dm: %w", err)
	}
	path := filepath.Join(dir, name)
	return path, ensureNode(path, unix.S_IFBLK, dev)
}

// RemoveNode removes dir/name; a missing one is not an error.
func RemoveNode(dir, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dm: %w", err)
	}
	return nil
}

// ensureNode makes path a node of type kind (unix.S_IFBLK or S_IFCHR) for dev, unless it
// already is one (following symlinks).
func ensureNode(path string, kind uint32, dev uint64) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil && st.Mode&unix.S_IFMT == kind && st.Rdev == dev {
		return nil
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("dm: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+hex.EncodeToString(suffix[:]))
	if err := unix.Mknod(tmp, kind|0o600, int(dev)); err != nil {
		return fmt.Errorf("dm: mknod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp) // best effort: the rename error is the one to report
		return fmt.Errorf("dm: %w", err)
	}
	return nil
}
