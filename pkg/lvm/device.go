package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// DeviceTimeout is how long Create, Snapshot and Activate wait for /dev/<vg>/<lv> to appear
// by default.
const DeviceTimeout = 10 * time.Second

// activated waits for a new LV's device and returns the LV as lvs reports it.
func (p *Pool) activated(ctx context.Context, name string) (LV, error) {
	if err := p.waitDevice(ctx, p.devicePath(name)); err != nil {
		return LV{}, err
	}
	lv, err := p.Get(ctx, name)
	if err != nil {
		return LV{}, fmt.Errorf("reading back %s/%s: %w", p.VG, name, err)
	}
	return lv, nil
}

func (p *Pool) devicePath(name string) string { return "/dev/" + p.VG + "/" + name }

func (p *Pool) waitDevice(ctx context.Context, path string) error {
	if p.WaitForDevice != nil {
		return p.WaitForDevice(ctx, path)
	}
	return pollDevice(ctx, path, DeviceTimeout)
}

// pollDevice waits until path exists, for at most timeout.
func pollDevice(ctx context.Context, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("device %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("device %s did not appear: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}
