package nvme

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
)

// pathNSRE matches the per-path namespace entries of a controller in sysfs (nvme<subsystem>c<controller>n<namespace>).
var pathNSRE = regexp.MustCompile(`^nvme[0-9]+c[0-9]+n[0-9]+$`)

// ANAState returns the ANA state the controller reports for its namespaces' paths
// ("optimized", "non-optimized", "inaccessible", "persistent-loss", "change"): the states of
// its path namespaces joined by "," when they differ, "" when it has none or the subsystem
// does not report ANA.
func (in *Initiator) ANAState(ctrl string) (string, error) {
	if !ctrlRE.MatchString(ctrl) {
		return "", fmt.Errorf("nvme: %q is not a controller name", ctrl)
	}
	entries, err := os.ReadDir(in.sysfs("class", "nvme", ctrl))
	if vanished(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("nvme: controller %s: %w", ctrl, err)
	}
	var states []string
	for _, e := range entries {
		if !pathNSRE.MatchString(e.Name()) {
			continue
		}
		v, err := readAttr(in.sysfs("class", "nvme", ctrl, e.Name(), "ana_state"))
		if errors.Is(err, fs.ErrNotExist) || vanished(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("nvme: controller %s: %w", ctrl, err)
		}
		if s := strings.TrimSpace(v); !slices.Contains(states, s) {
			states = append(states, s)
		}
	}
	return strings.Join(states, ","), nil
}
