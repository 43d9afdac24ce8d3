package nvmettest

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// Names and ports CheckSemantics works with; it removes them again.
const (
	semSubsys = "nqn.2014-08.io.nvmeof-csi.semantics:subsystem"
	semHost   = "nqn.2014-08.io.nvmeof-csi.semantics:host"
	semPort1  = "65001"
	semPort2  = "65002"
	semSvcID  = "4499"
)

// CheckSemantics exercises, on the nvmet configfs tree at root reached through fsys, every
// configfs behaviour package nvmet and the fake FS rely on, and returns all deviations found.
// device must be a block device nvmet can open; address an IP address of the machine, on which
// TCP port 4499 is free. It creates a subsystem, a host and ports 65001 and 65002 and removes
// them before returning.
func CheckSemantics(fsys nvmet.FS, root, device, address string) error {
	k := &checker{fsys: fsys, root: root}
	defer k.cleanup()
	k.subsystem()
	k.namespace(device)
	k.hosts()
	k.ports(address)
	k.removal()
	return errors.Join(k.errs...)
}

type checker struct {
	fsys nvmet.FS
	root string
	errs []error
}

func (k *checker) p(elem ...string) string {
	return filepath.Join(append([]string{k.root}, elem...)...)
}

func (k *checker) s(elem ...string) string {
	return k.p(append([]string{"subsystems", semSubsys}, elem...)...)
}

// expect records a deviation unless err is want (0: success).
func (k *checker) expect(what string, err error, want syscall.Errno) {
	switch {
	case want == 0 && err != nil:
		k.errs = append(k.errs, fmt.Errorf("%s: want success, got %w", what, err))
	case want != 0 && !errors.Is(err, want):
		k.errs = append(k.errs, fmt.Errorf("%s: want %s (%d), got %v", what, want.Error(), int(want), err))
	}
}

func (k *checker) write(path, v string, want syscall.Errno) {
	k.expect(fmt.Sprintf("write %q to %s", v, path), k.fsys.WriteFile(path, []byte(v+"\n")), want)
}

func (k *checker) read(path, want string) {
	b, err := k.fsys.ReadFile(path)
	if err != nil {
		k.errs = append(k.errs, fmt.Errorf("read %s: %w", path, err))
	} else if got := strings.TrimSuffix(string(b), "\n"); got != want {
		k.errs = append(k.errs, fmt.Errorf("read %s: want %q, got %q", path, want, got))
	}
}

func (k *checker) mkdir(path string, want syscall.Errno) {
	k.expect("mkdir "+path, k.fsys.Mkdir(path), want)
}

func (k *checker) rmdir(path string, want syscall.Errno) {
	k.expect("rmdir "+path, k.fsys.Rmdir(path), want)
}

func (k *checker) symlink(target, link string, want syscall.Errno) {
	k.expect("symlink "+link, k.fsys.Symlink(target, link), want)
}

func (k *checker) subsystem() {
	k.mkdir(k.s(), 0)
	k.mkdir(k.s(), syscall.EEXIST)
	names, err := k.fsys.ReadDir(k.s())
	k.expect("readdir "+k.s(), err, 0)
	for _, want := range []string{"allowed_hosts", "namespaces", "attr_allow_any_host", "attr_serial", "attr_model"} {
		if err == nil && !slices.Contains(names, want) {
			k.errs = append(k.errs, fmt.Errorf("mkdir %s did not create %s: %v", k.s(), want, names))
		}
	}
	k.read(k.s("attr_allow_any_host"), "0")
	k.read(k.s("attr_model"), "Linux")
	k.write(k.s("attr_serial"), strings.Repeat("x", 21), syscall.EINVAL)
	k.write(k.s("attr_serial"), "abc", 0)
	k.read(k.s("attr_serial"), fmt.Sprintf("%-20s", "abc"))
	k.write(k.s("attr_model"), "", syscall.EINVAL)
	k.mkdir(k.s("namespaces", "0"), syscall.EINVAL)
	k.mkdir(k.s("allowed_hosts", "x"), syscall.EPERM)
	k.mkdir(k.p("nvmeof-csi-semantics"), syscall.EPERM)
	k.mkdir(k.p("subsystems", "nqn.2014-08.org.nvmexpress.discovery"), syscall.EINVAL)
	k.rmdir(k.s("namespaces"), syscall.EPERM)
}

func (k *checker) namespace(device string) {
	ns := func(a string) string { return k.s("namespaces", "1", a) }
	k.mkdir(k.s("namespaces", "1"), 0)
	k.read(ns("device_path"), "(null)")
	k.read(ns("enable"), "0")
	k.read(ns("ana_grpid"), "1")
	k.read(ns("device_nguid"), "00000000-0000-0000-0000-000000000000")
	k.write(ns("enable"), "1", syscall.EINVAL)
	k.write(ns("device_path"), "/dev/nvmeof-csi-semantics-missing", 0)
	k.write(ns("enable"), "1", syscall.ENOENT)
	k.write(ns("device_path"), device, 0)
	k.write(ns("enable"), "1", 0)
	k.read(ns("enable"), "1")
	k.read(ns("device_path"), device)
	k.write(ns("device_path"), device, syscall.EBUSY)
	k.write(ns("device_uuid"), "11111111-2222-3333-4444-555555555555", syscall.EBUSY)
	k.write(ns("device_nguid"), "11111111-2222-3333-4444-555555555555", syscall.EBUSY)
	k.write(ns("ana_grpid"), "2", 0)
	k.write(ns("ana_grpid"), "0", syscall.EINVAL)
	k.write(ns("ana_grpid"), "1", 0)
	k.write(ns("revalidate_size"), "1", 0)
	k.write(ns("enable"), "0", 0)
	k.write(ns("revalidate_size"), "1", syscall.EINVAL)
	k.write(ns("device_uuid"), "11111111222233334444555555555555", syscall.EINVAL)
	k.write(ns("device_uuid"), "AAAAAAAA-2222-3333-4444-555555555555", 0)
	k.read(ns("device_uuid"), "aaaaaaaa-2222-3333-4444-555555555555")
	k.write(ns("device_nguid"), "BBBBBBBB222233334444555555555555", 0)
	k.read(ns("device_nguid"), "bbbbbbbb-2222-3333-4444-555555555555")
	k.expect("unlink an attribute", k.fsys.Unlink(ns("device_path")), syscall.EPERM)
	k.write(ns("no_such_attribute"), "1", syscall.ENOENT)
	_, err := k.fsys.ReadFile(ns("revalidate_size"))
	k.expect("read revalidate_size", err, syscall.EACCES)
	k.write(ns("enable"), "1", 0)
}

func (k *checker) hosts() {
	host, entry := k.p("hosts", semHost), k.s("allowed_hosts", semHost)
	k.mkdir(host, 0)
	k.read(k.p("hosts", semHost, "dhchap_key"), "")
	k.read(k.p("hosts", semHost, "dhchap_hash"), "hmac(sha256)")
	k.symlink(host, entry, 0)
	mode, err := k.fsys.Lstat(entry)
	k.expect("lstat "+entry, err, 0)
	if err == nil && mode != fs.ModeSymlink {
		k.errs = append(k.errs, fmt.Errorf("lstat %s: mode %v, want a symlink", entry, mode))
	}
	rel, err := k.fsys.Readlink(entry)
	k.expect("readlink "+entry, err, 0)
	if want := "../../../../" + filepath.Base(k.root) + "/hosts/" + semHost; err == nil && rel != want {
		k.errs = append(k.errs, fmt.Errorf("readlink %s: want %q, got %q", entry, want, rel))
	}
	k.symlink(host, k.s("allowed_hosts", "alias"), syscall.EEXIST)
	k.symlink(k.s(), k.s("allowed_hosts", "x"), syscall.EINVAL)
	k.symlink(host, k.s("namespaces", "x"), syscall.EPERM)
	k.write(k.s("attr_allow_any_host"), "1", syscall.EINVAL)
	k.rmdir(host, syscall.EBUSY)
	k.rmdir(k.s(), syscall.ENOTEMPTY)
}

func (k *checker) ports(address string) {
	port := func(id string, elem ...string) string { return k.p(append([]string{"ports", id}, elem...)...) }
	k.mkdir(port(semPort1), 0)
	groups, err := k.fsys.ReadDir(port(semPort1, "ana_groups"))
	k.expect("readdir ana_groups", err, 0)
	if err == nil && !slices.Equal(groups, []string{"1"}) {
		k.errs = append(k.errs, fmt.Errorf("a new port has ANA groups %v, want [1]", groups))
	}
	k.read(port(semPort1, "ana_groups", "1", "ana_state"), "optimized")
	k.mkdir(port(semPort1, "ana_groups", "2"), 0)
	k.read(port(semPort1, "ana_groups", "2", "ana_state"), "inaccessible")
	k.rmdir(port(semPort1, "ana_groups", "1"), syscall.EPERM)
	k.symlink(k.s(), port(semPort1, "subsystems", semSubsys), syscall.EINVAL) // no transport yet
	k.write(port(semPort1, "addr_trtype"), "bogus", syscall.EINVAL)
	for _, id := range []string{semPort1, semPort2} {
		if id == semPort2 {
			k.mkdir(port(id), 0)
		}
		k.write(port(id, "addr_trtype"), "tcp", 0)
		k.write(port(id, "addr_adrfam"), "ipv4", 0)
		k.write(port(id, "addr_traddr"), address, 0)
		k.write(port(id, "addr_trsvcid"), semSvcID, 0)
	}
	k.symlink(k.s(), port(semPort1, "subsystems", semSubsys), 0)
	k.symlink(k.s(), port(semPort1, "subsystems", "alias"), syscall.EEXIST)
	k.write(port(semPort1, "addr_traddr"), address, syscall.EACCES)
	k.write(port(semPort1, "ana_groups", "1", "ana_state"), "non-optimized", 0)
	k.write(port(semPort1, "ana_groups", "1", "ana_state"), "bogus", syscall.EINVAL)
	k.symlink(k.s(), port(semPort2, "subsystems", semSubsys), syscall.EADDRINUSE)
}

func (k *checker) removal() {
	port := func(elem ...string) string { return k.p(append([]string{"ports", semPort1}, elem...)...) }
	k.rmdir(k.s("namespaces", "1"), 0) // enabled: the kernel disables it on removal
	k.expect("unlink allowed host", k.fsys.Unlink(k.s("allowed_hosts", semHost)), 0)
	k.rmdir(k.p("hosts", semHost), 0)
	k.rmdir(k.s(), syscall.EBUSY) // still linked from a port
	k.rmdir(port(), syscall.ENOTEMPTY)
	k.expect("unlink port link", k.fsys.Unlink(port("subsystems", semSubsys)), 0)
	k.expect("unlink port link again", k.fsys.Unlink(port("subsystems", semSubsys)), syscall.ENOENT)
	k.write(port("addr_traddr"), "192.0.2.254", 0) // no link: the port is disabled again
	k.rmdir(port(), syscall.ENOTEMPTY)             // ANA group 2 remains
	k.rmdir(port("ana_groups", "2"), 0)
	k.rmdir(port(), 0)
	k.rmdir(k.p("ports", semPort2), 0)
	k.rmdir(k.s(), 0)
	_, err := k.fsys.Lstat(k.s())
	k.expect("lstat removed subsystem", err, syscall.ENOENT)
}

// cleanup removes whatever an earlier failure left behind, ignoring errors.
func (k *checker) cleanup() {
	for _, id := range []string{semPort1, semPort2} {
		_ = k.fsys.Unlink(k.p("ports", id, "subsystems", semSubsys))
		_ = k.fsys.Rmdir(k.p("ports", id, "ana_groups", "2"))
		_ = k.fsys.Rmdir(k.p("ports", id))
	}
	_ = k.fsys.Unlink(k.s("allowed_hosts", semHost))
	_ = k.fsys.Rmdir(k.p("hosts", semHost))
	_ = k.fsys.Rmdir(k.s("namespaces", "1"))
	_ = k.fsys.Rmdir(k.s())
}
