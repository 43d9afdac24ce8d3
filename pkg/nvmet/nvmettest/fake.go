// Package nvmettest provides FS, an in-memory stand-in for the kernel's nvmet configfs tree,
// and CheckSemantics, which exercises the configfs behaviour package nvmet relies on against
// any nvmet.FS. The unit tests run CheckSemantics on the fake and the VM tests on the real
// kernel, so the fake cannot drift from what the kernel does unnoticed.
package nvmettest

import (
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// FS is an in-memory nvmet configfs tree. It models subsystems, namespaces, allowed hosts,
// ports with their subsystem links and ANA groups, and hosts, with the kernel's rules: mkdir
// creates attribute files and default directories, rmdir fails with ENOTEMPTY or EBUSY while
// children or links remain, device attributes are read-only (EBUSY) while a namespace is
// enabled, port addresses while a subsystem is linked (EACCES), enabling a namespace needs an
// existing device (see AddDevice), linking to a port checks its address (EINVAL, EADDRINUSE).
// Referrals and passthru are not modelled beyond their attribute files. It is safe for
// concurrent use.
type FS struct {
	mu        sync.Mutex
	root      string
	discovery *attr
	subsys    map[string]*subsys
	ports     map[string]*port
	hosts     map[string]attrs
	devices   map[string]bool
	serial    int
	mutations int
	hook      func(op, path string) error
}

var _ nvmet.FS = (*FS)(nil)

// New returns an empty tree at nvmet.DefaultRoot.
func New() *FS { return NewAt(nvmet.DefaultRoot) }

// NewAt returns an empty tree at root.
func NewAt(root string) *FS {
	return &FS{
		root:      filepath.Clean(root),
		discovery: value("nqn.2014-08.org.nvmexpress.discovery", nil),
		subsys:    map[string]*subsys{},
		ports:     map[string]*port{},
		hosts:     map[string]attrs{},
		devices:   map[string]bool{},
	}
}

// Root is the directory the tree lives at.
func (f *FS) Root() string { return f.root }

// AddDevice makes path an existing block device, so a namespace using it can be enabled.
func (f *FS) AddDevice(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[path] = true
}

// SetHook installs a function called with the operation ("mkdir", "rmdir", "symlink",
// "unlink", "readlink", "read", "write", "readdir", "lstat") and path before each operation,
// outside the FS's lock; a non-nil error is returned instead of performing it. Tests use it to
// inject failures or to block. nil removes the hook.
func (f *FS) SetHook(hook func(op, path string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// Mutations counts the operations that changed the tree: successful mkdir, rmdir, symlink,
// unlink and attribute writes.
func (f *FS) Mutations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mutations
}

// node is what a path resolves to.
type node struct {
	mode fs.FileMode // fs.ModeDir, fs.ModeSymlink or 0 for an attribute
	list []string    // directory entries
	attr *attr       // attribute
	link []string    // link target, relative to the root
}

func dir(names ...[]string) node {
	return node{mode: fs.ModeDir, list: slices.Concat(names...)}
}

// begin runs the hook, takes the lock and splits path into components below the root. On
// success the caller must unlock.
func (f *FS) begin(op, path string) ([]string, error) {
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		if err := hook(op, path); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	rel, err := filepath.Rel(f.root, filepath.Clean(path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || !filepath.IsAbs(path) {
		f.mu.Unlock()
		return nil, fail(op, path, syscall.ENOENT)
	}
	if rel == "." {
		return []string{}, nil
	}
	return strings.Split(rel, "/"), nil
}

func fail(op, path string, errno syscall.Errno) error {
	return &fs.PathError{Op: op, Path: path, Err: errno}
}

// lookup resolves components below the root.
func (f *FS) lookup(c []string) (node, bool) {
	if len(c) == 0 {
		return dir([]string{"discovery_nqn", "hosts", "ports", "subsystems"}), true
	}
	switch c[0] {
	case "discovery_nqn":
		return node{attr: f.discovery}, len(c) == 1
	case "subsystems":
		return f.lookupSubsys(c[1:])
	case "ports":
		return f.lookupPort(c[1:])
	case "hosts":
		if len(c) == 1 {
			return dir(slices.Collect(maps.Keys(f.hosts))), true
		}
		if h, ok := f.hosts[c[1]]; ok {
			return attrOrDir(h, c[2:])
		}
	}
	return node{}, false
}

func attrOrDir(a attrs, c []string) (node, bool) {
	switch len(c) {
	case 0:
		return dir(a.names()), true
	case 1:
		at, ok := a[c[0]]
		return node{attr: at}, ok
	}
	return node{}, false
}

func (f *FS) lookupSubsys(c []string) (node, bool) {
	if len(c) == 0 {
		return dir(slices.Collect(maps.Keys(f.subsys))), true
	}
	s, ok := f.subsys[c[0]]
	if !ok {
		return node{}, false
	}
	if len(c) == 1 {
		return dir(s.attrs.names(), []string{"allowed_hosts", "namespaces", "passthru"}), true
	}
	switch c[1] {
	case "namespaces":
		if len(c) == 2 {
			return dir(slices.Collect(maps.Keys(s.ns))), true
		}
		if n, ok := s.ns[c[2]]; ok {
			return attrOrDir(n.attrs, c[3:])
		}
		return node{}, false
	case "allowed_hosts":
		if len(c) == 2 {
			return dir(slices.Collect(maps.Keys(s.allowed))), true
		}
		if h, ok := s.allowed[c[2]]; ok && len(c) == 3 {
			return node{mode: fs.ModeSymlink, link: []string{"hosts", h}}, true
		}
		return node{}, false
	case "passthru":
		return attrOrDir(s.passthru, c[2:])
	}
	return attrOrDir(s.attrs, c[1:])
}

func (f *FS) lookupPort(c []string) (node, bool) {
	if len(c) == 0 {
		return dir(slices.Collect(maps.Keys(f.ports))), true
	}
	p, ok := f.ports[c[0]]
	if !ok {
		return node{}, false
	}
	if len(c) == 1 {
		return dir(p.attrs.names(), []string{"ana_groups", "referrals", "subsystems"}), true
	}
	switch c[1] {
	case "subsystems":
		if len(c) == 2 {
			return dir(slices.Collect(maps.Keys(p.links))), true
		}
		if s, ok := p.links[c[2]]; ok && len(c) == 3 {
			return node{mode: fs.ModeSymlink, link: []string{"subsystems", s}}, true
		}
		return node{}, false
	case "ana_groups":
		if len(c) == 2 {
			return dir(slices.Collect(maps.Keys(p.ana))), true
		}
		g, ok := p.ana[c[2]]
		if !ok {
			return node{}, false
		}
		return attrOrDir(attrs{"ana_state": g}, c[3:])
	case "referrals":
		return dir(), len(c) == 2
	}
	return attrOrDir(p.attrs, c[1:])
}

// shape reports whether c matches pattern, where "*" matches any one component.
func shape(c []string, pattern ...string) bool {
	if len(c) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != c[i] {
			return false
		}
	}
	return true
}

func parseID(name string, bits int, min, max uint64) bool {
	n, err := strconv.ParseUint(name, 10, bits)
	return err == nil && n >= min && n <= max
}
