package nvme

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// NamespaceDevices lists the NVMe block devices in /sys/class/block whose namespace UUID is
// nsUUID (compared case-insensitively), sorted by name and split into the visible ones (a
// multipath head, or a controller's own namespace device without multipath) and the hidden
// multipath path devices (nvmeXcYnZ). After a disconnect both lists must be empty: checks and
// tests use it to see that nothing of a namespace is left.
func (in *Initiator) NamespaceDevices(nsUUID string) (visible, hidden []string, err error) {
	if err := ValidUUID(nsUUID); err != nil {
		return nil, nil, fmt.Errorf("nvme: namespace devices: %w", err)
	}
	names, err := readDirNames(in.sysfs("class", "block"))
	if err != nil {
		return nil, nil, fmt.Errorf("nvme: namespace devices: %w", err)
	}
	for _, name := range names {
		isPath := pathRE.MatchString(name)
		if !isPath && !headRE.MatchString(name) { // partitions, other block devices
			continue
		}
		blk := in.sysfs("class", "block", name)
		u, err := namespaceUUID(blk)
		if vanished(err) || errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("nvme: namespace devices: %w", err)
		}
		if !strings.EqualFold(u, nsUUID) {
			continue
		}
		if isPath || hiddenDevice(blk) {
			hidden = append(hidden, name)
		} else {
			visible = append(visible, name)
		}
	}
	sort.Slice(visible, func(i, j int) bool { return ctrlLess(visible[i], visible[j]) })
	sort.Slice(hidden, func(i, j int) bool { return ctrlLess(hidden[i], hidden[j]) })
	return visible, hidden, nil
}
