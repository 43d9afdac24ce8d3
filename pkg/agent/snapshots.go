package agent

import (
	"context"
	"errors"
	"sort"
	"strconv"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// CreateSnapshot takes an O(1), read-only thin snapshot of a volume. It is idempotent by name;
// the same name for another source is AlreadyExists.
func (s *Server) CreateSnapshot(ctx context.Context, req *agentapi.CreateSnapshotRequest) (*agentapi.CreateSnapshotResponse, error) {
	snap, err := s.createSnapshot(ctx, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.CreateSnapshotResponse{Snapshot: snap}, nil
}

func (s *Server) createSnapshot(ctx context.Context, req *agentapi.CreateSnapshotRequest) (*agentapi.Snapshot, error) {
	if err := validateName(req.GetName()); err != nil {
		return nil, err
	}
	src := req.GetSourceVolumeId()
	if err := validateID(src, volumePrefix); err != nil {
		return nil, err
	}
	id := agentapi.SnapshotID(req.GetName())
	unlock, err := s.lock(ctx, id, src)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if lv, err := s.pool.Get(ctx, id); err == nil {
		if !isSnapshot(lv) || tagOf(lv, tagSource) != src {
			return nil, rpcerr.Existsf("snapshot %q is of %q, asked of %q", req.GetName(), tagOf(lv, tagSource), src)
		}
		return snapshotOf(lv), nil
	} else if !errors.Is(err, lvm.ErrNotFound) {
		return nil, err
	}
	origin, err := s.pool.Get(ctx, src)
	if errors.Is(err, lvm.ErrNotFound) {
		return nil, rpcerr.NotFoundf("source volume %s", src)
	}
	if err != nil {
		return nil, err
	}
	tags := []string{
		lvm.EncodeTag(tagName, req.GetName()),
		lvm.EncodeTag(tagSource, src),
		lvm.EncodeTag(tagCreated, strconv.FormatInt(s.now().UnixNano(), 10)),
	}
	s.provision.Lock()
	defer s.provision.Unlock()
	if err := s.admit(ctx, origin.SizeBytes); err != nil {
		return nil, err
	}
	lv, err := s.pool.Snapshot(ctx, src, id, true, tags)
	if err != nil {
		return nil, err
	}
	return snapshotOf(lv), nil
}

// DeleteSnapshot removes a snapshot. Clones made from it do not depend on it (thin snapshots
// share blocks, not lineage), so it can always go. Unknown IDs are NotFound.
func (s *Server) DeleteSnapshot(ctx context.Context, req *agentapi.DeleteSnapshotRequest) (*agentapi.DeleteSnapshotResponse, error) {
	if err := s.deleteObject(ctx, req.GetId(), snapshotPrefix); err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.DeleteSnapshotResponse{}, nil
}

// GetSnapshot describes one snapshot.
func (s *Server) GetSnapshot(ctx context.Context, req *agentapi.GetSnapshotRequest) (*agentapi.GetSnapshotResponse, error) {
	if err := validateID(req.GetId(), snapshotPrefix); err != nil {
		return nil, rpcerr.Status(err)
	}
	lv, err := s.pool.Get(ctx, req.GetId())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.GetSnapshotResponse{Snapshot: snapshotOf(lv)}, nil
}

// ListSnapshots lists every snapshot of the pool, ordered by ID.
func (s *Server) ListSnapshots(ctx context.Context, _ *agentapi.ListSnapshotsRequest) (*agentapi.ListSnapshotsResponse, error) {
	lvs, err := s.pool.List(ctx)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	resp := &agentapi.ListSnapshotsResponse{}
	for _, lv := range lvs {
		if isSnapshot(lv) {
			resp.Snapshots = append(resp.Snapshots, snapshotOf(lv))
		}
	}
	sort.Slice(resp.Snapshots, func(i, j int) bool { return resp.Snapshots[i].Id < resp.Snapshots[j].Id })
	return resp, nil
}
