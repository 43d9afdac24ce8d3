package contract

import (
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// FSTypes are the file systems a volume may be mounted with; the first is the default.
// Matching is case-insensitive ("XFS" is xfs), as mount(8) and mkfs are.
var FSTypes = []string{"ext4", "xfs"}

// Capability is a validated CSI volume capability: the controller and the node accept and
// refuse exactly the same ones.
type Capability struct {
	// Block is raw block access; otherwise the volume is mounted with FSType.
	Block bool
	// FSType is, for mounted volumes, one of FSTypes in lower case ("" asks for the default).
	FSType string
	// MountFlags are the capability's mount flags (mounted volumes only).
	MountFlags []string
	// Mode is the access mode.
	Mode csi.VolumeCapability_AccessMode_Mode
	// ReadOnly: the access mode only allows reading.
	ReadOnly bool
	// SingleWriter: SINGLE_NODE_SINGLE_WRITER, which allows one publication on the node.
	SingleWriter bool
	// MultiNode: the access mode lets the volume be published to several nodes at once.
	MultiNode bool
}

// ParseCapability validates a volume capability. It accepts block access with every access
// mode, and mount access (ext4, xfs) with the single-node modes and MULTI_NODE_READER_ONLY:
// a node-local file system mounted by writers on several nodes at once is corrupted. Errors
// are rpcerr.ErrInvalid.
func ParseCapability(c *csi.VolumeCapability) (Capability, error) {
	if c == nil {
		return Capability{}, rpcerr.Invalidf("volume capability is required")
	}
	vc := Capability{Mode: c.GetAccessMode().GetMode()}
	switch at := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		vc.Block = true
	case *csi.VolumeCapability_Mount:
		vc.FSType = strings.ToLower(at.Mount.GetFsType())
		if vc.FSType == "" {
			vc.FSType = FSTypes[0]
		}
		if !slices.Contains(FSTypes, vc.FSType) {
			return Capability{}, rpcerr.Invalidf("file system type %q is not supported; use one of %s", at.Mount.GetFsType(), strings.Join(FSTypes, ", "))
		}
		for _, f := range at.Mount.GetMountFlags() {
			if err := checkMountFlag(f); err != nil {
				return Capability{}, err
			}
			vc.MountFlags = append(vc.MountFlags, f)
		}
	default:
		return Capability{}, rpcerr.Invalidf("volume capability needs an access type (block or mount)")
	}
	switch vc.Mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER:
		vc.SingleWriter = true
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:
		vc.ReadOnly = true
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		vc.ReadOnly, vc.MultiNode = true, true
	case csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if !vc.Block {
			return Capability{}, rpcerr.Invalidf("access mode %s with a file system: multi-node writers need a cluster file system; use volumeMode: Block", vc.Mode)
		}
		vc.MultiNode = true
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return Capability{}, rpcerr.Invalidf("volume capability needs an access mode")
	default:
		return Capability{}, rpcerr.Invalidf("access mode %s is not supported", vc.Mode)
	}
	return vc, nil
}

// kindFlags are mount options that change what a mount is rather than how the file system is
// mounted: the driver makes the staging mount (of the namespace device) and the publish bind
// mount itself, so these are refused in a capability's mount flags.
var kindFlags = []string{"bind", "rbind", "remount", "move", "loop", "shared", "rshared", "slave", "rslave",
	"private", "rprivate", "unbindable", "runbindable", "make-shared", "make-rshared", "make-slave",
	"make-rslave", "make-private", "make-rprivate", "make-unbindable", "make-runbindable"}

// checkMountFlag refuses a mount flag that is empty, holds white space or a control
// character, or (alone or in a comma-separated list) changes the kind of mount.
func checkMountFlag(f string) error {
	if f == "" || strings.IndexFunc(f, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return rpcerr.Invalidf("mount flag %q is malformed", f)
	}
	for _, o := range strings.Split(f, ",") {
		name, _, _ := strings.Cut(o, "=")
		if o == "" || slices.Contains(kindFlags, name) {
			return rpcerr.Invalidf("mount flag %q: %q is not a file system mount option (the driver makes its own mounts)", f, o)
		}
	}
	return nil
}

// ParseCapabilities validates a request's volume capabilities; at least one is required.
func ParseCapabilities(caps []*csi.VolumeCapability) ([]Capability, error) {
	if len(caps) == 0 {
		return nil, rpcerr.Invalidf("volume capabilities are required")
	}
	out := make([]Capability, 0, len(caps))
	for _, c := range caps {
		vc, err := ParseCapability(c)
		if err != nil {
			return nil, err
		}
		out = append(out, vc)
	}
	return out, nil
}
