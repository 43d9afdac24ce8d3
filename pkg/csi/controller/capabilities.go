package controller

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
)

// Filesystem types a volume may be mounted with ("" lets the node choose its default).
var fsTypes = map[string]bool{"": true, "ext4": true, "xfs": true}

// checkCapabilities validates the volume capabilities of a request; at least one is required.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return invalidf("volume capabilities are required")
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

// checkCapability accepts block or mount (ext4, xfs) access with the single-node modes and
// MULTI_NODE_READER_ONLY; multi-node writers only with raw block access, because a node-local
// file system mounted by several writers at once is corrupted.
func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return invalidf("volume capability is required")
	}
	mode := c.GetAccessMode().GetMode()
	var block bool
	switch {
	case c.GetBlock() != nil:
		block = true
	case c.GetMount() != nil:
		if fs := c.GetMount().GetFsType(); !fsTypes[fs] {
			return invalidf("file system type %q is not supported; use ext4 or xfs", fs)
		}
	default:
		return invalidf("volume capability needs an access type (block or mount)")
	}
	switch mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return nil
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER:
		if block {
			return nil
		}
		return invalidf("access mode %s with a file system: multi-node writers need a cluster file system; use volumeMode: Block", mode)
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return invalidf("volume capability needs an access mode")
	}
	return invalidf("access mode %s is not supported", mode)
}

// multiNode reports whether mode lets a volume be published to several nodes at once.
func multiNode(mode csi.VolumeCapability_AccessMode_Mode) bool {
	switch mode {
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		return true
	}
	return false
}
