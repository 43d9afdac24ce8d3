package lvm

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
)

// RequiredTargets are the device-mapper targets a thin pool, its thin volumes and their
// snapshots need: lvcreate --snapshot of a thin volume checks for "snapshot" too.
var RequiredTargets = []string{"thin-pool", "thin", "snapshot"}

// lookPath finds modprobe; a seam for tests.
var lookPath = exec.LookPath

// requiredModules load RequiredTargets.
var requiredModules = []string{"dm-thin-pool", "dm-snapshot"}

// CheckTargets makes sure the kernel has RequiredTargets. A missing one is loaded with modprobe
// when this system has it (a host install); in a container without kmod it is an error that
// names the modules the host must load. Without this check a missing dm-snapshot only shows
// at the first CreateSnapshot, as an Internal error from lvcreate.
func CheckTargets(ctx context.Context, runner command.Runner) error {
	missing, err := missingTargets(ctx, runner)
	if err != nil || len(missing) == 0 {
		return err
	}
	if _, lookErr := lookPath("modprobe"); lookErr == nil {
		if _, err := runner.Run(ctx, "modprobe", append([]string{"-a"}, requiredModules...)...); err == nil {
			if missing, err = missingTargets(ctx, runner); err != nil || len(missing) == 0 {
				return err
			}
		}
	}
	return fmt.Errorf("device-mapper targets %s are not in the kernel: load %s on this host (e.g. /etc/modules-load.d)",
		strings.Join(missing, ", "), strings.Join(requiredModules, " and "))
}

func missingTargets(ctx context.Context, runner command.Runner) ([]string, error) {
	out, err := runner.Run(ctx, "dmsetup", "targets")
	if err != nil {
		return nil, fmt.Errorf("list device-mapper targets: %w", err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			have[f[0]] = true
		}
	}
	var missing []string
	for _, t := range RequiredTargets {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	return missing, nil
}
