package dmthin

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// Defaults of Options.
const (
	DefaultBlockSectors = 128 // 64 KiB data blocks
	DefaultNodeDir      = "/dev/nvmeof"
	DefaultHoldTimeout  = time.Second

	// maxPoolNameLen leaves room in a device-mapper name (127 bytes) for "-" and an ID.
	maxPoolNameLen = dm.MaxNameLen - 1 - maxIDLen
)

// Options say which devices make the pool and how to run it.
type Options struct {
	// MetadataDevice and DataDevice are the block devices of the pool (paths). The metadata
	// device holds the pool's headers, its record store and the dm-thin metadata; the data
	// device a header and the data. A few GiB of metadata serve terabytes of data: dm-thin
	// needs about 64 bytes of metadata per data block, plus the record store (1/8 of the
	// device, see the package documentation).
	MetadataDevice, DataDevice string
	// Name prefixes the name of every device-mapper device of the pool ("<Name>-pool",
	// "<Name>-<ID>"), and names its directory of device nodes. 1 to 62 bytes of letters,
	// digits and "._+-", starting with a letter or digit. It may change from one Open to the
	// next while nothing of the pool is active (the devices are known by their UUIDs).
	Name string
	// BlockSectors is the data block size in 512-byte sectors, used when the pool is
	// formatted: a multiple of 128 (64 KiB) up to 2097152 (1 GiB); 0 means
	// DefaultBlockSectors. A formatted pool keeps its own: a different non-zero value is an
	// error. New blocks are always zeroed before first use (no skip_block_zeroing), so a
	// volume never reads another tenant's old data.
	BlockSectors uint32
	// NodeDir is the directory of the device nodes Open and Activate make (mknod; there is
	// no udev): thin devices are at NodeDir/<Name>/<ID>. Default DefaultNodeDir.
	NodeDir string
	// HoldTimeout bounds how long a snapshot holds the writes of its origins (the suspend,
	// the snapshot messages and the resume): past it, the origins are resumed and the
	// snapshot fails, leaving none. Default DefaultHoldTimeout.
	HoldTimeout time.Duration
	// ErrorIfNoSpace makes writes that need a new block fail at once when the data device is
	// full, instead of being queued by the kernel (for its no_space_timeout, 60 s by
	// default) in the hope that the pool grows. It is a feature of the pool's table, applied
	// when Open builds the pool (an already active pool keeps its table).
	ErrorIfNoSpace bool
	// Hooks are for tests.
	Hooks Hooks
}

// Hooks let tests act inside an operation.
type Hooks struct {
	// DuringHold runs while the writes of a snapshot's origins are held, before the
	// snapshot messages (a slow step, to prove HoldTimeout).
	DuringHold func()
	// HoldEnded is told about each write hold when it ends.
	HoldEnded func(HoldStats)
}

// HoldStats describe one write hold.
type HoldStats struct {
	// Origins is the number of devices suspended.
	Origins int
	// Suspend is how long suspending them took, Total the whole hold: from the first
	// suspend to the last resume.
	Suspend, Total time.Duration
	// Expired: the hold was ended by HoldTimeout or by the end of the call's context.
	Expired bool
}

// withDefaults fills in defaults and checks the options.
func (o Options) withDefaults() (Options, error) {
	if o.NodeDir == "" {
		o.NodeDir = DefaultNodeDir
	}
	if o.HoldTimeout == 0 {
		o.HoldTimeout = DefaultHoldTimeout
	}
	switch {
	case o.MetadataDevice == "" || o.DataDevice == "":
		return o, fmt.Errorf("%w: both a metadata device and a data device are needed", pool.ErrInvalid)
	case o.MetadataDevice == o.DataDevice:
		return o, fmt.Errorf("%w: metadata and data devices are both %s", pool.ErrInvalid, o.DataDevice)
	case !filepath.IsAbs(o.NodeDir):
		return o, fmt.Errorf("%w: node directory %q is not an absolute path", pool.ErrInvalid, o.NodeDir)
	case o.HoldTimeout < 0:
		return o, fmt.Errorf("%w: negative hold timeout", pool.ErrInvalid)
	case o.BlockSectors != 0 && (o.BlockSectors < thin.MinBlockSectors || o.BlockSectors > thin.MaxBlockSectors || o.BlockSectors%thin.MinBlockSectors != 0):
		return o, fmt.Errorf("%w: data block size of %d sectors is not a multiple of %d from %d to %d",
			pool.ErrInvalid, o.BlockSectors, thin.MinBlockSectors, thin.MinBlockSectors, thin.MaxBlockSectors)
	}
	if err := validPoolName(o.Name); err != nil {
		return o, err
	}
	return o, nil
}

// validPoolName checks Options.Name.
func validPoolName(name string) error {
	if name == "" || len(name) > maxPoolNameLen || !nameChars(name) {
		return fmt.Errorf("%w: pool name %q is not 1 to %d letters, digits and ._+- (not first)", pool.ErrInvalid, name, maxPoolNameLen)
	}
	return nil
}
