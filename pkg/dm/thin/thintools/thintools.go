// Package thintools reads a dm-thin pool's block mappings with thin-provisioning-tools
// (0.9.0, as Debian bookworm ships it): thin_dump for the blocks one thin device maps,
// thin_delta for the blocks two thin devices map differently. Their XML output is parsed as a
// stream (encoding/xml tokens, memory independent of the number of mappings) into ascending,
// coalesced extents of data blocks.
//
// On a live pool the tools must read a metadata snapshot (thin.Pool.HoldMetadataSnap): they
// open the metadata device without O_EXCL only with --metadata-snap, and the live metadata
// changes under them. The snapshot is consistent as of the moment it was reserved (the
// kernel commits first); thin devices that are read-only (snapshots) have no writes in flight,
// so their mappings in it are exact.
//
// thin_dump --dev-id of an id the metadata lacks prints an empty superblock and succeeds:
// Mapped reports it as ErrNoDevice. thin_delta of a missing id fails ("Unable to find mapping
// tree").
package thintools

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// ErrNotInstalled: a tool is not installed: block maps need thin-provisioning-tools on the
// storage node (FailedPrecondition, as CSI's "changed block tracking is not enabled").
var ErrNotInstalled = rpcerr.Sentinel(rpcerr.ErrPrecondition, "thin-provisioning-tools (thin_dump, thin_delta) are not installed")

// firstLine is the first non-blank line of a program's standard error (the tools follow a
// failure with their usage text).
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// DefaultTimeout bounds one run of a tool when Tools.Timeout is zero.
const DefaultTimeout = 10 * time.Minute

// Tools runs thin_dump and thin_delta on a pool's metadata device.
type Tools struct {
	// Runner runs the tools; nil is command.Exec{}.
	Runner command.Streamer
	// Timeout bounds each run, however long the caller's context; zero is DefaultTimeout.
	Timeout time.Duration
	// Live reads the pool's metadata snapshot (--metadata-snap), which the caller holds: the
	// way to read the metadata of an active pool. Without it, the tools read the metadata
	// itself, which must not be in use (an inactive pool, a copy).
	Live bool
}

func (t Tools) run(ctx context.Context, read func(io.Reader) error, name string, args ...string) error {
	r := t.Runner
	if r == nil {
		r = command.Exec{}
	}
	d := t.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := r.Stream(ctx, read, name, args...)
	if cerr := (*command.Error)(nil); errors.As(err, &cerr) {
		// The tools follow a failure with their usage text: the first line is the reason.
		cerr.Stderr = firstLine(cerr.Stderr)
		if errors.Is(cerr.Err, exec.ErrNotFound) {
			cerr.Err = fmt.Errorf("%w: %w", ErrNotInstalled, cerr.Err)
		}
	}
	return err
}

func (t Tools) snapArgs() []string {
	if t.Live {
		return []string{"--metadata-snap"}
	}
	return nil
}

// Mapped calls emit with the extents thin device dev maps, ascending and coalesced, read with
// `thin_dump [--metadata-snap] --dev-id dev metadataDev`. A device the metadata lacks is
// ErrNoDevice.
func (t Tools) Mapped(ctx context.Context, metadataDev string, dev uint32, emit Emit) error {
	args := append(t.snapArgs(), "--dev-id", strconv.FormatUint(uint64(dev), 10), metadataDev)
	emit, stopped := keep(emit)
	err := t.run(ctx, func(r io.Reader) error {
		_, err := ParseDump(r, dev, emit)
		return err
	}, "thin_dump", args...)
	return cmp.Or(*stopped, err)
}

// Changed calls emit with the extents that thin devices base and dev map differently (one
// maps a block the other does not, or they map it to different data blocks), ascending and
// coalesced, read with `thin_delta [--metadata-snap] --snap1 base --snap2 dev metadataDev`.
func (t Tools) Changed(ctx context.Context, metadataDev string, base, dev uint32, emit Emit) error {
	args := append(t.snapArgs(), "--snap1", strconv.FormatUint(uint64(base), 10),
		"--snap2", strconv.FormatUint(uint64(dev), 10), metadataDev)
	emit, stopped := keep(emit)
	err := t.run(ctx, func(r io.Reader) error {
		_, err := ParseDelta(r, base, dev, emit)
		return err
	}, "thin_delta", args...)
	return cmp.Or(*stopped, err)
}

// keep wraps emit so that the error it returns, which stopped a run, is kept: the caller gets
// it as it was rather than the run's failure it caused.
func keep(emit Emit) (Emit, *error) {
	stopped := new(error)
	return func(bs uint64, e Extent) error {
		err := emit(bs, e)
		if err != nil {
			*stopped = err
		}
		return err
	}, stopped
}
