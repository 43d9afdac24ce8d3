package nvme

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ReleaseTimeouts bounds how long the controllers of subsystems under prefix may keep I/O
// waiting for a target that is gone: their ctrl_loss_tmo becomes lossTmo seconds (the kernel
// deletes a controller that cannot reconnect for that long, failing what it queued) and their
// fast_io_fail_tmo 0 (I/O fails as soon as a reconnect starts instead of waiting for it). A
// host shutting down calls it so that its unmounts end within the bound whatever state the
// storage network is in. It returns the controllers changed; a controller that vanished meanwhile
// is not an error.
func (in *Initiator) ReleaseTimeouts(prefix string, lossTmo int) ([]string, error) {
	if lossTmo < 0 {
		return nil, fmt.Errorf("%w: ctrl_loss_tmo %d: want 0 or more seconds", ErrInvalidOption, lossTmo)
	}
	ctrls, err := in.Controllers("")
	if err != nil {
		return nil, err
	}
	var changed []string
	var errs []error
	for _, c := range ctrls {
		if !strings.HasPrefix(c.SubsysNQN, prefix) || c.Transport == "pcie" || c.Transport == "loop" {
			continue
		}
		err := errors.Join(
			in.write(in.sysfs("class", "nvme", c.Name, "fast_io_fail_tmo"), "0"),
			in.write(in.sysfs("class", "nvme", c.Name, "ctrl_loss_tmo"), strconv.Itoa(lossTmo)),
		)
		switch {
		case err == nil:
			changed = append(changed, c.Name)
		case vanished(err):
		default:
			errs = append(errs, fmt.Errorf("nvme: controller %s: %w", c.Name, err))
		}
	}
	return changed, errors.Join(errs...)
}
