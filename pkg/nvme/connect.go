package nvme

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
)

// Connect connects to one portal of a subsystem and returns the controller's name ("nvme3").
//
// It is idempotent: when sysfs already shows a controller with the same subsystem NQN,
// transport, address, service ID and host NQN, that controller is returned and nothing is
// written. The kernel's own duplicate check (EALREADY, when two Connects race) is handled the
// same way. A matching controller the kernel is deleting yields an error wrapping
// ErrStillConnected: retry once it is gone.
//
// The write to the fabrics device blocks until the kernel has connected or given up, and
// cannot be interrupted. When ctx ends first, Connect returns ctx's error at once, but the
// write goes on in the background and the controller may still appear afterwards; a caller
// that gives up should call Disconnect (or simply retry Connect, which will find it). Locks
// held for ctx (keylock) stay held until the write has ended.
//
// Errors wrap ErrInvalidOption, ErrStillConnected, a context error or the kernel's errno
// (e.g. syscall.ECONNREFUSED, syscall.EIO when the target refuses the host).
func (in *Initiator) Connect(ctx context.Context, opts ConnectOptions) (string, error) {
	o, err := opts.normalized()
	if err != nil {
		return "", fmt.Errorf("nvme: connect: %w", err)
	}
	if c, ok, err := in.existing(o); err != nil || ok {
		return c, err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("nvme: connect %s: %w", o, err)
	}
	type result struct {
		ctrl string
		err  error
	}
	done := make(chan result, 1) // buffered: an abandoned writer must not block forever
	// If ctx ends first, the caller's locks stay held until the kernel has answered
	// (keylock.Outlive): a disconnect must not run beside a connect still in progress.
	ended := keylock.Outlive(ctx)
	go func() {
		c, err := in.writeFabrics(o.optionString())
		ended() // before the caller sees the result: its release then frees the locks at once
		done <- result{c, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return "", fmt.Errorf("nvme: connect %s (the connection may still appear): %w", o, ctx.Err())
	}
	if errors.Is(r.err, syscall.EALREADY) {
		c, ok, err := in.existing(o)
		if err != nil || ok {
			return c, err
		}
		return "", fmt.Errorf("nvme: connect %s: the kernel reports a duplicate that sysfs does not show: %w", o, r.err)
	}
	if r.err != nil {
		return "", fmt.Errorf("nvme: connect %s: %w", o, r.err)
	}
	return r.ctrl, nil
}

// existing finds a controller matching o. A match being deleted is reported as an error.
func (in *Initiator) existing(o ConnectOptions) (string, bool, error) {
	ctrls, err := in.Controllers(o.SubsysNQN)
	if err != nil {
		return "", false, err
	}
	var dying string
	for _, c := range ctrls {
		if !c.matches(o) {
			continue
		}
		if !c.gone() {
			return c.Name, true, nil
		}
		dying = c.Name
	}
	if dying != "" {
		return "", false, fmt.Errorf("nvme: connect %s: controller %s is being deleted: %w", o, dying, ErrStillConnected)
	}
	return "", false, nil
}

// writeFabrics writes one option string to the fabrics device and parses the kernel's answer
// ("instance=N,cntlid=M") into the controller name.
func (in *Initiator) writeFabrics(options string) (string, error) {
	f, err := in.open(in.fabricsDev())
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.WriteString(f, options); err != nil {
		return "", unwrapPathError(err)
	}
	reply, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("reading the kernel's answer: %w", unwrapPathError(err))
	}
	return parseConnectReply(string(reply))
}

// parseConnectReply turns "instance=3,cntlid=1\n" into "nvme3".
func parseConnectReply(reply string) (string, error) {
	first, _, _ := strings.Cut(strings.TrimSpace(reply), ",")
	v, ok := strings.CutPrefix(first, "instance=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 {
		return "", fmt.Errorf("unexpected answer from the fabrics device: %.40q", reply)
	}
	return "nvme" + strconv.Itoa(n), nil
}

// unwrapPathError drops the *fs.PathError layer ("write /dev/nvme-fabrics: ...") to keep
// messages short; the errno stays reachable with errors.Is.
func unwrapPathError(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
