package nvmettest

import (
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Mkdir implements nvmet.FS.
func (f *FS) Mkdir(path string) error {
	c, err := f.begin("mkdir", path)
	if err != nil {
		return err
	}
	defer f.mu.Unlock()
	if len(c) == 0 {
		return fail("mkdir", path, syscall.EEXIST)
	}
	parent, name := c[:len(c)-1], c[len(c)-1]
	pn, ok := f.lookup(parent)
	if !ok {
		return fail("mkdir", path, syscall.ENOENT)
	}
	if _, ok := f.lookup(c); ok {
		return fail("mkdir", path, syscall.EEXIST)
	}
	if pn.mode != fs.ModeDir {
		return fail("mkdir", path, syscall.ENOTDIR)
	}
	var errno syscall.Errno
	switch {
	case shape(parent, "subsystems"):
		if name == "nqn.2014-08.org.nvmexpress.discovery" || name == f.discovery.get() {
			errno = syscall.EINVAL
		} else {
			f.subsys[name] = f.newSubsys()
		}
	case shape(parent, "subsystems", "*", "namespaces"):
		if parseID(name, 32, 1, 0xfffffffe) {
			f.subsys[parent[1]].ns[name] = f.newNamespace()
		} else {
			errno = syscall.EINVAL
		}
	case shape(parent, "ports"):
		if parseID(name, 16, 0, 0xffff) {
			f.ports[name] = newPort()
		} else {
			errno = syscall.EINVAL
		}
	case shape(parent, "ports", "*", "ana_groups"):
		if parseID(name, 32, 2, 128) {
			f.ports[parent[1]].ana[name] = anaState("inaccessible")
		} else {
			errno = syscall.EINVAL
		}
	case shape(parent, "hosts"):
		f.hosts[name] = newHost()
	default:
		errno = syscall.EPERM
	}
	if errno != 0 {
		return fail("mkdir", path, errno)
	}
	f.mutations++
	return nil
}

// Rmdir implements nvmet.FS.
func (f *FS) Rmdir(path string) error {
	c, err := f.begin("rmdir", path)
	if err != nil {
		return err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	if !ok {
		return fail("rmdir", path, syscall.ENOENT)
	}
	if n.mode != fs.ModeDir {
		return fail("rmdir", path, syscall.ENOTDIR)
	}
	var errno syscall.Errno
	switch {
	case shape(c, "subsystems", "*"):
		s := f.subsys[c[1]]
		switch {
		case f.subsysLinked(c[1]):
			errno = syscall.EBUSY
		case len(s.ns) > 0 || len(s.allowed) > 0:
			errno = syscall.ENOTEMPTY
		default:
			delete(f.subsys, c[1])
		}
	case shape(c, "subsystems", "*", "namespaces", "*"):
		delete(f.subsys[c[1]].ns, c[3])
	case shape(c, "ports", "*"):
		if p := f.ports[c[1]]; len(p.links) > 0 || len(p.ana) > 1 {
			errno = syscall.ENOTEMPTY
		} else {
			delete(f.ports, c[1])
		}
	case shape(c, "ports", "*", "ana_groups", "*") && c[3] != "1":
		delete(f.ports[c[1]].ana, c[3])
	case shape(c, "hosts", "*"):
		if f.hostLinked(c[1]) {
			errno = syscall.EBUSY
		} else {
			delete(f.hosts, c[1])
		}
	default:
		errno = syscall.EPERM
	}
	if errno != 0 {
		return fail("rmdir", path, errno)
	}
	f.mutations++
	return nil
}

func (f *FS) subsysLinked(name string) bool {
	for _, p := range f.ports {
		for _, s := range p.links {
			if s == name {
				return true
			}
		}
	}
	return false
}

func (f *FS) hostLinked(name string) bool {
	for _, s := range f.subsys {
		for _, h := range s.allowed {
			if h == name {
				return true
			}
		}
	}
	return false
}

// Symlink implements nvmet.FS.
func (f *FS) Symlink(target, link string) error {
	c, err := f.begin("symlink", link)
	if err != nil {
		return err
	}
	defer f.mu.Unlock()
	if len(c) == 0 {
		return fail("symlink", link, syscall.EEXIST)
	}
	parent, name := c[:len(c)-1], c[len(c)-1]
	if _, ok := f.lookup(parent); !ok {
		return fail("symlink", link, syscall.ENOENT)
	}
	if _, ok := f.lookup(c); ok {
		return fail("symlink", link, syscall.EEXIST)
	}
	allowed := shape(parent, "subsystems", "*", "allowed_hosts")
	portLink := shape(parent, "ports", "*", "subsystems")
	if !allowed && !portLink {
		return fail("symlink", link, syscall.EPERM)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	rel, err := filepath.Rel(f.root, target)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fail("symlink", link, syscall.EPERM)
	}
	tc := strings.Split(rel, "/")
	if _, ok := f.lookup(tc); !ok {
		return fail("symlink", link, syscall.ENOENT)
	}
	var errno syscall.Errno
	if allowed {
		s := f.subsys[parent[1]]
		switch {
		case !shape(tc, "hosts", "*") || s.allowAny:
			errno = syscall.EINVAL
		case slices.Contains(valuesOf(s.allowed), tc[1]):
			errno = syscall.EEXIST
		default:
			s.allowed[name] = tc[1]
		}
	} else {
		p := f.ports[parent[1]]
		switch {
		case !shape(tc, "subsystems", "*"):
			errno = syscall.EINVAL
		case slices.Contains(valuesOf(p.links), tc[1]):
			errno = syscall.EEXIST
		case !p.enabled():
			if err := f.enable(p); err != nil {
				errno = err.(syscall.Errno)
				break
			}
			fallthrough
		default:
			p.links[name] = tc[1]
		}
	}
	if errno != 0 {
		return fail("symlink", link, errno)
	}
	f.mutations++
	return nil
}

func valuesOf(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Unlink implements nvmet.FS.
func (f *FS) Unlink(link string) error {
	c, err := f.begin("unlink", link)
	if err != nil {
		return err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	switch {
	case !ok:
		return fail("unlink", link, syscall.ENOENT)
	case n.mode == fs.ModeDir:
		return fail("unlink", link, syscall.EISDIR)
	case n.mode != fs.ModeSymlink:
		return fail("unlink", link, syscall.EPERM)
	}
	if c[0] == "subsystems" {
		delete(f.subsys[c[1]].allowed, c[3])
	} else {
		delete(f.ports[c[1]].links, c[3])
	}
	f.mutations++
	return nil
}

// Readlink implements nvmet.FS. Like configfs, it answers with a path relative to the link's
// directory that climbs to the configfs mount (the root's parent) and descends from there.
func (f *FS) Readlink(link string) (string, error) {
	c, err := f.begin("readlink", link)
	if err != nil {
		return "", err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	if !ok {
		return "", fail("readlink", link, syscall.ENOENT)
	}
	if n.mode != fs.ModeSymlink {
		return "", fail("readlink", link, syscall.EINVAL)
	}
	up := strings.Repeat("../", len(c)) // from the link's directory up to the root's parent
	return up + filepath.Join(append([]string{filepath.Base(f.root)}, n.link...)...), nil
}

// ReadFile implements nvmet.FS.
func (f *FS) ReadFile(path string) ([]byte, error) {
	c, err := f.begin("read", path)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	switch {
	case !ok:
		return nil, fail("open", path, syscall.ENOENT)
	case n.mode != 0:
		return nil, fail("read", path, syscall.EISDIR)
	case n.attr.get == nil:
		return nil, fail("open", path, syscall.EACCES)
	}
	return []byte(n.attr.get() + "\n"), nil
}

// WriteFile implements nvmet.FS. Like configfs attributes, a trailing newline is ignored.
func (f *FS) WriteFile(path string, data []byte) error {
	c, err := f.begin("write", path)
	if err != nil {
		return err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	switch {
	case !ok:
		return fail("open", path, syscall.ENOENT)
	case n.mode != 0:
		return fail("open", path, syscall.EISDIR)
	case n.attr.set == nil:
		return fail("open", path, syscall.EACCES)
	}
	if err := n.attr.set(strings.TrimSuffix(string(data), "\n")); err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	f.mutations++
	return nil
}

// ReadDir implements nvmet.FS.
func (f *FS) ReadDir(path string) ([]string, error) {
	c, err := f.begin("readdir", path)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	switch {
	case !ok:
		return nil, fail("open", path, syscall.ENOENT)
	case n.mode != fs.ModeDir:
		return nil, fail("readdirent", path, syscall.ENOTDIR)
	}
	names := slices.Clone(n.list)
	slices.Sort(names)
	return names, nil
}

// Lstat implements nvmet.FS.
func (f *FS) Lstat(path string) (fs.FileMode, error) {
	c, err := f.begin("lstat", path)
	if err != nil {
		return 0, err
	}
	defer f.mu.Unlock()
	n, ok := f.lookup(c)
	if !ok {
		return 0, fail("lstat", path, syscall.ENOENT)
	}
	return n.mode, nil
}
