package controller

import (
	"context"
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

func publishReq(volumeID, node string, c *csi.VolumeCapability) *csi.ControllerPublishVolumeRequest {
	return &csi.ControllerPublishVolumeRequest{VolumeId: volumeID, NodeId: node, VolumeCapability: c}
}

func TestControllerPublishVolumeReturnsTheConnection(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	req := publishReq(vol.VolumeId, nodeID("w1"), snw)
	req.VolumeContext = vol.VolumeContext
	resp, err := f.c.ControllerPublishVolume(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	pc := resp.GetPublishContext()
	av, _ := f.agents["s1"].Volume(agentapi.VolumeID("pvc-1"))
	if pc[contract.PublishSubsysNQN] == "" || pc[contract.PublishNSUUID] != av.Uuid || pc[contract.PublishTransport] != "tcp" {
		t.Errorf("publish context %v", pc)
	}
	if pc[contract.PublishPortals] != "192.0.2.1:4420,192.0.2.2:4420" {
		t.Errorf("portals %q", pc[contract.PublishPortals])
	}
	if _, err := contract.ParsePortals(pc[contract.PublishPortals]); err != nil {
		t.Errorf("portals do not parse: %v", err)
	}
	if len(av.Hosts) != 1 || av.Hosts[0].NodeId != nodeID("w1") {
		t.Errorf("agent hosts %v", av.Hosts)
	}
	// Idempotent.
	again, err := f.c.ControllerPublishVolume(context.Background(), req)
	if err != nil || !equalMaps(again.GetPublishContext(), pc) {
		t.Fatalf("second publish = %v, %v", again, err)
	}
	// RDMA from the volume context.
	req.VolumeContext = map[string]string{"transport": "rdma"}
	resp, err = f.c.ControllerPublishVolume(context.Background(), req)
	if err != nil || resp.GetPublishContext()[contract.PublishTransport] != "rdma" || resp.GetPublishContext()[contract.PublishPortals] != "198.51.100.1:4420" {
		t.Fatalf("rdma publish = %v, %v", resp, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestControllerPublishVolumeErrors(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	shared := f.mustCreate(t, createReq("pvc-2", gib))
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, nodeID("w1"), snw)); err != nil {
		t.Fatal(err)
	}
	mnmw := blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(shared.VolumeId, nodeID("w1"), mnmw)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *csi.ControllerPublishVolumeRequest
		code codes.Code
	}{
		{"no volume ID", publishReq("", nodeID("w1"), snw), codes.InvalidArgument},
		{"no node ID", publishReq(vol.VolumeId, "", snw), codes.InvalidArgument},
		{"no capability", publishReq(vol.VolumeId, nodeID("w1"), nil), codes.InvalidArgument},
		{"filesystem multi-writer", publishReq(vol.VolumeId, nodeID("w1"), mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")), codes.InvalidArgument},
		{"bad transport", &csi.ControllerPublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: nodeID("w1"), VolumeCapability: snw, VolumeContext: map[string]string{"transport": "fc"}}, codes.InvalidArgument},
		{"malformed volume ID", publishReq("fake-vol-id", nodeID("w1"), snw), codes.NotFound},
		{"unknown volume", publishReq("s1/vol-00000000000000000000000000000000", nodeID("w1"), snw), codes.NotFound},
		{"unknown storage node", publishReq("s9/vol-00000000000000000000000000000000", nodeID("w1"), snw), codes.NotFound},
		{"node does not exist", publishReq(vol.VolumeId, "fake-node-id", snw), codes.NotFound},
		{"single-node volume on another node", publishReq(vol.VolumeId, nodeID("w2"), snw), codes.FailedPrecondition},
		{"single-node-multi-writer is one node too", publishReq(vol.VolumeId, nodeID("w2"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, "")), codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.ControllerPublishVolume(context.Background(), tc.req)
			wantCode(t, err, tc.code)
		})
	}
	_, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, nodeID("w2"), snw))
	if !strings.Contains(status.Convert(err).Message(), nodeID("w1")) {
		t.Errorf("message %q does not name the node the volume is published to", status.Convert(err).Message())
	}
	// Multi-node access may add nodes.
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(shared.VolumeId, nodeID("w2"), mnmw)); err != nil {
		t.Fatalf("multi-node publish to a second node: %v", err)
	}
	// The agent refuses a host NQN that another node ID already uses.
	nqn := strings.SplitN(nodeID("w1"), "/", 2)[1]
	_, err = f.c.ControllerPublishVolume(context.Background(), publishReq(shared.VolumeId, contract.NodeID("impostor", nqn), mnmw))
	wantCode(t, err, codes.FailedPrecondition)
}

func TestControllerUnpublishVolume(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	mnmw := blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	for _, n := range []string{"w1", "w2", "w3"} {
		if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, nodeID(n), mnmw)); err != nil {
			t.Fatal(err)
		}
	}
	hosts := func() []string {
		av, _ := f.agents["s1"].Volume(agentapi.VolumeID("pvc-1"))
		return publishedNodeIDs(av)
	}
	unpublish := func(volumeID, node string) error {
		_, err := f.c.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: volumeID, NodeId: node})
		return err
	}
	if err := unpublish(vol.VolumeId, nodeID("w1")); err != nil {
		t.Fatal(err)
	}
	if h := hosts(); len(h) != 2 || slices.Contains(h, nodeID("w1")) {
		t.Fatalf("hosts after unpublishing w1: %v", h)
	}
	for name, tc := range map[string]struct{ volume, node string }{
		"again":               {vol.VolumeId, nodeID("w1")},
		"malformed node ID":   {vol.VolumeId, "fake-node-id"},
		"malformed volume ID": {"fake-vol-id", nodeID("w1")},
		"unknown volume":      {"s1/vol-00000000000000000000000000000000", nodeID("w1")},
	} {
		if err := unpublish(tc.volume, tc.node); err != nil {
			t.Errorf("%s: %v, want OK", name, err)
		}
	}
	// The storage node may still export it, and this controller cannot revoke: never OK.
	wantCode(t, unpublish("s9/vol-00000000000000000000000000000000", nodeID("w1")), codes.FailedPrecondition)
	// Node IDs that publish refuses are never given access, so unpublishing them is OK.
	for _, bad := range []string{nodeID("w9") + "\nrw", "W9/" + strings.SplitN(nodeID("w9"), "/", 2)[1], "w9/nqn.a b", nodeID("w9") + "\x00"} {
		_, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, bad, mnmw))
		wantCode(t, err, codes.NotFound)
		if err := unpublish(vol.VolumeId, bad); err != nil {
			t.Errorf("unpublish %q: %v, want OK", bad, err)
		}
	}
	if h := hosts(); len(h) != 2 {
		t.Fatalf("hosts after refused publishes: %v", h)
	}
	// No node ID: from every node.
	if err := unpublish(vol.VolumeId, ""); err != nil {
		t.Fatal(err)
	}
	if h := hosts(); len(h) != 0 {
		t.Fatalf("hosts after unpublishing from all: %v", h)
	}
	wantCode(t, unpublish("", nodeID("w1")), codes.InvalidArgument)
	f.agents["s1"].SetError("UnpublishVolume", status.Error(codes.Unavailable, "down"))
	wantCode(t, unpublish(vol.VolumeId, nodeID("w1")), codes.Unavailable)
}

func TestDeleteVolume(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	del := func(id string) error {
		_, err := f.c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id})
		return err
	}
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, nodeID("w1"), snw)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, del(vol.VolumeId), codes.FailedPrecondition)
	if _, err := f.c.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: nodeID("w1")}); err != nil {
		t.Fatal(err)
	}
	f.agents["s1"].SetError("DeleteVolume", status.Error(codes.Unavailable, "down"))
	wantCode(t, del(vol.VolumeId), codes.Unavailable)
	f.agents["s1"].SetError("DeleteVolume", nil)
	for _, id := range []string{vol.VolumeId, vol.VolumeId, "fake-vol-id", "s9/vol-00000000000000000000000000000000"} {
		if err := del(id); err != nil {
			t.Errorf("DeleteVolume(%s) = %v, want OK", id, err)
		}
	}
	if _, ok := f.agents["s1"].Volume(agentapi.VolumeID("pvc-1")); ok {
		t.Error("volume still on the agent")
	}
	wantCode(t, del(""), codes.InvalidArgument)
}

func TestControllerExpandVolume(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	expand := func(id string, r *csi.CapacityRange, c *csi.VolumeCapability) (*csi.ControllerExpandVolumeResponse, error) {
		return f.c.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: r, VolumeCapability: c})
	}
	resp, err := expand(vol.VolumeId, &csi.CapacityRange{RequiredBytes: 2*gib + 1}, snw)
	if err != nil || resp.CapacityBytes != 2*gib+mib || !resp.NodeExpansionRequired {
		t.Fatalf("expand filesystem volume = %v, %v", resp, err)
	}
	resp, err = expand(vol.VolumeId, &csi.CapacityRange{RequiredBytes: 3 * gib}, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER))
	if err != nil || resp.CapacityBytes != 3*gib || resp.NodeExpansionRequired {
		t.Fatalf("expand block volume = %v, %v", resp, err)
	}
	// Smaller or equal requests keep the size: idempotent, never a shrink.
	resp, err = expand(vol.VolumeId, &csi.CapacityRange{RequiredBytes: gib}, nil)
	if err != nil || resp.CapacityBytes != 3*gib || !resp.NodeExpansionRequired {
		t.Fatalf("expand to a smaller size = %v, %v", resp, err)
	}
	for _, tc := range []struct {
		name string
		id   string
		r    *csi.CapacityRange
		c    *csi.VolumeCapability
		code codes.Code
	}{
		{"no ID", "", &csi.CapacityRange{RequiredBytes: gib}, nil, codes.InvalidArgument},
		{"no range", vol.VolumeId, nil, nil, codes.InvalidArgument},
		{"bad capability", vol.VolumeId, &csi.CapacityRange{RequiredBytes: 4 * gib}, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""), codes.InvalidArgument},
		{"unknown volume", "s1/vol-00000000000000000000000000000000", &csi.CapacityRange{RequiredBytes: 4 * gib}, nil, codes.NotFound},
		{"malformed ID", "fake", &csi.CapacityRange{RequiredBytes: 4 * gib}, nil, codes.NotFound},
		{"limit below current size", vol.VolumeId, &csi.CapacityRange{RequiredBytes: gib, LimitBytes: 2 * gib}, nil, codes.OutOfRange},
		{"no room", vol.VolumeId, &csi.CapacityRange{RequiredBytes: 500 * gib}, nil, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := expand(tc.id, tc.r, tc.c)
			wantCode(t, err, tc.code)
		})
	}
}

func TestControllerGetVolume(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib, topology: map[string]string{"zone": "a"}})
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, nodeID("w1"), snw)); err != nil {
		t.Fatal(err)
	}
	resp, err := f.c.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: vol.VolumeId})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVolume().GetVolumeId() != vol.VolumeId || resp.GetVolume().GetCapacityBytes() != gib || len(resp.GetVolume().GetAccessibleTopology()) != 1 {
		t.Errorf("volume %v", resp.GetVolume())
	}
	if got := resp.GetStatus().GetPublishedNodeIds(); len(got) != 1 || got[0] != nodeID("w1") {
		t.Errorf("published node IDs %v", got)
	}
	for id, code := range map[string]codes.Code{
		"":     codes.InvalidArgument,
		"fake": codes.NotFound,
		"s1/vol-00000000000000000000000000000000": codes.NotFound,
	} {
		_, err := f.c.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: id})
		wantCode(t, err, code)
	}
}

// A host NQN that one node presented on one storage node cannot be presented by another node
// on another storage node: two nodes sharing an NQN would share access.
func TestPublishRefusesAHostNQNSharedAcrossStorageNodes(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	mk := func(name, node string) *csi.Volume {
		return f.mustCreate(t, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: gib},
			VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"storageNodes": node}})
	}
	a, b := mk("a", "s1"), mk("b", "s2")
	w1 := nodeID("w1")
	nqn := strings.SplitN(w1, "/", 2)[1]
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(a.VolumeId, w1, snw)); err != nil {
		t.Fatal(err)
	}
	_, err := f.c.ControllerPublishVolume(context.Background(), publishReq(b.VolumeId, "w2/"+nqn, snw))
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "w1") || !strings.Contains(err.Error(), "s1") {
		t.Errorf("error %q does not name the node and storage node that hold the NQN", err)
	}
	// The node that owns the NQN publishes on the other storage node as usual.
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(b.VolumeId, w1, snw)); err != nil {
		t.Fatal(err)
	}
	// A silent storage node cannot say; publishing goes on.
	c := mk("c", "s2")
	f.agents["s1"].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(c.VolumeId, nodeID("w3"), snw)); err != nil {
		t.Fatalf("publish with another storage node silent: %v", err)
	}
}

func TestPublishPassesTheNodesDHCHAPKeys(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib})
	v := f.mustCreate(t, &csi.CreateVolumeRequest{Name: "a", CapacityRange: &csi.CapacityRange{RequiredBytes: gib},
		VolumeCapabilities: []*csi.VolumeCapability{snw}})
	w1 := nodeID("w1")
	nqn := strings.SplitN(w1, "/", 2)[1]
	secrets := map[string]string{"host.w1": "DHHC-1:00:aG9zdC13MQ==:", "host.w2": "DHHC-1:00:aG9zdC13Mg==:", "ctrl": "DHHC-1:00:Y3RybA==:"}
	req := publishReq(v.VolumeId, w1, snw)
	req.Secrets = secrets
	resp, err := f.c.ControllerPublishVolume(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if host, ctrl := f.agents["s1"].HostKeys(nqn); host != secrets["host.w1"] || ctrl != secrets["ctrl"] {
		t.Errorf("the agent got keys %q, %q; want w1's host key and the controller key", host, ctrl)
	}
	if resp.GetPublishContext()["dhchap"] != "true" {
		t.Errorf("publish context %v does not tell the node to authenticate", resp.GetPublishContext())
	}
	// A Secret without the node's key: the operator must add it.
	req = publishReq(v.VolumeId, nodeID("w3"), snw)
	req.Secrets = secrets
	_, err = f.c.ControllerPublishVolume(context.Background(), req)
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "host.w3") || strings.Contains(err.Error(), "aG9zdC") {
		t.Errorf("error %q: want it to name host.w3 and quote no key", err)
	}
}
