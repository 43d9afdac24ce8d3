package nvme

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
)

// Disconnect deletes every controller of the subsystem subsysNQN (all paths, whatever their
// state) by writing to their delete_controller attribute, then waits, bounded by ctx, until
// sysfs shows none of them. It returns nil only when none is left; otherwise the error wraps
// ErrStillConnected (and ctx's error when it gave up waiting). Disconnecting a subsystem that
// has no controller is a no-op, so Disconnect is idempotent.
//
// The kernel drops queued I/O of a deleted controller: unmount before calling this.
func (in *Initiator) Disconnect(ctx context.Context, subsysNQN string) error {
	if err := ValidNQN(subsysNQN); err != nil {
		return fmt.Errorf("nvme: disconnect: %w", err)
	}
	ctrls, err := in.Controllers(subsysNQN)
	if err != nil || len(ctrls) == 0 {
		return err
	}
	// delete_controller blocks until the controller is torn down: write in the background so
	// that ctx bounds the whole call.
	done := make(chan error, 1)
	go func() {
		var errs []error
		for _, c := range ctrls {
			err := in.write(in.sysfs("class", "nvme", c.Name, "delete_controller"), "1")
			if err != nil && !vanished(err) {
				errs = append(errs, fmt.Errorf("%s: %w", c.Name, unwrapPathError(err)))
			}
		}
		done <- errors.Join(errs...)
	}()
	var writeErr error
	select {
	case writeErr = <-done:
	case <-ctx.Done():
	}
	t := time.NewTicker(in.pollInterval())
	defer t.Stop()
	for {
		left, err := in.Controllers(subsysNQN)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		names := make([]string, len(left))
		for i, c := range left {
			names[i] = c.Name
		}
		stuck := fmt.Errorf("nvme: disconnect %s: %s still present: %w", subsysNQN, strings.Join(names, ", "), ErrStillConnected)
		if writeErr != nil {
			return fmt.Errorf("%w (deleting: %w)", stuck, writeErr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up waiting: %w)", stuck, ctx.Err())
		case <-t.C:
		}
	}
}

// Rescan asks every controller behind the namespace device dev ("/dev/nvme3n1") to rescan its
// namespaces, so that a size changed on the target becomes visible (watch DeviceSize). The
// kernel rescans asynchronously; Rescan returns once the requests are queued. Errors wrap
// ErrNotFound when the device or its controllers are gone.
func (in *Initiator) Rescan(dev string) error {
	name, err := deviceName(dev)
	if err != nil {
		return err
	}
	parent := in.sysfs("class", "block", name, "device")
	// Without multipath the parent is the controller; with it, the subsystem, which links to
	// its controllers.
	ctrls := []string{parent}
	if _, err := readAttr(filepath.Join(parent, "cntlid")); errors.Is(err, fs.ErrNotExist) {
		names, err := readDirNames(parent)
		if err != nil {
			return fmt.Errorf("nvme: rescan %s: %w", name, err)
		}
		ctrls = ctrls[:0]
		for _, n := range names {
			if ctrlRE.MatchString(n) {
				ctrls = append(ctrls, filepath.Join(parent, n))
			}
		}
	}
	var errs []error
	queued := 0
	for _, c := range ctrls {
		err := in.write(filepath.Join(c, "rescan_controller"), "1")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(c), unwrapPathError(err)))
			continue
		}
		queued++
	}
	if queued == 0 && len(errs) == 0 {
		return fmt.Errorf("nvme: rescan %s: no controller: %w", name, ErrNotFound)
	}
	if err := errors.Join(errs...); err != nil {
		if queued == 0 && errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return fmt.Errorf("nvme: rescan %s: %w", name, err)
	}
	return nil
}
