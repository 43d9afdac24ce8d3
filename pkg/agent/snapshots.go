package agent

import (
	"context"
	"errors"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
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
	ctx, unlock, err := s.lock(ctx, id, src)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if existing, ok := s.idx.get(id); ok {
		return sameSnapshot(existing, req.GetName(), src)
	}
	origin, ok := s.idx.get(src)
	if !ok {
		return nil, rpcerr.NotFoundf("source volume %s", src)
	}
	res, err := s.admit(ctx, origin.SizeBytes, true)
	if err != nil {
		return nil, err
	}
	defer res.release()
	rec := pool.Record{ID: id, SizeBytes: origin.SizeBytes, Name: req.GetName(), Source: src, CreatedUnixNano: s.now().UnixNano()}
	v, err := s.pool.Snapshot(ctx, src, rec, true)
	if errors.Is(err, pool.ErrExists) && v.ID == id {
		s.idx.put(v.Record)
		return sameSnapshot(v.Record, req.GetName(), src)
	}
	if err != nil {
		return nil, err
	}
	res.commit(v.Record)
	return snapshotOf(v.Record), nil
}

// sameSnapshot answers a repeated CreateSnapshot.
func sameSnapshot(r pool.Record, name, src string) (*agentapi.Snapshot, error) {
	if r.Source != src {
		return nil, rpcerr.Existsf("snapshot %q is of %q, asked of %q", name, r.Source, src)
	}
	return snapshotOf(r), nil
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
func (s *Server) GetSnapshot(_ context.Context, req *agentapi.GetSnapshotRequest) (*agentapi.GetSnapshotResponse, error) {
	if err := validateID(req.GetId(), snapshotPrefix); err != nil {
		return nil, rpcerr.Status(err)
	}
	rec, ok := s.idx.get(req.GetId())
	if !ok {
		return nil, rpcerr.Status(errNoRecord("snapshot", req.GetId()))
	}
	return &agentapi.GetSnapshotResponse{Snapshot: snapshotOf(rec)}, nil
}

// ListSnapshots lists every snapshot of the pool, ordered by ID.
func (s *Server) ListSnapshots(context.Context, *agentapi.ListSnapshotsRequest) (*agentapi.ListSnapshotsResponse, error) {
	resp := &agentapi.ListSnapshotsResponse{}
	for _, r := range s.idx.list(snapshotPrefix) {
		resp.Snapshots = append(resp.Snapshots, snapshotOf(r))
	}
	return resp, nil
}
