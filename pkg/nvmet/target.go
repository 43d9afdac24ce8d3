package nvmet

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
)

// DefaultRoot is where nvmet's configfs tree appears when configfs is mounted at the usual place.
const DefaultRoot = "/sys/kernel/config/nvmet"

// Target manages the subsystems with NQNs under Prefix, and the ports it is told about, in the
// kernel NVMe target. See the package documentation for the ownership, concurrency and
// idempotency contract. Use a *Target; the zero values of the unexported fields are ready.
type Target struct {
	// Root is nvmet's configfs directory; empty means DefaultRoot.
	Root string
	// Prefix selects our subsystems: exactly those whose NQN starts with it, e.g.
	// "nqn.2026-11.io.nvmeof-csi:". It must start with "nqn." and should end with a separator so
	// that it is not a prefix of another owner's names. Required.
	Prefix string
	// FS performs the file system operations; nil means OSFS.
	FS FS

	// hostMu serializes creating host objects with linking them, and unlinking with collecting
	// them, so that a collection never removes a host another call is about to link.
	hostMu sync.Mutex
	// portMu is held exclusively while a port's address is changed or the port removed, and
	// shared while subsystems are linked or unlinked.
	portMu sync.RWMutex
}

func (t *Target) fs() FS {
	if t.FS == nil {
		return OSFS{}
	}
	return t.FS
}

func (t *Target) path(elem ...string) string {
	root := t.Root
	if root == "" {
		root = DefaultRoot
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// checkPrefix refuses a Prefix that could make foreign subsystems look like ours.
func (t *Target) checkPrefix() error {
	if !strings.HasPrefix(t.Prefix, "nqn.") {
		return fmt.Errorf("nvmet: %w: Target.Prefix %q does not start with \"nqn.\"", ErrInvalid, t.Prefix)
	}
	return nil
}

// ours reports whether nqn names one of our subsystems.
func (t *Target) ours(nqn string) bool {
	return t.checkPrefix() == nil && strings.HasPrefix(nqn, t.Prefix) && ValidateNQN(nqn) == nil
}

// own checks that nqn is a valid NQN under our prefix.
func (t *Target) own(nqn string) error {
	if err := t.checkPrefix(); err != nil {
		return err
	}
	if err := ValidateNQN(nqn); err != nil {
		return fmt.Errorf("nvmet: %w", err)
	}
	if !strings.HasPrefix(nqn, t.Prefix) {
		return fmt.Errorf("nvmet: subsystem %s is outside prefix %q: %w", nqn, t.Prefix, ErrForeign)
	}
	return nil
}

func (t *Target) subsysPath(nqn string, elem ...string) string {
	return t.path(append([]string{"subsystems", nqn}, elem...)...)
}

// read returns an attribute without the newline configfs appends.
func (t *Target) read(path string) (string, error) {
	b, err := t.fs().ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

func (t *Target) write(path, value string) error {
	return t.fs().WriteFile(path, []byte(value+"\n"))
}

// ensureAttr writes want unless the attribute already reads as want (after trimming spaces).
func (t *Target) ensureAttr(path, want string) error {
	have, err := t.read(path)
	if err != nil {
		return err
	}
	if strings.TrimRight(have, " ") == want {
		return nil
	}
	return t.write(path, want)
}

func (t *Target) exists(path string) (bool, error) {
	_, err := t.fs().Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// mkdir creates a configfs object unless it exists (looking first, so that a repeat only reads).
func (t *Target) mkdir(path string) error {
	if ok, err := t.exists(path); err != nil || ok {
		return err
	}
	err := t.fs().Mkdir(path)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// rmdir removes a configfs object unless it is already gone.
func (t *Target) rmdir(path string) error {
	err := t.fs().Rmdir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// unlink removes a link unless it is already gone.
func (t *Target) unlink(path string) error {
	err := t.fs().Unlink(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// readDir lists a directory; a missing one is empty.
func (t *Target) readDir(path string) ([]string, error) {
	names, err := t.fs().ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

// linkTarget resolves a configfs link to the name of the object it points at, checking that the
// object lives in the directory want (e.g. Root/hosts).
func (t *Target) linkTarget(link, want string) (string, bool) {
	dest, err := t.fs().Readlink(link)
	if err != nil {
		return "", false
	}
	if !filepath.IsAbs(dest) {
		dest = filepath.Join(filepath.Dir(link), dest)
	}
	dest = filepath.Clean(dest)
	return filepath.Base(dest), filepath.Dir(dest) == filepath.Clean(want)
}
