package nvme

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// ctrlRE matches controller names in /sys/class/nvme.
var ctrlRE = regexp.MustCompile(`^nvme[0-9]+$`)

// Controller is one NVMe controller (one path to a subsystem) as sysfs shows it.
type Controller struct {
	Name      string // "nvme3"
	SubsysNQN string
	Transport string // "tcp", "rdma", "loop", "pcie", ...
	Address   string // traddr; empty for transports without one
	ServiceID string // trsvcid
	HostNQN   string
	HostID    string
	State     string // "live", "connecting", "resetting", "deleting", ...
}

// gone reports whether the controller is on its way out and can no longer be used.
func (c Controller) gone() bool {
	return strings.HasPrefix(c.State, "deleting") || c.State == "dead"
}

// Controllers lists the controllers of the subsystem subsysNQN, sorted by name; an empty
// subsysNQN lists all of them. No controller is not an error.
func (in *Initiator) Controllers(subsysNQN string) ([]Controller, error) {
	dir := in.sysfs("class", "nvme")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nvme_core not loaded: no controllers
	}
	if err != nil {
		return nil, fmt.Errorf("nvme: listing controllers: %w", err)
	}
	var out []Controller
	for _, e := range entries {
		if !ctrlRE.MatchString(e.Name()) {
			continue
		}
		c, err := in.controller(e.Name())
		if vanished(err) {
			continue // deleted while we looked
		}
		if err != nil {
			return nil, err
		}
		if subsysNQN == "" || c.SubsysNQN == subsysNQN {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return ctrlLess(out[i].Name, out[j].Name) })
	return out, nil
}

// vanished reports an error from reading a controller that the kernel is deleting: its sysfs
// files are gone (ENOENT) or still listed but answer ENODEV.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

// controller reads one controller's attributes from /sys/class/nvme/<name>.
func (in *Initiator) controller(name string) (Controller, error) {
	c := Controller{Name: name}
	for _, a := range []struct {
		attr     string
		dst      *string
		optional bool
	}{
		{"subsysnqn", &c.SubsysNQN, false},
		{"transport", &c.Transport, false},
		{"state", &c.State, false},
		{"address", nil, true},
		{"hostnqn", &c.HostNQN, true},
		{"hostid", &c.HostID, true},
	} {
		v, err := readAttr(in.sysfs("class", "nvme", name, a.attr))
		if errors.Is(err, fs.ErrNotExist) && a.optional {
			continue
		}
		if err != nil {
			return Controller{}, fmt.Errorf("nvme: controller %s: %w", name, err)
		}
		if a.dst != nil {
			*a.dst = strings.TrimSpace(v)
			continue
		}
		fields := parseAddress(v)
		c.Address, c.ServiceID = fields["traddr"], fields["trsvcid"]
	}
	return c, nil
}

// parseAddress splits a controller's "address" attribute, e.g.
// "traddr=192.0.2.1,trsvcid=4420,src_addr=192.0.2.1", into its fields.
func parseAddress(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Split(strings.TrimSpace(s), ",") {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// sameAddress compares portal addresses, treating different spellings of one IP as equal.
func sameAddress(a, b string) bool {
	pa, errA := netip.ParseAddr(a)
	pb, errB := netip.ParseAddr(b)
	if errA == nil && errB == nil {
		return pa == pb
	}
	return a == b
}

// matches reports whether c is a connection described by the normalized options o: the same
// subsystem, transport, portal and host NQN, the fields the kernel itself compares to refuse
// a duplicate connect.
func (c Controller) matches(o ConnectOptions) bool {
	return c.SubsysNQN == o.SubsysNQN && c.Transport == o.Transport &&
		sameAddress(c.Address, o.Address) && c.ServiceID == o.ServiceID && c.HostNQN == o.HostNQN
}

// ctrlLess orders names like nvme2 before nvme10.
func ctrlLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
