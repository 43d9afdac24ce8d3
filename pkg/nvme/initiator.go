package nvme

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults for the zero Initiator.
const (
	DefaultSysfsRoot    = "/sys"
	DefaultDevRoot      = "/dev"
	DefaultFabricsDev   = "/dev/nvme-fabrics"
	DefaultPollInterval = 100 * time.Millisecond
)

// Initiator connects this host to NVMe-oF subsystems and finds their namespaces. The zero
// value works on the real system; tests point SysfsRoot at a fake tree. See the package
// documentation for its concurrency contract.
type Initiator struct {
	// SysfsRoot is where sysfs is mounted; empty means DefaultSysfsRoot.
	SysfsRoot string
	// DevRoot is where device nodes appear (devtmpfs); empty means DefaultDevRoot.
	DevRoot string
	// FabricsDev is the fabrics control device; empty means DefaultFabricsDev.
	FabricsDev string
	// PollInterval is how often Disconnect re-reads sysfs while waiting for controllers to
	// go away; zero means DefaultPollInterval.
	PollInterval time.Duration

	// openFabrics and writeAttr are seams for unit tests; nil means the real thing.
	openFabrics func(path string) (io.ReadWriteCloser, error)
	writeAttr   func(path, value string) error
}

func (in *Initiator) sysfs(elem ...string) string {
	root := in.SysfsRoot
	if root == "" {
		root = DefaultSysfsRoot
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// devNode is the device node of a block device name under DevRoot.
func (in *Initiator) devNode(name string) string {
	root := in.DevRoot
	if root == "" {
		root = DefaultDevRoot
	}
	return filepath.Join(root, name)
}

func (in *Initiator) fabricsDev() string {
	if in.FabricsDev == "" {
		return DefaultFabricsDev
	}
	return in.FabricsDev
}

func (in *Initiator) pollInterval() time.Duration {
	if in.PollInterval <= 0 {
		return DefaultPollInterval
	}
	return in.PollInterval
}

func (in *Initiator) open(path string) (io.ReadWriteCloser, error) {
	if in.openFabrics != nil {
		return in.openFabrics(path)
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

// write stores value in a sysfs attribute with a single write, as sysfs expects.
func (in *Initiator) write(path, value string) error {
	if in.writeAttr != nil {
		return in.writeAttr(path, value)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readAttr returns a sysfs attribute without its trailing newline.
func readAttr(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(raw), "\n"), nil
}

// MultipathEnabled reports whether native NVMe multipath is on
// (/sys/module/nvme_core/parameters/multipath is "Y"). It is false when nvme_core is not
// loaded.
func (in *Initiator) MultipathEnabled() bool {
	v, err := readAttr(in.sysfs("module", "nvme_core", "parameters", "multipath"))
	return err == nil && strings.TrimSpace(v) == "Y"
}
