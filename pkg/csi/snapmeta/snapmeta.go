// Package snapmeta is the CSI SnapshotMetadata service of nvmeof-csi (changed-block tracking,
// CSI 1.10+, alpha): the allocated ranges of a snapshot, and the ranges that changed between
// two snapshots of one volume, for backup tools that copy only those.
//
// The ranges come from the storage node's agent (GetBlockMap), which reads them from the thin
// pool's metadata: a snapshot maps exactly the blocks its volume had written (and not
// discarded) when it was taken, and two snapshots of a volume share a block until the volume
// writes it again, so a delta is exact to the pool's block size (64 KiB by default), whatever
// the file system. The service is stateless like the controller: snapshot IDs name their
// storage node (package contract). Ranges are BlockMetadataType VARIABLE_LENGTH, in bytes,
// coalesced; each response carries the snapshot's size as volume_capacity_bytes.
//
// Errors, as the CSI spec's SnapshotMetadata section asks: a missing ID or a negative
// max_results is InvalidArgument; a malformed or unknown snapshot (or one of a storage node
// not configured) NotFound; a starting_offset that is negative or beyond the snapshot
// OutOfRange; a base and a target on different storage nodes, or of different volumes,
// InvalidArgument; a storage node whose pool cannot read block maps, or whose agent predates
// them, FailedPrecondition ("changed block tracking is not enabled": do a full backup). A
// failure after the stream began ends it with that error: the caller may call again from the
// offset after the last range it received.
package snapmeta

import (
	"context"
	"fmt"
	"io"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Server implements csi.SnapshotMetadataServer over the storage nodes' agents.
type Server struct {
	csi.UnimplementedSnapshotMetadataServer

	nodes  map[string]agentclient.StorageNode
	agents agentclient.Source
}

var _ csi.SnapshotMetadataServer = (*Server)(nil)

// New returns the service over the configured storage nodes, whose agents come from agents.
// The agents' streams are bounded only by the caller's context (agentclient.CallTimeout bounds
// unary calls, not streams): a block map of a large volume takes as long as it takes.
func New(nodes []agentclient.StorageNode, agents agentclient.Source) *Server {
	s := &Server{nodes: map[string]agentclient.StorageNode{}, agents: agents}
	for _, n := range nodes {
		s.nodes[n.Name] = n
	}
	return s
}

// GetMetadataAllocated implements csi.SnapshotMetadataServer: the ranges of the snapshot that
// hold data.
func (s *Server) GetMetadataAllocated(req *csi.GetMetadataAllocatedRequest, stream csi.SnapshotMetadata_GetMetadataAllocatedServer) error {
	ctx := stream.Context()
	if req.GetSnapshotId() == "" {
		return rpcerr.Status(rpcerr.Invalidf("snapshot_id is required"))
	}
	t, err := s.resolve(req.GetSnapshotId(), "snapshot")
	if err != nil {
		return rpcerr.Status(err)
	}
	areq := &agentapi.GetBlockMapRequest{SnapshotId: t.agentID}
	err = s.relay(ctx, t, areq, req.GetStartingOffset(), req.GetMaxResults(), func(capacity int64, blocks []*csi.BlockMetadata) error {
		return stream.Send(&csi.GetMetadataAllocatedResponse{
			BlockMetadataType: csi.BlockMetadataType_VARIABLE_LENGTH, VolumeCapacityBytes: capacity, BlockMetadata: blocks})
	})
	return rpcerr.Status(err)
}

// GetMetadataDelta implements csi.SnapshotMetadataServer: the ranges where the target
// snapshot differs from the base, an earlier snapshot of the same volume.
func (s *Server) GetMetadataDelta(req *csi.GetMetadataDeltaRequest, stream csi.SnapshotMetadata_GetMetadataDeltaServer) error {
	ctx := stream.Context()
	switch {
	case req.GetBaseSnapshotId() == "":
		return rpcerr.Status(rpcerr.Invalidf("base_snapshot_id is required"))
	case req.GetTargetSnapshotId() == "":
		return rpcerr.Status(rpcerr.Invalidf("target_snapshot_id is required"))
	}
	base, err := s.resolve(req.GetBaseSnapshotId(), "base snapshot")
	if err != nil {
		return rpcerr.Status(err)
	}
	target, err := s.resolve(req.GetTargetSnapshotId(), "target snapshot")
	if err != nil {
		return rpcerr.Status(err)
	}
	if base.node != target.node {
		return rpcerr.Status(rpcerr.Invalidf("base snapshot %s is on storage node %s, target snapshot %s on %s: a delta is between snapshots of one volume",
			req.GetBaseSnapshotId(), base.node, req.GetTargetSnapshotId(), target.node))
	}
	areq := &agentapi.GetBlockMapRequest{SnapshotId: target.agentID, BaseSnapshotId: base.agentID}
	err = s.relay(ctx, target, areq, req.GetStartingOffset(), req.GetMaxResults(), func(capacity int64, blocks []*csi.BlockMetadata) error {
		return stream.Send(&csi.GetMetadataDeltaResponse{
			BlockMetadataType: csi.BlockMetadataType_VARIABLE_LENGTH, VolumeCapacityBytes: capacity, BlockMetadata: blocks})
	})
	return rpcerr.Status(err)
}

// target is a parsed snapshot ID with its storage node's agent.
type target struct {
	node, agentID string
	agent         agentapi.AgentClient
}

// resolve parses a snapshot ID (what names it in errors). A malformed ID, or one of a storage
// node that is not configured, is NotFound.
func (s *Server) resolve(id, what string) (target, error) {
	node, agentID, ok := contract.ParseObjectID(id, "snap")
	if !ok {
		return target{}, rpcerr.NotFoundf("%s %q: no such snapshot (malformed ID)", what, id)
	}
	if _, ok := s.nodes[node]; !ok {
		return target{}, rpcerr.NotFoundf("%s %q: storage node %q is not configured", what, id, node)
	}
	agent, err := s.agents.Client(node)
	if err != nil {
		return target{}, err
	}
	return target{node: node, agentID: agentID, agent: agent}, nil
}

// relay asks the agent for the block map from start and sends it on, at most maxResults
// ranges a message (the agent's choice when 0), checking that the ranges are what CSI
// promises: ascending, apart, non-empty, none ending at or before start.
func (s *Server) relay(ctx context.Context, t target, req *agentapi.GetBlockMapRequest, start int64, maxResults int32,
	send func(capacity int64, blocks []*csi.BlockMetadata) error) error {
	switch {
	case start < 0:
		return rpcerr.OutOfRangef("starting_offset %d is negative", start)
	case maxResults < 0:
		return rpcerr.Invalidf("max_results %d is negative", maxResults)
	}
	req.StartingOffset, req.MaxResults = start, maxResults
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the agent's stream if the caller's goes first
	stream, err := t.agent.GetBlockMap(ctx, req)
	if err != nil {
		return agentErr(t.node, req, err)
	}
	var capacity, next, ranges, bytes int64
	sent := 0
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return agentErr(t.node, req, err)
		}
		if capacity == 0 {
			capacity = msg.GetVolumeSizeBytes()
		}
		blocks := make([]*csi.BlockMetadata, 0, len(msg.GetRanges()))
		for _, r := range msg.GetRanges() {
			if r.GetLength() <= 0 || r.GetOffset() < next || r.GetOffset()+r.GetLength() <= start || r.GetOffset()+r.GetLength() > capacity {
				return fmt.Errorf("storage node %s: block map of %s: range of %d bytes at %d after %d (starting offset %d, capacity %d)",
					t.node, req.GetSnapshotId(), r.GetLength(), r.GetOffset(), next, start, capacity)
			}
			next = r.GetOffset() + r.GetLength()
			ranges++
			bytes += r.GetLength()
			blocks = append(blocks, &csi.BlockMetadata{ByteOffset: r.GetOffset(), SizeBytes: r.GetLength()})
		}
		for len(blocks) > 0 {
			n := len(blocks)
			if maxResults > 0 {
				n = min(n, int(maxResults))
			}
			if err := send(capacity, blocks[:n]); err != nil {
				return err
			}
			sent++
			blocks = blocks[n:]
		}
	}
	if sent == 0 {
		// No range: one message all the same, for the capacity.
		if err := send(capacity, nil); err != nil {
			return err
		}
		sent++
	}
	klog.FromContext(ctx).V(2).Info("Snapshot metadata sent", "storageNode", t.node, "snapshot", req.GetSnapshotId(),
		"base", req.GetBaseSnapshotId(), "startingOffset", start, "ranges", ranges, "bytes", bytes, "messages", sent)
	return nil
}

// agentErr explains an agent's failure; an agent that does not know GetBlockMap (older than
// this plugin) means changed block tracking is not available there.
func agentErr(node string, req *agentapi.GetBlockMapRequest, err error) error {
	if rpcerr.IsCode(err, codes.Unimplemented) {
		return rpcerr.Preconditionf("storage node %s: its agent cannot read block maps (upgrade it): %v", node, err)
	}
	what := "block map of " + req.GetSnapshotId()
	if req.GetBaseSnapshotId() != "" {
		what += " against " + req.GetBaseSnapshotId()
	}
	return fmt.Errorf("storage node %s: %s: %w", node, what, err)
}
