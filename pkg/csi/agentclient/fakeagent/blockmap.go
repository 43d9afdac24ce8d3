package fakeagent

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// blockMaps keeps each Agent's block maps (set by SetBlockMap) beside the Agent.
var blockMaps sync.Map // *Agent → *blockMapState

type blockMapState struct {
	mu        sync.Mutex
	blockSize int64
	maps      map[[2]string][]*agentapi.BlockRange // by {base, snapshot}
	// failAfter, failErr: the stream fails with failErr after failAfter messages.
	failAfter int
	failErr   error
}

func (a *Agent) blockMapState() *blockMapState {
	s, _ := blockMaps.LoadOrStore(a, &blockMapState{blockSize: 64 << 10, maps: map[[2]string][]*agentapi.BlockRange{}})
	return s.(*blockMapState)
}

// SetBlockMap sets what GetBlockMap reports of snapshot id: with base "", its allocated
// ranges; else the ranges where it differs from base. Ranges must be ascending and apart. A
// map never set is empty. blockSize is the pool's block size (64 KiB until set).
func (a *Agent) SetBlockMap(id, base string, blockSize int64, ranges ...*agentapi.BlockRange) {
	s := a.blockMapState()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blockSize = blockSize
	s.maps[[2]string{base, id}] = ranges
}

// FailBlockMapAfter makes every GetBlockMap stream fail with err after n messages (err nil:
// no failure).
func (a *Agent) FailBlockMapAfter(n int, err error) {
	s := a.blockMapState()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAfter, s.failErr = n, err
}

// GetBlockMap implements agentapi.AgentClient like the agent: snapshot IDs only, a base of the
// same volume, the starting offset applied (a range spanning it cut), max_results ranges a
// message (1024 when 0), always at least one message.
func (a *Agent) GetBlockMap(ctx context.Context, req *agentapi.GetBlockMapRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[agentapi.GetBlockMapResponse], error) {
	if err := a.begin(ctx, "GetBlockMap"); err != nil {
		return nil, err
	}
	snap, ok := a.snapshots[req.GetSnapshotId()]
	var base *agentapi.Snapshot
	if ok && req.GetBaseSnapshotId() != "" {
		base, ok = a.snapshots[req.GetBaseSnapshotId()]
	}
	a.mu.Unlock()
	switch {
	case req.GetSnapshotId() == "":
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is required")
	case !ok:
		return nil, status.Errorf(codes.NotFound, "snapshot %s or %s not found", req.GetSnapshotId(), req.GetBaseSnapshotId())
	case base != nil && base.SourceVolumeId != snap.SourceVolumeId:
		return nil, status.Errorf(codes.InvalidArgument, "snapshots %s and %s are of different volumes", base.Id, snap.Id)
	case req.GetStartingOffset() < 0 || req.GetStartingOffset() > snap.SizeBytes:
		return nil, status.Errorf(codes.OutOfRange, "starting offset %d", req.GetStartingOffset())
	case req.GetMaxResults() < 0:
		return nil, status.Errorf(codes.InvalidArgument, "max_results %d", req.GetMaxResults())
	}
	per := int(req.GetMaxResults())
	if per == 0 {
		per = 1024
	}
	s := a.blockMapState()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &blockMapStream{ctx: ctx, failAfter: s.failAfter, failErr: s.failErr}
	msg := &agentapi.GetBlockMapResponse{BlockSizeBytes: s.blockSize, VolumeSizeBytes: snap.SizeBytes}
	start := req.GetStartingOffset()
	for _, r := range s.maps[[2]string{req.GetBaseSnapshotId(), snap.Id}] {
		r = proto.Clone(r).(*agentapi.BlockRange)
		if end := r.Offset + r.Length; end <= start {
			continue
		} else if r.Offset < start {
			r.Offset, r.Length = start, end-start
		}
		msg.Ranges = append(msg.Ranges, r)
		if len(msg.Ranges) == per {
			out.msgs = append(out.msgs, msg)
			msg = &agentapi.GetBlockMapResponse{BlockSizeBytes: s.blockSize, VolumeSizeBytes: snap.SizeBytes}
		}
	}
	if len(msg.Ranges) > 0 || len(out.msgs) == 0 {
		out.msgs = append(out.msgs, msg)
	}
	return out, nil
}

// blockMapStream is the client side of a GetBlockMap stream.
type blockMapStream struct {
	grpc.ClientStream
	ctx       context.Context
	msgs      []*agentapi.GetBlockMapResponse
	sent      int
	failAfter int
	failErr   error
}

func (s *blockMapStream) Context() context.Context { return s.ctx }

func (s *blockMapStream) Recv() (*agentapi.GetBlockMapResponse, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if s.failErr != nil && s.sent >= s.failAfter {
		return nil, s.failErr
	}
	if s.sent == len(s.msgs) {
		return nil, io.EOF
	}
	s.sent++
	return s.msgs[s.sent-1], nil
}
