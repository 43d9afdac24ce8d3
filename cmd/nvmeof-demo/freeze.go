package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The file system freeze ioctls, as fsfreeze(8) issues them: _IOWR('X', 119, int) and
// _IOWR('X', 120, int) in the generic _IOC layout (x86, arm64, riscv64); x/sys/unix has no
// names for them.
const (
	ioctlFIFREEZE = 0xc0045877
	ioctlFITHAW   = 0xc0045878
)

// hold is how long a file system's writes were held, in its three consecutive parts: the
// freeze (new writes block as soon as it begins; it writes back what is dirty), the work done
// meanwhile, and the thaw (until it returned). No gap lies between them.
type hold struct {
	freeze, work, thaw time.Duration
}

// total is the whole window: from the start of the freeze to the end of the thaw.
func (h hold) total() time.Duration { return h.freeze + h.work + h.thaw }

func (h hold) String() string {
	return fmt.Sprintf("%s (freeze %s, then %s, thaw %s)", secs(h.total()), ms(h.freeze), ms(h.work), ms(h.thaw))
}

// frozen runs fn with the file system at path frozen, as a backup tool does for a consistent
// copy, and thaws it whatever fn returns. The freeze and thaw are ioctls issued here (no
// fsfreeze process whose start-up would count), and the file system is synced before the
// freeze, while writes still flow, so that the freeze has little left to write back. A
// file system left frozen (a crash in between) is thawed by the sweep.
func frozen(path string, fn func() error) (h hold, err error) {
	f, err := os.Open(path)
	if err != nil {
		return h, err
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := unix.Syncfs(fd); err != nil {
		return h, fmt.Errorf("syncfs %s: %w", path, err)
	}
	start := time.Now()
	if err := unix.IoctlSetInt(fd, ioctlFIFREEZE, 0); err != nil {
		return h, fmt.Errorf("freezing %s: %w", path, err)
	}
	frozenAt := time.Now()
	thawed := false
	defer func() { // fn panicked: thaw all the same
		if !thawed {
			_ = unix.IoctlSetInt(fd, ioctlFITHAW, 0)
		}
	}()
	err = fn()
	workDone := time.Now()
	terr := unix.IoctlSetInt(fd, ioctlFITHAW, 0)
	end := time.Now()
	thawed = true
	h = hold{freeze: frozenAt.Sub(start), work: workDone.Sub(frozenAt), thaw: end.Sub(workDone)}
	if terr != nil {
		err = errors.Join(err, fmt.Errorf("thawing %s: %w", path, terr))
	}
	return h, err
}

// thaw thaws the file system at path if it is frozen (EINVAL: it was not).
func thaw(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), ioctlFITHAW, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// ms writes a duration under a second in milliseconds, a longer one like secs.
func ms(d time.Duration) string {
	if d >= time.Second {
		return secs(d)
	}
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}
