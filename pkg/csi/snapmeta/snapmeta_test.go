package snapmeta

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

const (
	gib   = int64(1) << 30
	block = int64(64 << 10)
)

// fixture: storage nodes sn1 and sn2; on sn1 volume a with snapshots a1 and a2, volume b
// with snapshot b1; on sn2 volume c with snapshot c1. ids are the CSI snapshot IDs.
type fixture struct {
	srv    *Server
	agents map[string]*fakeagent.Agent
	ids    map[string]string
	agent  map[string]string // CSI snapshot ID → agent ID
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{agents: map[string]*fakeagent.Agent{}, ids: map[string]string{}, agent: map[string]string{}}
	var nodes []agentclient.StorageNode
	var all []*fakeagent.Agent
	for _, n := range []string{"sn1", "sn2"} {
		a := fakeagent.New(n, 100*gib)
		f.agents[n] = a
		all = append(all, a)
		nodes = append(nodes, agentclient.StorageNode{Name: n, Address: "unix:///run/" + n + ".sock"})
	}
	f.srv = New(nodes, fakeagent.NewCluster(all...))
	ctx := context.Background()
	for _, s := range []struct{ node, vol, snap string }{{"sn1", "a", "a1"}, {"sn1", "a", "a2"}, {"sn1", "b", "b1"}, {"sn2", "c", "c1"}} {
		a := f.agents[s.node]
		v, err := a.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: s.vol, SizeBytes: gib})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := a.CreateSnapshot(ctx, &agentapi.CreateSnapshotRequest{Name: s.snap, SourceVolumeId: v.Volume.Id})
		if err != nil {
			t.Fatal(err)
		}
		f.ids[s.snap] = contract.ObjectID(s.node, snap.Snapshot.Id)
		f.agent[f.ids[s.snap]] = snap.Snapshot.Id
	}
	return f
}

func ranges(pairs ...int64) []*agentapi.BlockRange {
	var out []*agentapi.BlockRange
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &agentapi.BlockRange{Offset: pairs[i] * block, Length: pairs[i+1] * block})
	}
	return out
}

func metadata(pairs ...int64) []string {
	var out []string
	for _, r := range ranges(pairs...) {
		out = append(out, (&csi.BlockMetadata{ByteOffset: r.Offset, SizeBytes: r.Length}).String())
	}
	return out
}

// stream is a server stream of either RPC that keeps what is sent.
type stream[T any] struct {
	grpc.ServerStream
	ctx  context.Context
	sent []T
	fail error
}

func (s *stream[T]) Context() context.Context { return s.ctx }
func (s *stream[T]) Send(m T) error {
	if s.fail != nil {
		return s.fail
	}
	s.sent = append(s.sent, m)
	return nil
}

func (f *fixture) allocated(req *csi.GetMetadataAllocatedRequest) (*stream[*csi.GetMetadataAllocatedResponse], error) {
	s := &stream[*csi.GetMetadataAllocatedResponse]{ctx: context.Background()}
	return s, f.srv.GetMetadataAllocated(req, s)
}

func (f *fixture) delta(req *csi.GetMetadataDeltaRequest) (*stream[*csi.GetMetadataDeltaResponse], error) {
	s := &stream[*csi.GetMetadataDeltaResponse]{ctx: context.Background()}
	return s, f.srv.GetMetadataDelta(req, s)
}

type response interface {
	GetBlockMetadataType() csi.BlockMetadataType
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*csi.BlockMetadata
}

// flatten checks every message's type, capacity and size bound, and returns all the ranges.
func flatten[T response](t *testing.T, sent []T, maxResults int) []string {
	t.Helper()
	var out []string
	for _, m := range sent {
		if m.GetBlockMetadataType() != csi.BlockMetadataType_VARIABLE_LENGTH || m.GetVolumeCapacityBytes() != gib {
			t.Fatalf("message %v: want VARIABLE_LENGTH and capacity %d", m, gib)
		}
		if maxResults > 0 && len(m.GetBlockMetadata()) > maxResults {
			t.Fatalf("message of %d ranges, max_results %d", len(m.GetBlockMetadata()), maxResults)
		}
		for _, b := range m.GetBlockMetadata() {
			out = append(out, b.String())
		}
	}
	return out
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code %v (%v), want %v", got, err, want)
	}
}

func TestGetMetadataAllocatedRelaysTheAgentsMapInBytes(t *testing.T) {
	f := newFixture(t)
	f.agents["sn1"].SetBlockMap(f.agent[f.ids["a1"]], "", block, ranges(0, 4, 10, 1, 12, 3, 100, 16)...)
	s, err := f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"]})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := flatten(t, s.sent, 0), metadata(0, 4, 10, 1, 12, 3, 100, 16); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// max_results bounds each message; the starting offset cuts a range spanning it.
	s, err = f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"], MaxResults: 1, StartingOffset: 2 * block})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := flatten(t, s.sent, 1), metadata(2, 2, 10, 1, 12, 3, 100, 16); !slices.Equal(got, want) || len(s.sent) != 4 {
		t.Fatalf("got %v in %d messages, want %v in 4", got, len(s.sent), want)
	}
	// A snapshot with nothing allocated: one message, for the capacity.
	s, err = f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a2"]})
	if err != nil || len(s.sent) != 1 || len(flatten(t, s.sent, 0)) != 0 {
		t.Fatalf("empty map: %v, %v", s.sent, err)
	}
}

func TestGetMetadataDeltaAsksTheTargetsAgentAgainstTheBase(t *testing.T) {
	f := newFixture(t)
	f.agents["sn1"].SetBlockMap(f.agent[f.ids["a2"]], f.agent[f.ids["a1"]], block, ranges(3, 1, 9, 2)...)
	s, err := f.delta(&csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"], TargetSnapshotId: f.ids["a2"], MaxResults: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := flatten(t, s.sent, 5), metadata(3, 1, 9, 2); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestSnapshotMetadataErrorsAreTheSpecsCodes(t *testing.T) {
	f := newFixture(t)
	unknown := contract.ObjectID("sn1", agentapi.SnapshotID("nope"))
	for name, c := range map[string]struct {
		alloc *csi.GetMetadataAllocatedRequest
		delta *csi.GetMetadataDeltaRequest
		want  codes.Code
	}{
		"allocated: no ID":                   {alloc: &csi.GetMetadataAllocatedRequest{}, want: codes.InvalidArgument},
		"allocated: malformed ID":            {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: "junk"}, want: codes.NotFound},
		"allocated: a volume ID":             {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: contract.ObjectID("sn1", agentapi.VolumeID("a"))}, want: codes.NotFound},
		"allocated: unknown storage node":    {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: contract.ObjectID("sn9", agentapi.SnapshotID("a1"))}, want: codes.NotFound},
		"allocated: unknown snapshot":        {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: unknown}, want: codes.NotFound},
		"allocated: negative offset":         {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"], StartingOffset: -1}, want: codes.OutOfRange},
		"allocated: offset beyond":           {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"], StartingOffset: gib + 1}, want: codes.OutOfRange},
		"allocated: negative max_results":    {alloc: &csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"], MaxResults: -1}, want: codes.InvalidArgument},
		"delta: no base":                     {delta: &csi.GetMetadataDeltaRequest{TargetSnapshotId: f.ids["a2"]}, want: codes.InvalidArgument},
		"delta: no target":                   {delta: &csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"]}, want: codes.InvalidArgument},
		"delta: unknown base":                {delta: &csi.GetMetadataDeltaRequest{BaseSnapshotId: unknown, TargetSnapshotId: f.ids["a2"]}, want: codes.NotFound},
		"delta: malformed target":            {delta: &csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"], TargetSnapshotId: "sn1/snap-1"}, want: codes.NotFound},
		"delta: different storage nodes":     {delta: &csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"], TargetSnapshotId: f.ids["c1"]}, want: codes.InvalidArgument},
		"delta: different volumes":           {delta: &csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"], TargetSnapshotId: f.ids["b1"]}, want: codes.InvalidArgument},
		"delta: offset beyond the snapshots": {delta: &csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"], TargetSnapshotId: f.ids["a2"], StartingOffset: 2 * gib}, want: codes.OutOfRange},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			var sent int
			if c.alloc != nil {
				var s *stream[*csi.GetMetadataAllocatedResponse]
				s, err = f.allocated(c.alloc)
				sent = len(s.sent)
			} else {
				var s *stream[*csi.GetMetadataDeltaResponse]
				s, err = f.delta(c.delta)
				sent = len(s.sent)
			}
			wantCode(t, err, c.want)
			if sent != 0 {
				t.Fatalf("%d messages sent before the error", sent)
			}
		})
	}
}

func TestAStorageNodeWithoutBlockMapsIsFailedPrecondition(t *testing.T) {
	f := newFixture(t)
	// An agent older than GetBlockMap, and one whose pool backend cannot read block maps.
	f.agents["sn1"].SetError("GetBlockMap", status.Error(codes.Unimplemented, "unknown method GetBlockMap"))
	_, err := f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"]})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "storage node sn1") {
		t.Fatalf("error %q does not name the storage node", err)
	}
	f.agents["sn1"].SetError("GetBlockMap", status.Error(codes.FailedPrecondition, "pool backend lvm2 cannot read block maps"))
	_, err = f.delta(&csi.GetMetadataDeltaRequest{BaseSnapshotId: f.ids["a1"], TargetSnapshotId: f.ids["a2"]})
	wantCode(t, err, codes.FailedPrecondition)
}

func TestAFailureMidStreamEndsTheStreamWithIt(t *testing.T) {
	f := newFixture(t)
	f.agents["sn1"].SetBlockMap(f.agent[f.ids["a1"]], "", block, ranges(0, 1, 2, 1, 4, 1, 6, 1)...)
	f.agents["sn1"].FailBlockMapAfter(2, status.Error(codes.Unavailable, "connection reset"))
	s, err := f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"], MaxResults: 1})
	wantCode(t, err, codes.Unavailable)
	if got := flatten(t, s.sent, 1); !slices.Equal(got, metadata(0, 1, 2, 1)) {
		t.Fatalf("sent %v before the failure", got)
	}
	// The caller goes on from the offset after what it got.
	f.agents["sn1"].FailBlockMapAfter(0, nil)
	s, err = f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"], StartingOffset: 3 * block})
	if err != nil {
		t.Fatal(err)
	}
	if got := flatten(t, s.sent, 0); !slices.Equal(got, metadata(4, 1, 6, 1)) {
		t.Fatalf("resumed with %v", got)
	}
	// The caller's stream failing ends the call with that error.
	gone := errors.New("client went away")
	st := &stream[*csi.GetMetadataAllocatedResponse]{ctx: context.Background(), fail: gone}
	if err := f.srv.GetMetadataAllocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"]}, st); err == nil || !strings.Contains(err.Error(), gone.Error()) {
		t.Fatalf("err = %v", err)
	}
}

func TestRangesThatBreakCSIsOrderAreRefused(t *testing.T) {
	f := newFixture(t)
	for name, rs := range map[string][]*agentapi.BlockRange{
		"overlapping":       ranges(0, 4, 2, 4),
		"descending":        ranges(8, 1, 2, 1),
		"empty":             {{Offset: 5 * block, Length: 0}},
		"beyond the volume": ranges(16383, 2),
	} {
		t.Run(name, func(t *testing.T) {
			f.agents["sn1"].SetBlockMap(f.agent[f.ids["a1"]], "", block, rs...)
			_, err := f.allocated(&csi.GetMetadataAllocatedRequest{SnapshotId: f.ids["a1"]})
			wantCode(t, err, codes.Internal)
		})
	}
}
