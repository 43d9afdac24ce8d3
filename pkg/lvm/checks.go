package lvm

import (
	"errors"
	"fmt"
	"strconv"
)

// checkPool validates the Pool's own fields.
func (p *Pool) checkPool() error {
	if err := validateVGName(p.VG); err != nil {
		return fmt.Errorf("volume group: %w", err)
	}
	if err := validateInVG(p.VG, p.ThinPool); err != nil {
		return fmt.Errorf("thin pool: %w", err)
	}
	if p.Runner == nil {
		return errors.New("lvm: Pool has no Runner")
	}
	return nil
}

// checkNew validates a name for a new LV. The thin pool's own name is taken.
func (p *Pool) checkNew(name string) error {
	if err := p.checkPool(); err != nil {
		return err
	}
	if err := validateInVG(p.VG, name); err != nil {
		return err
	}
	if name == p.ThinPool {
		return fmt.Errorf("%s/%s is the thin pool: %w", p.VG, name, ErrExists)
	}
	return nil
}

// checkExisting validates the name of an LV to act on. The thin pool is not one of its LVs.
func (p *Pool) checkExisting(name string) error {
	if err := p.checkPool(); err != nil {
		return err
	}
	if err := validateInVG(p.VG, name); err != nil {
		return err
	}
	if name == p.ThinPool {
		return fmt.Errorf("%s/%s is the thin pool, not a thin LV: %w", p.VG, name, ErrNotFound)
	}
	return nil
}

// sizeArg turns a byte count into an lvm size argument. LVM wants whole 512-byte sectors, so
// the size is rounded up to one (LVM then rounds up to the extent size).
func sizeArg(n int64) (string, error) {
	const maxSize = 1<<63 - 512
	if n <= 0 || n > maxSize {
		return "", fmt.Errorf("%w: %d bytes", ErrInvalidSize, n)
	}
	n = (n + 511) &^ 511
	return strconv.FormatInt(n, 10) + "b", nil
}

func validateTags(tags []string) error {
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return err
		}
	}
	return nil
}

func tagArgs(flag string, tags []string) []string {
	var args []string
	for _, t := range tags {
		args = append(args, flag, t)
	}
	return args
}
