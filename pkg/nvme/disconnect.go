package nvme

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
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
	return in.deleteControllers(ctx, subsysNQN, nil)
}

// DeleteControllers deletes the named controllers of subsysNQN (paths that are dead or
// superseded), like Disconnect does all of them, and waits, bounded by ctx, until they are
// gone. Names that are not controllers of the subsystem are ignored.
func (in *Initiator) DeleteControllers(ctx context.Context, subsysNQN string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	return in.deleteControllers(ctx, subsysNQN, names)
}

// deleteControllers deletes the controllers of subsysNQN named in only (all when nil).
func (in *Initiator) deleteControllers(ctx context.Context, subsysNQN string, only []string) error {
	if err := ValidNQN(subsysNQN); err != nil {
		return fmt.Errorf("nvme: disconnect: %w", err)
	}
	ctrls, err := in.Controllers(subsysNQN)
	if only != nil {
		ctrls = slices.DeleteFunc(ctrls, func(c Controller) bool { return !slices.Contains(only, c.Name) })
	}
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
		if only != nil {
			left = slices.DeleteFunc(left, func(c Controller) bool { return !slices.Contains(only, c.Name) })
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

// RescanSubsystem asks every live controller of subsysNQN to rescan its namespaces: for a
// namespace whose device did not appear (an asynchronous event the host missed). The kernel
// rescans asynchronously; it returns once the requests are queued, and an error wrapping
// ErrNotFound when no controller is live.
func (in *Initiator) RescanSubsystem(subsysNQN string) error {
	ctrls, err := in.Controllers(subsysNQN)
	if err != nil {
		return err
	}
	var errs []error
	queued := 0
	for _, c := range ctrls {
		if c.State != "live" {
			continue
		}
		if err := in.write(in.sysfs("class", "nvme", c.Name, "rescan_controller"), "1"); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, unwrapPathError(err)))
			continue
		}
		queued++
	}
	if queued == 0 {
		return fmt.Errorf("nvme: rescan %s: no live controller: %w", subsysNQN, errors.Join(append(errs, ErrNotFound)...))
	}
	return nil
}
