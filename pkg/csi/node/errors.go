package node

import "github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"

// errLeftBehind marks a failed stage that left state (a connection, a mount, the stash) for
// NodeUnstageVolume to clean up. It is Unavailable, whatever else the error carries, so that
// kubelet keeps the volume's staging state uncertain and does call NodeUnstageVolume.
var errLeftBehind = rpcerr.Sentinel(rpcerr.ErrUnavailable, "state left for NodeUnstageVolume")
