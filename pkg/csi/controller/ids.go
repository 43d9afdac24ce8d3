package controller

import (
	"maps"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// sortKey orders objects by storage node name, then agent ID (a '\x00' separator sorts before
// every character of a node name, unlike the '/' of the ID).
func sortKey(node, agentID string) string { return node + "\x00" + agentID }

// topology is the accessible_topology of a volume on node: its labels, or nothing.
func topology(node agentclient.StorageNode) []*csi.Topology {
	if len(node.Topology) == 0 {
		return nil
	}
	return []*csi.Topology{{Segments: maps.Clone(node.Topology)}}
}

// csiVolume describes an agent volume on node in CSI terms.
func csiVolume(node agentclient.StorageNode, v *agentapi.Volume) *csi.Volume {
	return &csi.Volume{
		VolumeId:           contract.ObjectID(node.Name, v.GetId()),
		CapacityBytes:      v.GetSizeBytes(),
		ContentSource:      csiContentSource(node.Name, v.GetSource()),
		AccessibleTopology: topology(node),
	}
}

func csiContentSource(node string, s *agentapi.ContentSource) *csi.VolumeContentSource {
	switch {
	case s.GetSnapshotId() != "":
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: contract.ObjectID(node, s.GetSnapshotId())},
		}}
	case s.GetVolumeId() != "":
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: contract.ObjectID(node, s.GetVolumeId())},
		}}
	}
	return nil
}

// publishedNodeIDs lists the CSI node IDs a volume is published to.
func publishedNodeIDs(v *agentapi.Volume) []string {
	var ids []string
	for _, h := range v.GetHosts() {
		if h.GetNodeId() != "" {
			ids = append(ids, h.GetNodeId())
		}
	}
	return ids
}
