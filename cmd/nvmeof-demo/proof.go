package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The proof that the CSI teardown left nothing behind reads the kernel directly (configfs,
// sysfs, mountinfo) and LVM through pkg/lvm's JSON reports.

// proveLVs checks that the volume group holds nothing but the thin pool.
func (e *env) proveLVs(ctx context.Context) (string, error) {
	lvs, err := e.pool(e.loop).ListVG(ctx)
	if err != nil {
		return "", err
	}
	var all, extra []string
	for _, lv := range lvs {
		all = append(all, lv.Name+" ("+lv.Segtype+")")
		if lv.Name != thinPool {
			extra = append(extra, lv.Name)
		}
	}
	if len(extra) > 0 {
		return "", fmt.Errorf("volume group %s still holds %d LV(s) besides the pool: %s", vgName, len(extra), strings.Join(extra, ", "))
	}
	return fmt.Sprintf("LVs in volume group %s: %s", vgName, strings.Join(all, ", ")), nil
}

// proveConfigfs checks that no nvmet subsystem under the agent's NQN prefix, and no host
// object of the worker, is left in configfs.
func (e *env) proveConfigfs() (string, error) {
	names, err := readDirNames(filepath.Join(configfsNvmet, "subsystems"))
	if err != nil {
		return "", err
	}
	var ours []string
	for _, n := range names {
		if strings.HasPrefix(n, e.prefix) {
			ours = append(ours, n)
		}
	}
	if len(ours) > 0 {
		return "", fmt.Errorf("%d nvmet subsystem(s) left: %s", len(ours), strings.Join(ours, ", "))
	}
	if raw, err := os.ReadFile(e.path("etc-nvme", "hostnqn")); err == nil {
		host := strings.TrimSpace(string(raw))
		if _, err := os.Stat(filepath.Join(configfsNvmet, "hosts", host)); err == nil {
			return "", fmt.Errorf("nvmet host object %s left", host)
		}
	}
	return fmt.Sprintf("nvmet subsystems named %s*: none (%d in configfs in all)", e.prefix, len(names)), nil
}

// proveControllers checks that no NVMe controller of the agent's subsystems is left; others
// (a host's own PCIe drives) are counted, not touched.
func (e *env) proveControllers() (string, error) {
	names, err := readDirNames(sysClassNVMe)
	if err != nil {
		return "", err
	}
	var ours []string
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(sysClassNVMe, n, "subsysnqn"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if strings.HasPrefix(strings.TrimSpace(string(raw)), e.prefix) {
			ours = append(ours, n)
		}
	}
	if len(ours) > 0 {
		return "", fmt.Errorf("NVMe controller(s) of the demo's subsystems left: %s", strings.Join(ours, ", "))
	}
	if len(names) == 0 {
		return "NVMe controllers in " + sysClassNVMe + ": none", nil
	}
	return fmt.Sprintf("NVMe controllers in %s: none of ours (%d others, left alone)", sysClassNVMe, len(names)), nil
}

// proveMounts checks /proc/self/mountinfo for mounts under the work directory (every staging
// and publish path of the demo is there).
func (e *env) proveMounts() (string, error) {
	left, err := mountsUnder(e.dir)
	if err != nil {
		return "", err
	}
	if len(left) > 0 {
		return "", fmt.Errorf("%d mount(s) left: %s", len(left), strings.Join(left, ", "))
	}
	return "mounts under " + e.dir + " in /proc/self/mountinfo: none", nil
}

// readDirNames lists a directory; a missing one is empty.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// poolUsed returns the bytes of the thin pool's data space in use.
func (e *env) poolUsed(ctx context.Context) (int64, error) {
	u, err := e.pool(e.loop).Usage(ctx)
	return u.DataUsedBytes, err
}
