package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// csiSnapshot describes an agent snapshot on node in CSI terms. Thin snapshots are complete
// when created: ready_to_use is always true.
func csiSnapshot(node string, s *agentapi.Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:      contract.ObjectID(node, s.GetId()),
		SourceVolumeId:  contract.ObjectID(node, s.GetSourceVolumeId()),
		SizeBytes:       s.GetSizeBytes(),
		CreationTime:    timestamppb.New(timeFromUnixNano(s.GetCreationTimeUnixNano())),
		ReadyToUse:      true,
		GroupSnapshotId: s.GetGroupId(),
	}
}

// createSnapshot snapshots a volume on its storage node. A snapshot of the same name from a
// different source, on any storage node, is AlreadyExists.
func (c *Controller) createSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	switch {
	case req.GetName() == "":
		return nil, rpcerr.Invalidf("snapshot name is required")
	case req.GetSourceVolumeId() == "":
		return nil, rpcerr.Invalidf("source volume ID is required")
	}
	for k := range req.GetParameters() {
		if !strings.HasPrefix(k, contract.ReservedPrefix) {
			return nil, rpcerr.Invalidf("unknown snapshot parameter %q (VolumeSnapshotClass parameters are not supported)", k)
		}
	}
	src, err := c.resolve(req.GetSourceVolumeId(), kindVolume)
	if err != nil {
		return nil, fmt.Errorf("source %w", err)
	}
	agentID := agentapi.SnapshotID(req.GetName())
	node, ok, err := c.locate(ctx, fmt.Sprintf("snapshot %q", req.GetName()), func(ctx context.Context, a agentapi.AgentClient) error {
		_, err := a.GetSnapshot(ctx, &agentapi.GetSnapshotRequest{Id: agentID})
		return err
	})
	if err != nil {
		return nil, err
	}
	if ok && node.Name != src.node.Name {
		return nil, rpcerr.Existsf("snapshot %q exists on storage node %s with another source volume", req.GetName(), node.Name)
	}
	resp, err := src.agent.CreateSnapshot(ctx, &agentapi.CreateSnapshotRequest{Name: req.GetName(), SourceVolumeId: src.agentID})
	if err != nil {
		return nil, wrapAgent(src.node.Name, fmt.Sprintf("snapshot %s as %q", src.agentID, req.GetName()), err)
	}
	klog.FromContext(ctx).V(2).Info("Snapshot created", "name", req.GetName(), "sourceVolumeID", req.GetSourceVolumeId())
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(src.node.Name, resp.GetSnapshot())}, nil
}

// deleteSnapshot deletes a snapshot; one that does not exist is already deleted: OK.
func (c *Controller) deleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, rpcerr.Invalidf("snapshot ID is required")
	}
	t, err := c.resolve(req.GetSnapshotId(), kindSnapshot)
	if err != nil {
		klog.FromContext(ctx).Info("Deleting a snapshot that cannot exist: nothing to do", "snapshotID", req.GetSnapshotId(), "reason", err)
		return &csi.DeleteSnapshotResponse{}, nil
	}
	_, err = t.agent.DeleteSnapshot(ctx, &agentapi.DeleteSnapshotRequest{Id: t.agentID})
	if err != nil && !rpcerr.IsCode(err, codes.NotFound) {
		return nil, wrapAgent(t.node.Name, "delete snapshot "+t.agentID, err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// getSnapshot describes one snapshot; an unknown one is NotFound.
func (c *Controller) getSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, rpcerr.Invalidf("snapshot ID is required")
	}
	t, err := c.resolve(req.GetSnapshotId(), kindSnapshot)
	if err != nil {
		return nil, err
	}
	resp, err := t.agent.GetSnapshot(ctx, &agentapi.GetSnapshotRequest{Id: t.agentID})
	if err != nil {
		return nil, wrapAgent(t.node.Name, "snapshot "+t.agentID, err)
	}
	return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(t.node.Name, resp.GetSnapshot())}, nil
}

// listSnapshots lists snapshots, optionally only the one with snapshot_id and/or those of
// source_volume_id. IDs that cannot exist give an empty list, not an error.
func (c *Controller) listSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if _, _, err := paginate[struct{}](nil, kindSnapshot, req.GetStartingToken(), req.GetMaxEntries()); err != nil {
		return nil, err
	}
	snaps, err := c.findSnapshots(ctx, req.GetSnapshotId(), req.GetSourceVolumeId())
	if err != nil {
		return nil, err
	}
	var entries []keyed[*csi.ListSnapshotsResponse_Entry]
	for _, s := range snaps {
		entries = append(entries, keyed[*csi.ListSnapshotsResponse_Entry]{
			key: sortKey(s.node, s.snap.GetId()),
			id:  contract.ObjectID(s.node, s.snap.GetId()),
			val: &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(s.node, s.snap)},
		})
	}
	page, next, err := paginate(entries, kindSnapshot, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	return &csi.ListSnapshotsResponse{Entries: page, NextToken: next}, nil
}

type nodeSnapshot struct {
	node string
	snap *agentapi.Snapshot
}

// findSnapshots gathers the snapshots ListSnapshots filters select.
func (c *Controller) findSnapshots(ctx context.Context, snapshotID, sourceVolumeID string) ([]nodeSnapshot, error) {
	var sourceNode, sourceAgentID string
	if sourceVolumeID != "" {
		n, aid, ok := c.nodeOf(sourceVolumeID, kindVolume)
		if !ok {
			return nil, nil
		}
		sourceNode, sourceAgentID = n.Name, aid
	}
	matches := func(node string, s *agentapi.Snapshot) bool {
		return sourceVolumeID == "" || (node == sourceNode && s.GetSourceVolumeId() == sourceAgentID)
	}

	if snapshotID != "" {
		n, aid, ok := c.nodeOf(snapshotID, kindSnapshot)
		if !ok {
			return nil, nil
		}
		agent, err := c.agents.Client(n.Name)
		if err != nil {
			return nil, err
		}
		resp, err := agent.GetSnapshot(ctx, &agentapi.GetSnapshotRequest{Id: aid})
		switch {
		case rpcerr.IsCode(err, codes.NotFound):
			return nil, nil
		case err != nil:
			return nil, wrapAgent(n.Name, "snapshot "+aid, err)
		case !matches(n.Name, resp.GetSnapshot()):
			return nil, nil
		}
		return []nodeSnapshot{{n.Name, resp.GetSnapshot()}}, nil
	}

	nodes := c.nodes
	if sourceVolumeID != "" {
		nodes = []agentclient.StorageNode{c.byName[sourceNode]}
	}
	answers, err := listAll(ctx, c, nodes, "snapshots", func(ctx context.Context, a agentapi.AgentClient) ([]*agentapi.Snapshot, error) {
		resp, err := a.ListSnapshots(ctx, &agentapi.ListSnapshotsRequest{})
		return resp.GetSnapshots(), err
	})
	if err != nil {
		return nil, err
	}
	var out []nodeSnapshot
	for _, a := range answers {
		for _, s := range a.val {
			if matches(a.node.Name, s) {
				out = append(out, nodeSnapshot{a.node.Name, s})
			}
		}
	}
	return out, nil
}

func timeFromUnixNano(n int64) time.Time { return time.Unix(0, n) }
