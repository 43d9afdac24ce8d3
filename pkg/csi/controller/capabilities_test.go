package controller

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

func TestVolumeSize(t *testing.T) {
	rng := func(req, lim int64) *csi.CapacityRange {
		return &csi.CapacityRange{RequiredBytes: req, LimitBytes: lim}
	}
	for _, tc := range []struct {
		name  string
		r     *csi.CapacityRange
		floor int64
		want  int64
		code  codes.Code
	}{
		{"no range: default", nil, 0, gib, codes.OK},
		{"exact extent", rng(8*mib, 0), 0, 8 * mib, codes.OK},
		{"rounded up", rng(8*mib+1, 0), 0, 9 * mib, codes.OK},
		{"one byte", rng(1, 0), 0, mib, codes.OK},
		{"limit only, below default", rng(0, 10*mib+1), 0, 10 * mib, codes.OK},
		{"limit only, above default", rng(0, 2*gib), 0, gib, codes.OK},
		{"rounding exceeds limit", rng(5*mib+1, 5*mib+2), 0, 0, codes.OutOfRange},
		{"limit below one MiB", rng(0, mib/2), 0, 0, codes.OutOfRange},
		{"required above limit", rng(2*gib, gib), 0, 0, codes.InvalidArgument},
		{"negative", rng(-1, 0), 0, 0, codes.InvalidArgument},
		{"source larger than required", rng(gib, 0), 2 * gib, 2 * gib, codes.OK},
		{"source larger than limit", rng(gib, gib), 2 * gib, 0, codes.OutOfRange},
		{"huge", rng(1<<63-1, 0), 0, 0, codes.OutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := volumeSize(tc.r, tc.floor)
			wantCode(t, rpcerr.Status(err), tc.code)
			if got != tc.want {
				t.Fatalf("volumeSize = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestControllerGetCapabilities(t *testing.T) {
	resp, err := oneNode(t).c.ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[csi.ControllerServiceCapability_RPC_Type]bool{}
	for _, c := range resp.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
	} {
		if !got[want] {
			t.Errorf("missing capability %v", want)
		}
	}
	if got[csi.ControllerServiceCapability_RPC_MODIFY_VOLUME] {
		t.Error("MODIFY_VOLUME advertised but not implemented")
	}
}

func TestValidateVolumeCapabilities(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		req       *csi.ValidateVolumeCapabilitiesRequest
		code      codes.Code
		confirmed bool
	}{
		{"supported", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{snw}, VolumeContext: vol.VolumeContext}, codes.OK, true},
		{"block multi-writer", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}}, codes.OK, true},
		{"fs multi-writer", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")}}, codes.OK, false},
		{"unknown parameter", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"nope": "1"}}, codes.OK, false},
		{"no ID", &csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csi.VolumeCapability{snw}}, codes.InvalidArgument, false},
		{"no capabilities", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.VolumeId}, codes.InvalidArgument, false},
		{"malformed ID", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "fake-vol", VolumeCapabilities: []*csi.VolumeCapability{snw}}, codes.NotFound, false},
		{"unknown storage node", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "s9/vol-00000000000000000000000000000000", VolumeCapabilities: []*csi.VolumeCapability{snw}}, codes.NotFound, false},
		{"unknown volume", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "s1/vol-00000000000000000000000000000000", VolumeCapabilities: []*csi.VolumeCapability{snw}}, codes.NotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.c.ValidateVolumeCapabilities(ctx, tc.req)
			wantCode(t, err, tc.code)
			if (resp.GetConfirmed() != nil) != tc.confirmed {
				t.Fatalf("confirmed = %v, want %v (message %q)", resp.GetConfirmed(), tc.confirmed, resp.GetMessage())
			}
			if err == nil && !tc.confirmed && resp.GetMessage() == "" {
				t.Error("unconfirmed without a message")
			}
		})
	}
}
