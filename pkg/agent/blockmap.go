package agent

import (
	"context"
	"errors"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Ranges per GetBlockMap message: the default (max_results 0) and the most a request gets,
// whatever it asks (about 20 bytes a range: messages stay far below gRPC's 4 MiB).
const (
	defaultBlockMapResults = 1024
	maxBlockMapResults     = 16384
)

// GetBlockMap streams the ranges of a snapshot that hold data, or (with a base snapshot of the
// same volume) the ranges where the two differ, as the pool's thin metadata says (see
// pool.BlockMapper). Every message carries the block and volume sizes; there is always at
// least one, the last possibly without ranges (block_size_bytes is 0 in a stream that has
// none). Ranges ending at or before starting_offset are left out and one spanning it is cut
// there, so the first range may start off a block boundary. IDs must be snapshots'
// (InvalidArgument otherwise), unknown ones are NotFound, a base of another volume is
// InvalidArgument, an offset beyond the snapshot OutOfRange, and a pool backend that cannot
// map blocks FailedPrecondition. It takes no lock: the pool reads one consistent copy of its
// metadata, whatever happens to the snapshots meanwhile.
func (s *Server) GetBlockMap(req *agentapi.GetBlockMapRequest, stream agentapi.Agent_GetBlockMapServer) error {
	return rpcerr.Status(s.getBlockMap(stream.Context(), req, stream.Send))
}

func (s *Server) getBlockMap(ctx context.Context, req *agentapi.GetBlockMapRequest, send func(*agentapi.GetBlockMapResponse) error) error {
	snap, err := s.blockMapSnapshot(req.GetSnapshotId(), "snapshot_id")
	if err != nil {
		return err
	}
	var baseID string
	if req.GetBaseSnapshotId() != "" {
		base, err := s.blockMapSnapshot(req.GetBaseSnapshotId(), "base_snapshot_id")
		if err != nil {
			return err
		}
		if base.Source != snap.Source {
			return rpcerr.Invalidf("base snapshot %s is of volume %s, snapshot %s of volume %s: a delta is between snapshots of one volume",
				base.ID, base.Source, snap.ID, snap.Source)
		}
		baseID = base.ID
	}
	start := req.GetStartingOffset()
	if start < 0 || start > snap.SizeBytes {
		return rpcerr.OutOfRangef("starting offset %d is not within snapshot %s of %d bytes", start, snap.ID, snap.SizeBytes)
	}
	per := int(req.GetMaxResults())
	switch {
	case per < 0:
		return rpcerr.Invalidf("max_results %d is negative", per)
	case per == 0:
		per = defaultBlockMapResults
	case per > maxBlockMapResults:
		per = maxBlockMapResults
	}
	mapper, ok := s.pool.(pool.BlockMapper)
	if !ok {
		return rpcerr.Preconditionf("pool backend %s cannot read block maps", s.cfg.Pool.Backend)
	}

	began := time.Now()
	out := &agentapi.GetBlockMapResponse{VolumeSizeBytes: snap.SizeBytes}
	var ranges, bytes int64
	flush := func() error {
		err := send(out)
		out = &agentapi.GetBlockMapResponse{BlockSizeBytes: out.BlockSizeBytes, VolumeSizeBytes: snap.SizeBytes}
		return err
	}
	var sendErr error
	err = mapper.MapBlocks(ctx, snap.ID, baseID, func(blockSize int64, r pool.Range) error {
		// A pool block may reach past the end of a volume whose size is not a whole number of
		// blocks: ranges stop at the volume's end.
		from, end := max(r.Offset, start), min(r.Offset+r.Length, snap.SizeBytes)
		if end <= from {
			return nil
		}
		r = pool.Range{Offset: from, Length: end - from}
		out.BlockSizeBytes = blockSize
		out.Ranges = append(out.Ranges, &agentapi.BlockRange{Offset: r.Offset, Length: r.Length})
		ranges++
		bytes += r.Length
		if len(out.Ranges) < per {
			return nil
		}
		sendErr = flush()
		return sendErr
	})
	if err == nil {
		err = flush()
	} else if sendErr != nil && errors.Is(err, sendErr) {
		err = sendErr // the client went away: nothing went wrong in the pool
	}
	log := klog.FromContext(ctx)
	if err != nil {
		log.V(2).Info("Block map cut short", "snapshot", snap.ID, "base", baseID, "ranges", ranges, "err", err)
		return err
	}
	log.V(2).Info("Block map", "snapshot", snap.ID, "base", baseID, "startingOffset", start, "ranges", ranges, "bytes", bytes,
		"duration", time.Since(began))
	return nil
}

// blockMapSnapshot checks an ID of GetBlockMap (field names it) and returns its record.
func (s *Server) blockMapSnapshot(id, field string) (pool.Record, error) {
	switch {
	case id == "":
		return pool.Record{}, rpcerr.Invalidf("%s is required", field)
	case !strings.HasPrefix(id, snapshotPrefix):
		return pool.Record{}, rpcerr.Invalidf("%s %q is not a snapshot ID: block maps are of snapshots", field, id)
	}
	if err := validateID(id, snapshotPrefix); err != nil {
		return pool.Record{}, err
	}
	rec, ok := s.idx.get(id)
	if !ok {
		return pool.Record{}, errNoRecord("snapshot", id)
	}
	return rec, nil
}
