package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

func TestCreateVolumeReturnsTheAgentsVolume(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib, topology: map[string]string{"zone": "a"}})
	req := createReq("pvc-1", gib+1)
	req.Parameters = map[string]string{"transport": "rdma", "csi.storage.k8s.io/pvc/name": "data"}
	vol := f.mustCreate(t, req)

	wantID := contract.ObjectID("s1", agentapi.VolumeID("pvc-1"))
	if vol.VolumeId != wantID {
		t.Errorf("volume ID %q, want %q", vol.VolumeId, wantID)
	}
	if vol.CapacityBytes != gib+mib {
		t.Errorf("capacity %d, want %d (rounded up to a MiB)", vol.CapacityBytes, gib+mib)
	}
	if got := vol.GetAccessibleTopology(); len(got) != 1 || got[0].GetSegments()["zone"] != "a" {
		t.Errorf("accessible topology %v, want zone=a", got)
	}
	if vol.VolumeContext["transport"] != "rdma" || vol.VolumeContext["ctrlLossTmo"] == "" {
		t.Errorf("volume context %v", vol.VolumeContext)
	}
	av, ok := f.agents["s1"].Volume(agentapi.VolumeID("pvc-1"))
	if !ok || av.Labels["csi.storage.k8s.io/pvc/name"] != "data" {
		t.Errorf("agent volume %v: want the reserved parameters as labels", av)
	}
}

func TestCreateVolumeOmitsTopologyOfAnUnlabelledNode(t *testing.T) {
	vol := oneNode(t).mustCreate(t, createReq("pvc-1", 0))
	if vol.AccessibleTopology != nil {
		t.Errorf("accessible topology %v, want none", vol.AccessibleTopology)
	}
	if vol.CapacityBytes != DefaultVolumeBytes {
		t.Errorf("capacity %d, want the default %d", vol.CapacityBytes, DefaultVolumeBytes)
	}
}

func TestCreateVolumeRejects(t *testing.T) {
	f := oneNode(t)
	mnmwFS := createReq("pvc-x", gib)
	mnmwFS.VolumeCapabilities = []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "ext4")}
	for _, tc := range []struct {
		name string
		mod  func(*csi.CreateVolumeRequest)
		code codes.Code
	}{
		{"no name", func(r *csi.CreateVolumeRequest) { r.Name = "" }, codes.InvalidArgument},
		{"no capabilities", func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = nil }, codes.InvalidArgument},
		{"filesystem multi-writer", func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = mnmwFS.VolumeCapabilities }, codes.InvalidArgument},
		{"unknown parameter", func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"fsType": "ext4"} }, codes.InvalidArgument},
		{"unknown storage node", func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"storageNodes": "s9"} }, codes.InvalidArgument},
		{"mutable parameters", func(r *csi.CreateVolumeRequest) { r.MutableParameters = map[string]string{"iops": "1"} }, codes.InvalidArgument},
		{"rounding exceeds limit", func(r *csi.CreateVolumeRequest) {
			r.CapacityRange = &csi.CapacityRange{RequiredBytes: 5*mib + 1, LimitBytes: 5*mib + 2}
		}, codes.OutOfRange},
		{"too large for the pool", func(r *csi.CreateVolumeRequest) { r.CapacityRange.RequiredBytes = 200 * gib }, codes.ResourceExhausted},
		{"missing source snapshot", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "s1/snap-00000000000000000000000000000000"}}}
		}, codes.NotFound},
		{"malformed source snapshot", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "non-existing-snapshot-id"}}}
		}, codes.NotFound},
		{"source volume on an unknown storage node", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "s9/vol-00000000000000000000000000000000"}}}
		}, codes.NotFound},
		{"missing source volume", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "s1/vol-00000000000000000000000000000000"}}}
		}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := createReq("pvc-1", gib)
			tc.mod(req)
			_, err := f.c.CreateVolume(context.Background(), req)
			wantCode(t, err, tc.code)
		})
	}
	if _, err := f.c.CreateVolume(context.Background(), mnmwFS); err == nil || !strings.Contains(err.Error(), "volumeMode: Block") {
		t.Errorf("multi-writer file system error %v does not say how to fix it", err)
	}
}

func TestCreateVolumeIsIdempotent(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib, topology: map[string]string{"zone": "a"}}, nodeSpec{name: "s2", bytes: 100 * gib})
	first := f.mustCreate(t, createReq("pvc-1", gib))
	if storageNodeOf(t, first.VolumeId) != "s1" {
		t.Fatalf("first placed on %s, want s1 (equal room, first by name)", first.VolumeId)
	}
	// s2 has more room now: a retry must still find the volume on s1, not create a second.
	again := f.mustCreate(t, createReq("pvc-1", gib))
	if again.VolumeId != first.VolumeId || again.CapacityBytes != first.CapacityBytes {
		t.Fatalf("retry gave %v, first %v", again, first)
	}
	if _, dup := f.agents["s2"].Volume(agentapi.VolumeID("pvc-1")); dup {
		t.Fatal("retry created a duplicate on s2")
	}

	for _, tc := range []struct {
		name string
		mod  func(*csi.CreateVolumeRequest)
	}{
		{"different size", func(r *csi.CreateVolumeRequest) { r.CapacityRange.RequiredBytes = 2 * gib }},
		{"storageNodes excludes its node", func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"storageNodes": "s2"} }},
		{"requisite topology excludes its node", func(r *csi.CreateVolumeRequest) {
			r.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"zone": "b"}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := createReq("pvc-1", gib)
			tc.mod(req)
			_, err := f.c.CreateVolume(context.Background(), req)
			wantCode(t, err, codes.AlreadyExists)
		})
	}
}

// A retry finds the volume on the node that answers while another is silent: the name
// exists, so there is nothing to duplicate.
func TestCreateVolumeRetryFindsItsNodeWhileAnotherIsSilent(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 50 * gib})
	first := f.mustCreate(t, createReq("pvc-1", gib))
	f.agents["s2"].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
	if vol := f.mustCreate(t, createReq("pvc-1", gib)); vol.VolumeId != first.VolumeId {
		t.Fatalf("retry gave %s, first %s", vol.VolumeId, first.VolumeId)
	}
}

func TestCreateVolumePlacement(t *testing.T) {
	zoneA, zoneB := map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
	seg := func(kv ...string) *csi.Topology {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &csi.Topology{Segments: m}
	}
	nodes := []nodeSpec{
		{name: "a1", bytes: 10 * gib, topology: zoneA},
		{name: "a2", bytes: 20 * gib, topology: zoneA},
		{name: "b1", bytes: 30 * gib, topology: zoneB},
		{name: "any", bytes: 5 * gib},
	}
	for _, tc := range []struct {
		name   string
		params map[string]string
		topo   *csi.TopologyRequirement
		size   int64
		down   []string
		want   string
		code   codes.Code
	}{
		{name: "most available capacity", want: "b1"},
		{name: "storageNodes parameter", params: map[string]string{"storageNodes": "a1,any"}, want: "a1"},
		{name: "requisite zone a", topo: &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("zone", "a", "host", "w1")}}, want: "a2"},
		{name: "unlabelled node matches any requisite", topo: &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("zone", "c")}}, want: "any"},
		{name: "segment without the key does not match a labelled node", topo: &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("rack", "r1")}}, want: "any"},
		{
			name: "preferred before capacity",
			topo: &csi.TopologyRequirement{
				Requisite: []*csi.Topology{seg("zone", "a"), seg("zone", "b")},
				Preferred: []*csi.Topology{seg("zone", "a"), seg("zone", "b")},
			},
			want: "a2",
		},
		{
			name: "next preferred when the first has no room",
			topo: &csi.TopologyRequirement{Preferred: []*csi.Topology{seg("zone", "a"), seg("zone", "b")}},
			size: 25 * gib, want: "b1",
		},
		{name: "a node that may hold the name does not answer", down: []string{"b1"}, code: codes.Unavailable},
		{name: "storageNodes and topology disjoint", params: map[string]string{"storageNodes": "b1"}, topo: &csi.TopologyRequirement{Requisite: []*csi.Topology{seg("zone", "a")}}, code: codes.ResourceExhausted},
		{name: "no room anywhere", size: 40 * gib, code: codes.ResourceExhausted},
		{name: "no candidate answers", params: map[string]string{"storageNodes": "a1,a2"}, down: []string{"a1", "a2"}, code: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nodes...)
			for _, d := range tc.down {
				f.agents[d].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
			}
			size := tc.size
			if size == 0 {
				size = gib
			}
			req := createReq("pvc-1", size)
			req.Parameters = tc.params
			req.AccessibilityRequirements = tc.topo
			resp, err := f.c.CreateVolume(context.Background(), req)
			wantCode(t, err, tc.code)
			if err == nil && storageNodeOf(t, resp.GetVolume().GetVolumeId()) != tc.want {
				t.Fatalf("placed on %s, want %s", storageNodeOf(t, resp.GetVolume().GetVolumeId()), tc.want)
			}
		})
	}
}

// While the storage node holding a name is silent, a retried create must neither place the
// name elsewhere (a second volume) nor answer with another ID; once it answers, the retry
// finds the first volume. The same holds for snapshots.
func TestCreateNeverDuplicatesWhileAHolderIsSilent(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 50 * gib})
	first := f.mustCreate(t, createReq("pvc-1", gib))
	if storageNodeOf(t, first.VolumeId) != "s1" {
		t.Fatalf("first placed on %s, want s1 (most room)", first.VolumeId)
	}
	snap := f.mustSnapshot(t, "snap-1", first.VolumeId)
	other := f.mustCreate(t, &csi.CreateVolumeRequest{Name: "pvc-2", CapacityRange: &csi.CapacityRange{RequiredBytes: gib},
		VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"storageNodes": "s2"}})

	f.agents["s1"].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
	_, err := f.c.CreateVolume(context.Background(), createReq("pvc-1", gib))
	wantCode(t, err, codes.Unavailable)
	if !strings.Contains(err.Error(), "s1") || !strings.Contains(err.Error(), "retry") {
		t.Errorf("error %q does not name the silent node or say what to do", err)
	}
	// A snapshot of a volume on s2 under a name s1 may hold: also refused.
	_, err = f.c.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: other.VolumeId})
	wantCode(t, err, codes.Unavailable)
	if _, dup := f.agents["s2"].Volume(agentapi.VolumeID("pvc-1")); dup {
		t.Fatal("a retry while s1 was silent created pvc-1 on s2")
	}
	if _, dup := f.agents["s2"].Snapshot(agentapi.SnapshotID("snap-1")); dup {
		t.Fatal("a retry while s1 was silent created snap-1 on s2")
	}

	f.agents["s1"].SetError(fakeagent.AllMethods, nil)
	again := f.mustCreate(t, createReq("pvc-1", gib))
	if again.VolumeId != first.VolumeId {
		t.Fatalf("ID changed across the outage: %s, then %s", first.VolumeId, again.VolumeId)
	}
	_, err = f.c.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: other.VolumeId})
	wantCode(t, err, codes.AlreadyExists)
	if again := f.mustSnapshot(t, "snap-1", first.VolumeId); again.SnapshotId != snap.SnapshotId {
		t.Fatalf("snapshot ID changed across the outage: %s, then %s", snap.SnapshotId, again.SnapshotId)
	}
}

// Placement fits a volume by what the agent would take (its maximum volume size, the
// overcommit headroom) and prefers the node with the most space physically left; a pool at
// its fill level takes nothing.
func TestCreateVolumePlacementUsesPhysicalTruth(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "thin", bytes: 100 * gib}, nodeSpec{name: "roomy", bytes: 50 * gib}, nodeSpec{name: "full", bytes: 200 * gib})
	f.agents["thin"].SetUsage(85, 0) // 5 GiB physically left below 90%
	f.agents["full"].SetUsage(95, 0)
	for _, tc := range []struct {
		size int64
		want string
	}{{10 * gib, "roomy"}, {60 * gib, "thin"}} {
		vol := f.mustCreate(t, createReq(fmt.Sprintf("pvc-%d", tc.size/gib), tc.size))
		if got := storageNodeOf(t, vol.VolumeId); got != tc.want {
			t.Errorf("%d GiB placed on %s, want %s", tc.size/gib, got, tc.want)
		}
	}
	_, err := f.c.CreateVolume(context.Background(), createReq("pvc-big", 150*gib))
	wantCode(t, err, codes.ResourceExhausted)
}

func TestCreateVolumeTriesTheNextNodeWhenTheAgentIsFull(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 50 * gib})
	f.agents["s1"].SetError("CreateVolume", status.Error(codes.ResourceExhausted, "thin pool metadata full"))
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	if storageNodeOf(t, vol.VolumeId) != "s2" {
		t.Fatalf("placed on %s, want s2", vol.VolumeId)
	}
	f.agents["s2"].SetError("CreateVolume", status.Error(codes.ResourceExhausted, "full"))
	_, err := f.c.CreateVolume(context.Background(), createReq("pvc-2", gib))
	wantCode(t, err, codes.ResourceExhausted)
}

func TestCreateVolumeFromSourcesLandsOnTheSourceNode(t *testing.T) {
	zoneA, zoneB := map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
	f := newFixture(t, nodeSpec{name: "small", bytes: 10 * gib, topology: zoneA}, nodeSpec{name: "big", bytes: 100 * gib, topology: zoneB})
	src := f.mustCreate(t, &csi.CreateVolumeRequest{Name: "prod", CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib},
		VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"storageNodes": "small"}})
	snap := f.mustSnapshot(t, "snap-1", src.VolumeId)
	if storageNodeOf(t, snap.SnapshotId) != "small" || snap.SourceVolumeId != src.VolumeId || !snap.ReadyToUse {
		t.Fatalf("snapshot %v", snap)
	}
	fromSnap := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.SnapshotId}}}
	fromVol := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.VolumeId}}}

	for _, tc := range []struct {
		name   string
		source *csi.VolumeContentSource
		mod    func(*csi.CreateVolumeRequest)
		code   codes.Code
	}{
		{name: "restore", source: fromSnap},
		{name: "clone", source: fromVol},
		{name: "restore without a size takes the snapshot's", source: fromSnap, mod: func(r *csi.CreateVolumeRequest) { r.CapacityRange = nil }},
		{name: "storageNodes excludes the source", source: fromVol, mod: func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"storageNodes": "big"} }, code: codes.InvalidArgument},
		{name: "topology excludes the source", source: fromSnap, mod: func(r *csi.CreateVolumeRequest) {
			r.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: zoneB}}}
		}, code: codes.ResourceExhausted},
		{name: "limit below the source size", source: fromSnap, mod: func(r *csi.CreateVolumeRequest) { r.CapacityRange = &csi.CapacityRange{LimitBytes: gib} }, code: codes.OutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := createReq("clone-"+strings.ReplaceAll(tc.name, " ", "-"), gib)
			req.VolumeContentSource = tc.source
			if tc.mod != nil {
				tc.mod(req)
			}
			resp, err := f.c.CreateVolume(context.Background(), req)
			wantCode(t, err, tc.code)
			if err != nil {
				return
			}
			v := resp.GetVolume()
			if storageNodeOf(t, v.VolumeId) != "small" {
				t.Errorf("placed on %s, want the source's node", v.VolumeId)
			}
			if v.CapacityBytes != 2*gib {
				t.Errorf("capacity %d, want the source's 2 GiB", v.CapacityBytes)
			}
			if v.ContentSource == nil {
				t.Error("content source not returned")
			}
		})
	}
}

// The controller and the node accept the same file system names (contract.ParseCapability):
// "XFS" is xfs on both sides (see the node's TestStageFormatsXFSSpelledInUpperCase).
func TestCreateVolumeAcceptsAFileSystemInUpperCase(t *testing.T) {
	req := createReq("pvc-xfs", gib)
	req.VolumeCapabilities = []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "XFS")}
	oneNode(t).mustCreate(t, req)
}

// The controller adds no round trip the agent's answer already covers: with one storage node
// CreateVolume is one agent call (the agent's create is idempotent by name and refuses what
// does not fit); with several, one survey per node (existence and capacity together), then
// the create.
func TestCreateVolumeMakesNoRoundTripTheAgentCovers(t *testing.T) {
	one := oneNode(t)
	one.mustCreate(t, createReq("pvc-1", gib))
	one.mustCreate(t, createReq("pvc-1", gib)) // a retry
	if got := one.agents["s1"].Calls(); !slices.Equal(got, []string{"CreateVolume", "CreateVolume"}) {
		t.Fatalf("one storage node: agent calls %v, want only CreateVolume", got)
	}

	two := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 50 * gib})
	two.mustCreate(t, createReq("pvc-1", gib))
	if got := two.agents["s1"].Calls(); !slices.Equal(got, []string{"GetCapacity", "CreateVolume"}) {
		t.Fatalf("two storage nodes: agent s1 calls %v, want one survey and the create", got)
	}
	if got := two.agents["s2"].Calls(); !slices.Equal(got, []string{"GetCapacity"}) {
		t.Fatalf("two storage nodes: agent s2 calls %v, want one survey", got)
	}
}

// Only a volume created empty reads zeros where never written; the node lets mkfs rely on it.
func TestVolumeContextSaysZeroedOnlyForEmptyVolumes(t *testing.T) {
	f := oneNode(t)
	empty := f.mustCreate(t, createReq("pvc-1", gib))
	if empty.VolumeContext[contract.ContextZeroed] != "true" {
		t.Fatalf("empty volume's context %v, want zeroed=true", empty.VolumeContext)
	}
	clone := createReq("pvc-2", gib)
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: empty.VolumeId}}}
	if got := f.mustCreate(t, clone).VolumeContext; got[contract.ContextZeroed] != "" {
		t.Fatalf("clone's context %v, want no zeroed key", got)
	}
	bad := createReq("pvc-3", gib)
	bad.Parameters = map[string]string{contract.ContextZeroed: "true"}
	_, err := f.c.CreateVolume(context.Background(), bad)
	wantCode(t, err, codes.InvalidArgument)
}
