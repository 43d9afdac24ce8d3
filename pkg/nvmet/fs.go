package nvmet

import (
	"io/fs"
	"os"
	"syscall"
)

// FS is the file system surface Target needs from configfs. Paths are absolute. Errors are
// *fs.PathError values wrapping a syscall.Errno, as the os package returns them, so callers
// can test for ENOENT, EBUSY and friends with errors.Is.
//
// OSFS is the real implementation; package nvmettest provides an in-memory fake with configfs
// semantics for tests.
type FS interface {
	// Mkdir creates a directory (a configfs object with its attributes and default groups).
	Mkdir(path string) error
	// Rmdir removes an (empty) directory.
	Rmdir(path string) error
	// Symlink creates link pointing at target.
	Symlink(target, link string) error
	// Unlink removes a symbolic link.
	Unlink(link string) error
	// Readlink returns the target of a symbolic link as stored (configfs stores it relative).
	Readlink(link string) (string, error)
	// ReadFile returns the content of an attribute.
	ReadFile(path string) ([]byte, error)
	// WriteFile stores data in an existing attribute in a single write; it never creates a file.
	WriteFile(path string, data []byte) error
	// ReadDir returns the names in a directory, sorted.
	ReadDir(path string) ([]string, error)
	// Lstat returns the type bits of path (fs.ModeDir, fs.ModeSymlink or 0), not following links.
	Lstat(path string) (fs.FileMode, error)
}

// OSFS implements FS with the os package, for the real configfs.
type OSFS struct{}

var _ FS = OSFS{}

// Mkdir implements FS.
func (OSFS) Mkdir(path string) error { return os.Mkdir(path, 0o755) }

// Rmdir implements FS with rmdir(2), so the error is the directory's and not unlink's.
func (OSFS) Rmdir(path string) error {
	if err := syscall.Rmdir(path); err != nil {
		return &fs.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

// Symlink implements FS.
func (OSFS) Symlink(target, link string) error { return os.Symlink(target, link) }

// Unlink implements FS with unlink(2).
func (OSFS) Unlink(link string) error {
	if err := syscall.Unlink(link); err != nil {
		return &fs.PathError{Op: "unlink", Path: link, Err: err}
	}
	return nil
}

// Readlink implements FS.
func (OSFS) Readlink(link string) (string, error) { return os.Readlink(link) }

// ReadFile implements FS.
func (OSFS) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// WriteFile implements FS: the file is opened without O_CREAT or O_TRUNC and written once,
// because configfs hands each write(2) to the attribute's store method.
func (OSFS) WriteFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// ReadDir implements FS.
func (OSFS) ReadDir(path string) ([]string, error) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// Lstat implements FS.
func (OSFS) Lstat(path string) (fs.FileMode, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Type(), nil
}
