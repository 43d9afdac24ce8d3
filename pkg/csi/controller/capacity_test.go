package controller

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
)

func TestGetCapacity(t *testing.T) {
	zoneA, zoneB := map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
	f := newFixture(t,
		nodeSpec{name: "a1", bytes: 10 * gib, topology: zoneA},
		nodeSpec{name: "a2", bytes: 20 * gib, topology: zoneA},
		nodeSpec{name: "b1", bytes: 30 * gib, topology: zoneB},
		nodeSpec{name: "any", bytes: 5 * gib},
	)
	f.mustCreate(t, &csi.CreateVolumeRequest{Name: "used", CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib},
		VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"storageNodes": "a2"}})
	for _, tc := range []struct {
		name      string
		req       *csi.GetCapacityRequest
		down      string
		available int64
		maxVolume int64 // -1: not reported
	}{
		{"everything", &csi.GetCapacityRequest{}, "", 63 * gib, 30 * gib},
		{"zone a", &csi.GetCapacityRequest{AccessibleTopology: &csi.Topology{Segments: map[string]string{"zone": "a", "host": "w1"}}}, "", 33 * gib, 18 * gib},
		{"zone b", &csi.GetCapacityRequest{AccessibleTopology: &csi.Topology{Segments: zoneB}}, "", 35 * gib, 30 * gib},
		{"storageNodes", &csi.GetCapacityRequest{Parameters: map[string]string{"storageNodes": "a1,b1"}}, "", 40 * gib, 30 * gib},
		{"storageNodes and zone", &csi.GetCapacityRequest{Parameters: map[string]string{"storageNodes": "a1,b1"}, AccessibleTopology: &csi.Topology{Segments: zoneA}}, "", 10 * gib, 10 * gib},
		{"unreachable node counts as empty", &csi.GetCapacityRequest{}, "b1", 33 * gib, 18 * gib},
		{"unsupported capability", &csi.GetCapacityRequest{VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")}}, "", 0, -1},
		{"block multi-writer", &csi.GetCapacityRequest{VolumeCapabilities: []*csi.VolumeCapability{blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}}, "", 63 * gib, 30 * gib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.down != "" {
				f.agents[tc.down].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
				defer f.agents[tc.down].SetError(fakeagent.AllMethods, nil)
			}
			resp, err := f.c.GetCapacity(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetAvailableCapacity() != tc.available {
				t.Errorf("available %d GiB, want %d GiB", resp.GetAvailableCapacity()/gib, tc.available/gib)
			}
			switch {
			case tc.maxVolume < 0 && resp.GetMaximumVolumeSize() != nil:
				t.Errorf("maximum volume size %v, want none", resp.GetMaximumVolumeSize())
			case tc.maxVolume >= 0 && resp.GetMaximumVolumeSize().GetValue() != tc.maxVolume:
				t.Errorf("maximum volume size %d, want %d", resp.GetMaximumVolumeSize().GetValue(), tc.maxVolume)
			}
			if tc.maxVolume >= 0 && resp.GetMinimumVolumeSize().GetValue() != SizeUnitBytes {
				t.Errorf("minimum volume size %v", resp.GetMinimumVolumeSize())
			}
		})
	}
	for _, params := range []map[string]string{{"bogus": "1"}, {"storageNodes": "s9"}} {
		_, err := f.c.GetCapacity(context.Background(), &csi.GetCapacityRequest{Parameters: params})
		wantCode(t, err, codes.InvalidArgument)
	}
}

func TestVolumeHealth(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	v1 := f.mustCreate(t, createReq("pvc-1", gib)) // s1
	v2 := f.mustCreate(t, createReq("pvc-2", gib)) // s2
	health := func(id string) []*csi.VolumeHealth_VolumeHealthEntry {
		t.Helper()
		resp, err := f.c.ControllerGetVolumeHealth(context.Background(), &csi.ControllerGetVolumeHealthRequest{VolumeId: id})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetVolumeHealth().GetVolumeId() != id {
			t.Fatalf("health of %q for %q", resp.GetVolumeHealth().GetVolumeId(), id)
		}
		return resp.GetVolumeHealth().GetHealthStatuses()
	}
	listed := func() map[string]int {
		t.Helper()
		resp, err := f.c.ControllerListVolumeHealth(context.Background(), &csi.ControllerListVolumeHealthRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, e := range resp.GetEntries() {
			out[e.GetVolumeId()] = len(e.GetHealthStatuses())
		}
		return out
	}

	if h := health(v1.VolumeId); len(h) != 0 {
		t.Errorf("healthy volume reports %v", h)
	}
	if l := listed(); len(l) != 0 {
		t.Errorf("healthy cluster lists %v", l)
	}

	f.agents["s1"].SetUsage(96, 97)
	h := health(v1.VolumeId)
	if len(h) != 2 || h[0].GetStatus() != csi.VolumeHealthErrorType_DEGRADED || h[0].GetReason() != ReasonPoolDataFull || h[1].GetReason() != ReasonPoolMetadataFull || h[0].GetMessage() == "" {
		t.Errorf("full pool health %v", h)
	}
	if l := listed(); len(l) != 1 || l[v1.VolumeId] != 2 {
		t.Errorf("list health %v, want only %s", l, v1.VolumeId)
	}

	f.agents["s2"].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
	if h := health(v2.VolumeId); len(h) != 1 || h[0].GetReason() != ReasonAgentUnreachable {
		t.Errorf("unreachable agent health %v", h)
	}
	if l := listed(); len(l) != 1 {
		t.Errorf("list health with s2 down %v", l)
	}

	for id, code := range map[string]codes.Code{"": codes.InvalidArgument, "fake": codes.NotFound, "s1/vol-00000000000000000000000000000000": codes.NotFound} {
		_, err := f.c.ControllerGetVolumeHealth(context.Background(), &csi.ControllerGetVolumeHealthRequest{VolumeId: id})
		wantCode(t, err, code)
	}
}
