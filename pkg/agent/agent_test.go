package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

const (
	gib   = int64(1) << 30
	hostA = "nqn.2014-08.org.nvmexpress:uuid:0f8e7c3a-0000-4000-8000-00000000000a"
	hostB = "nqn.2014-08.org.nvmexpress:uuid:0f8e7c3a-0000-4000-8000-00000000000b"
)

type env struct {
	srv    *Server
	pool   *fakePool
	fs     *nvmettest.FS
	target *nvmet.Target
	ctx    context.Context
}

func testConfig() Config {
	cfg := Config{
		NodeName: "sn1",
		Pool:     PoolConfig{Backend: BackendDMThin, MetadataDevice: "/dev/meta", DataDevice: "/dev/data", OvercommitRatio: 2},
		Portals: []PortalConfig{
			{ID: 1, Transport: "tcp", Address: "192.0.2.1"},
			{ID: 2, Transport: "tcp", Address: "192.0.2.2"},
			{ID: 3, Transport: "rdma", Address: "192.0.2.1"},
		},
		Listen: "unix:///run/test.sock",
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return cfg
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fs := nvmettest.New()
	cfg := testConfig()
	e := &env{fs: fs, ctx: context.Background()}
	e.pool = newFakePool(fs.AddDevice)
	e.target = &nvmet.Target{Root: fs.Root(), Prefix: cfg.NQNPrefix(), FS: fs}
	e.srv = New(cfg, e.pool, e.target)
	if err := e.srv.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

func (e *env) createVolume(t *testing.T, name string, size int64, src *agentapi.ContentSource) *agentapi.Volume {
	t.Helper()
	resp, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: name, SizeBytes: size, Source: src})
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", name, err)
	}
	return resp.Volume
}

func (e *env) publish(t *testing.T, id, host, node string, tr agentapi.Transport) *agentapi.PublishVolumeResponse {
	t.Helper()
	resp, err := e.srv.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: id, HostNqn: host, NodeId: node, Transport: tr})
	if err != nil {
		t.Fatalf("PublishVolume: %v", err)
	}
	return resp
}

func TestCreateVolumeIsIdempotentByName(t *testing.T) {
	e := newEnv(t)
	v1 := e.createVolume(t, "pvc-1", gib, nil)
	v2 := e.createVolume(t, "pvc-1", gib, nil)
	if v1.Id != v2.Id || v1.Uuid != v2.Uuid || v1.Id != agentapi.VolumeID("pvc-1") {
		t.Fatalf("repeat gave %+v, first %+v", v2, v1)
	}
	if v1.Uuid == "" || v1.SizeBytes != gib || v1.Name != "pvc-1" {
		t.Fatalf("volume %+v", v1)
	}
	_, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "pvc-1", SizeBytes: 2 * gib})
	wantCode(t, err, codes.AlreadyExists)
}

func TestCreateVolumeRejectsBadInput(t *testing.T) {
	e := newEnv(t)
	long := string(make([]byte, 129))
	for name, req := range map[string]*agentapi.CreateVolumeRequest{
		"no name":       {SizeBytes: gib},
		"long name":     {Name: long, SizeBytes: gib},
		"zero size":     {Name: "a"},
		"empty source":  {Name: "a", SizeBytes: gib, Source: &agentapi.ContentSource{}},
		"newline label": {Name: "a", SizeBytes: gib, Labels: map[string]string{"a\nb": "c"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.srv.CreateVolume(e.ctx, req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
}

func TestCreateVolumeRespectsOvercommit(t *testing.T) {
	e := newEnv(t) // 10 GiB pool, ratio 2: 20 GiB provisionable
	e.createVolume(t, "big", 16*gib, nil)
	_, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "more", SizeBytes: 5 * gib})
	wantCode(t, err, codes.ResourceExhausted)
	// A full pool still answers a repeated request for an existing volume.
	if v := e.createVolume(t, "big", 16*gib, nil); v.SizeBytes != 16*gib {
		t.Fatalf("repeat on a full pool: %+v", v)
	}
	if _, err := e.pool.Get(e.ctx, agentapi.VolumeID("more")); err == nil {
		t.Fatal("a refused volume was created")
	}
	c, err := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c.AvailableBytes != 4*gib || c.ProvisionedBytes != 16*gib || c.DataBytes != 10*gib {
		t.Fatalf("capacity %+v", c)
	}
}

func TestClonesAndSnapshots(t *testing.T) {
	e := newEnv(t)
	src := e.createVolume(t, "prod", gib, nil)
	snap, err := e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: src.Id})
	if err != nil {
		t.Fatal(err)
	}
	if s := snap.Snapshot; s.SourceVolumeId != src.Id || s.SizeBytes != gib || s.CreationTimeUnixNano == 0 {
		t.Fatalf("snapshot %+v", s)
	}
	again, err := e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: src.Id})
	if err != nil || again.Snapshot.Id != snap.Snapshot.Id {
		t.Fatalf("repeat CreateSnapshot = %v, %v", again, err)
	}
	other := e.createVolume(t, "other", gib, nil)
	_, err = e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: other.Id})
	wantCode(t, err, codes.AlreadyExists)
	_, err = e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "x", SourceVolumeId: agentapi.VolumeID("missing")})
	wantCode(t, err, codes.NotFound)

	fromSnap := &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: snap.Snapshot.Id}}
	clone := e.createVolume(t, "dev-1", 2*gib, fromSnap)
	if clone.SizeBytes != 2*gib || clone.GetSource().GetSnapshotId() != snap.Snapshot.Id || clone.Uuid == src.Uuid {
		t.Fatalf("clone %+v", clone)
	}
	if ce := e.pool.entry(clone.Id); ce.origin != snap.Snapshot.Id || ce.readOnly {
		t.Fatalf("clone %+v: want a writable thin snapshot of the snapshot", ce)
	}
	if se := e.pool.entry(snap.Snapshot.Id); !se.readOnly {
		t.Fatal("the snapshot is writable")
	}
	_, err = e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "dev-1", SizeBytes: 2 * gib})
	wantCode(t, err, codes.AlreadyExists) // same name, different source

	_, err = e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "tiny", SizeBytes: 4 << 20, Source: fromSnap})
	wantCode(t, err, codes.InvalidArgument)
	missing := &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: agentapi.SnapshotID("gone")}}
	_, err = e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "y", SizeBytes: gib, Source: missing})
	wantCode(t, err, codes.NotFound)

	fromVol := &agentapi.ContentSource{Source: &agentapi.ContentSource_VolumeId{VolumeId: src.Id}}
	if c := e.createVolume(t, "dev-2", gib, fromVol); c.GetSource().GetVolumeId() != src.Id {
		t.Fatalf("volume clone %+v", c)
	}
	// Snapshots and their sources can be deleted in any order: thin clones are independent.
	for _, id := range []string{snap.Snapshot.Id} {
		if _, err := e.srv.DeleteSnapshot(e.ctx, &agentapi.DeleteSnapshotRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.srv.DeleteVolume(e.ctx, &agentapi.DeleteVolumeRequest{Id: src.Id}); err != nil {
		t.Fatal(err)
	}
	_, err = e.srv.DeleteSnapshot(e.ctx, &agentapi.DeleteSnapshotRequest{Id: snap.Snapshot.Id})
	wantCode(t, err, codes.NotFound)
}

func TestFailedCloneLeavesNothingAndReleasesItsCapacity(t *testing.T) {
	e := newEnv(t) // 20 GiB provisionable
	src := e.createVolume(t, "prod", gib, nil)
	e.pool.fail["snapshot"] = errors.New("boom")
	fromVol := &agentapi.ContentSource{Source: &agentapi.ContentSource_VolumeId{VolumeId: src.Id}}
	_, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "c", SizeBytes: 2 * gib, Source: fromVol})
	wantCode(t, err, codes.Internal)
	if _, err := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: agentapi.VolumeID("c")}); status.Code(err) != codes.NotFound {
		t.Fatalf("the failed clone is known: %v", err)
	}
	c, _ := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{})
	if c.ProvisionedBytes != gib {
		t.Fatalf("provisioned %d after a failed clone, want %d: its reservation leaked", c.ProvisionedBytes, gib)
	}
}

func TestUnknownAndMalformedIDsAreNotFound(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"", "vol-xyz", "snap-" + agentapi.VolumeID("a")[4:], agentapi.VolumeID("nope")} {
		_, err := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: id})
		wantCode(t, err, codes.NotFound)
		_, err = e.srv.DeleteVolume(e.ctx, &agentapi.DeleteVolumeRequest{Id: id})
		wantCode(t, err, codes.NotFound)
		_, err = e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: id, SizeBytes: gib})
		wantCode(t, err, codes.NotFound)
		_, err = e.srv.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: id, HostNqn: hostA, NodeId: "n", Transport: agentapi.Transport_TRANSPORT_TCP})
		wantCode(t, err, codes.NotFound)
		if _, err := e.srv.UnpublishVolume(e.ctx, &agentapi.UnpublishVolumeRequest{VolumeId: id, HostNqn: hostA}); err != nil {
			t.Fatalf("UnpublishVolume(%q) = %v, want OK: nothing to revoke", id, err)
		}
	}
}

func TestPublishExportsToExactlyTheAllowedHosts(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	resp := e.publish(t, v.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)
	if resp.NamespaceUuid != v.Uuid || !strings.HasPrefix(resp.SubsystemNqn, "nqn.2026-11.io.nvmeof-csi:sn1:"+v.Id+":h") || len(resp.Portals) != 2 {
		t.Fatalf("publish response %+v", resp)
	}
	sub, err := e.target.Get(e.ctx, resp.SubsystemNqn)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sub.Hosts, []string{hostA}) || !slices.Equal(sub.Ports, []uint16{1, 2}) || sub.Namespace.UUID != v.Uuid {
		t.Fatalf("subsystem %+v", sub)
	}
	// Idempotent: the same subsystem.
	if again := e.publish(t, v.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP); again.SubsystemNqn != resp.SubsystemNqn {
		t.Fatalf("a repeated publish gave %s, first %s", again.SubsystemNqn, resp.SubsystemNqn)
	}
	// A second host over RDMA gets a subsystem of its own, allowing it alone; the volume's
	// rdma port is linked to both.
	respB := e.publish(t, v.Id, hostB, "w2/"+hostB, agentapi.Transport_TRANSPORT_RDMA)
	if respB.SubsystemNqn == resp.SubsystemNqn || respB.NamespaceUuid != v.Uuid {
		t.Fatalf("second host's publish %+v, first %+v", respB, resp)
	}
	sub, _ = e.target.Get(e.ctx, resp.SubsystemNqn)
	subB, _ := e.target.Get(e.ctx, respB.SubsystemNqn)
	if !slices.Equal(sub.Hosts, []string{hostA}) || !slices.Equal(sub.Ports, []uint16{1, 2, 3}) ||
		!slices.Equal(subB.Hosts, []string{hostB}) || !slices.Equal(subB.Ports, []uint16{1, 2, 3}) ||
		subB.Namespace.DevicePath != sub.Namespace.DevicePath || subB.Namespace.UUID != v.Uuid {
		t.Fatalf("subsystems after the second host: %+v and %+v", sub, subB)
	}
	got, _ := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: v.Id})
	if len(got.Volume.Hosts) != 2 {
		t.Fatalf("recorded hosts %v", got.Volume.Hosts)
	}

	_, err = e.srv.DeleteVolume(e.ctx, &agentapi.DeleteVolumeRequest{Id: v.Id})
	wantCode(t, err, codes.FailedPrecondition)

	// Revoking host A removes its subsystem and touches nothing of host B's.
	before := e.fs.Mutations()
	for range 2 {
		if _, err := e.srv.UnpublishVolume(e.ctx, &agentapi.UnpublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.target.Get(e.ctx, resp.SubsystemNqn); !errors.Is(err, nvmet.ErrNotFound) {
		t.Fatalf("host A's subsystem after its unpublish: %v", err)
	}
	if got, err := e.target.Get(e.ctx, respB.SubsystemNqn); err != nil || !reflect.DeepEqual(got, subB) {
		t.Fatalf("host B's subsystem changed when A was revoked: %+v, %v", got, err)
	}
	if n := e.fs.Mutations() - before; n == 0 {
		t.Fatal("nothing changed in configfs")
	}
	if _, err := e.srv.UnpublishVolume(e.ctx, &agentapi.UnpublishVolumeRequest{VolumeId: v.Id, HostNqn: hostB}); err != nil {
		t.Fatal(err)
	}
	if nqns, _ := e.target.NQNs(e.ctx); len(nqns) != 0 {
		t.Fatalf("subsystems after the last unpublish: %v", nqns)
	}
	if _, err := e.srv.DeleteVolume(e.ctx, &agentapi.DeleteVolumeRequest{Id: v.Id}); err != nil {
		t.Fatal(err)
	}
}

func TestPublishRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	tcp := agentapi.Transport_TRANSPORT_TCP
	for name, tc := range map[string]struct {
		req  *agentapi.PublishVolumeRequest
		code codes.Code
	}{
		"bad host nqn": {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: "host", NodeId: "n", Transport: tcp}, codes.InvalidArgument},
		"no node id":   {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, Transport: tcp}, codes.InvalidArgument},
		"no transport": {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "n"}, codes.InvalidArgument},
		// The lvm backend's host tag separates its fields with a newline.
		"newline in node id": {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "n\nrw", Transport: tcp}, codes.InvalidArgument},
		"NUL in node id":     {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "n\x00", Transport: tcp}, codes.InvalidArgument},
		"node id too long":   {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: strings.Repeat("n", 257), Transport: tcp}, codes.InvalidArgument},
		"node id not UTF-8":  {&agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "n\xff", Transport: tcp}, codes.InvalidArgument},
		"unknown volume":     {&agentapi.PublishVolumeRequest{VolumeId: agentapi.VolumeID("x"), HostNqn: hostA, NodeId: "n", Transport: tcp}, codes.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.srv.PublishVolume(e.ctx, tc.req)
			wantCode(t, err, tc.code)
		})
	}
}

func TestPublishRefusesAHostNQNSharedByTwoNodes(t *testing.T) {
	e := newEnv(t)
	v1 := e.createVolume(t, "a", gib, nil)
	v2 := e.createVolume(t, "b", gib, nil)
	e.publish(t, v1.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)
	_, err := e.srv.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: v2.Id, HostNqn: hostA, NodeId: "w2/" + hostA, Transport: agentapi.Transport_TRANSPORT_TCP})
	wantCode(t, err, codes.FailedPrecondition)
	if sub, err := e.target.Get(e.ctx, e.srv.hostSubsystemNQN(v2.Id, hostA)); err == nil {
		t.Fatalf("refused publish left subsystem %+v", sub)
	}
}

func TestPublishFailureTakesTheRecordBack(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	e.fs.SetHook(func(op, path string) error {
		if op == "symlink" {
			return errors.New("configfs says no")
		}
		return nil
	})
	_, err := e.srv.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "w1", Transport: agentapi.Transport_TRANSPORT_TCP})
	if err == nil {
		t.Fatal("publish succeeded although configfs failed")
	}
	e.fs.SetHook(nil)
	got, _ := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: v.Id})
	if len(got.Volume.Hosts) != 0 {
		t.Fatalf("hosts recorded after a failed publish: %v", got.Volume.Hosts)
	}
	if subs, _ := e.target.List(e.ctx); len(subs) != 0 {
		t.Fatalf("subsystems left after a failed publish: %+v", subs)
	}
}

func TestReconcileRebuildsConfigfsFromDurableState(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	idle := e.createVolume(t, "idle", gib, nil)
	resp := e.publish(t, v.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)

	// A reboot: configfs is empty again; a stale subsystem of ours and a foreign one appear.
	fs := nvmettest.New()
	for _, id := range []string{v.Id, idle.Id} {
		fs.AddDevice("/dev/vg/" + id)
	}
	e.target.FS = fs
	if err := e.srv.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	idleRec, _ := e.srv.idx.get(idle.Id)
	idleRec.Hosts = []pool.Host{{NQN: hostB}}
	stale := e.srv.subsystem(idleRec, hostB, "/dev/vg/"+idle.Id, []uint16{1})
	if err := e.target.EnsureSubsystem(e.ctx, stale); err != nil {
		t.Fatal(err)
	}
	// The per-volume subsystem an earlier release made for the published volume gives way to
	// the per-host one.
	legacy := e.srv.subsystem(idleRec, hostA, "/dev/vg/"+v.Id, []uint16{1})
	legacy.NQN = e.target.Prefix + v.Id
	legacy.Namespace.UUID = v.Uuid
	if err := e.target.EnsureSubsystem(e.ctx, legacy); err != nil {
		t.Fatal(err)
	}
	foreign := &nvmet.Target{Root: fs.Root(), Prefix: "nqn.2020-01.org.other:", FS: fs}
	if err := foreign.EnsureSubsystem(e.ctx, nvmet.Subsystem{NQN: "nqn.2020-01.org.other:x", Namespace: nvmet.Namespace{ID: 1, DevicePath: "/dev/vg/" + idle.Id, UUID: idle.Uuid}, Hosts: []string{hostB}, Ports: []uint16{2}}); err != nil {
		t.Fatal(err)
	}

	if err := e.srv.Reconcile(e.ctx); err != nil {
		t.Fatal(err)
	}
	subs, _ := e.target.List(e.ctx)
	if len(subs) != 1 || subs[0].NQN != resp.SubsystemNqn || !slices.Equal(subs[0].Hosts, []string{hostA}) {
		t.Fatalf("after reconcile: %+v", subs)
	}
	if _, err := foreign.Get(e.ctx, "nqn.2020-01.org.other:x"); err != nil {
		t.Fatalf("the foreign subsystem was touched: %v", err)
	}
	before := fs.Mutations()
	if err := e.srv.Reconcile(e.ctx); err != nil {
		t.Fatal(err)
	}
	if fs.Mutations() != before {
		t.Fatal("a second reconcile changed configfs")
	}
}

func TestExpandVolumeGrowsAndNeverShrinks(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	e.publish(t, v.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)
	resp, err := e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.Id, SizeBytes: 3 * gib})
	if err != nil || resp.Volume.SizeBytes != 3*gib {
		t.Fatalf("ExpandVolume = %v, %v", resp, err)
	}
	resp, err = e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.Id, SizeBytes: gib})
	if err != nil || resp.Volume.SizeBytes != 3*gib {
		t.Fatalf("shrink request = %v, %v; want the current size", resp, err)
	}
	_, err = e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.Id, SizeBytes: 100 * gib})
	wantCode(t, err, codes.ResourceExhausted)
}

func TestListsAreOrderedAndTyped(t *testing.T) {
	e := newEnv(t)
	a := e.createVolume(t, "a", gib, nil)
	e.createVolume(t, "b", gib, nil)
	if _, err := e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: a.Id}); err != nil {
		t.Fatal(err)
	}
	vols, _ := e.srv.ListVolumes(e.ctx, &agentapi.ListVolumesRequest{})
	snaps, _ := e.srv.ListSnapshots(e.ctx, &agentapi.ListSnapshotsRequest{})
	if len(vols.Volumes) != 2 || vols.Volumes[0].Id > vols.Volumes[1].Id || len(snaps.Snapshots) != 1 {
		t.Fatalf("volumes %v, snapshots %v", vols.Volumes, snaps.Snapshots)
	}
	info, _ := e.srv.Info(e.ctx, &agentapi.InfoRequest{})
	if info.NodeName != "sn1" || len(info.Portals) != 3 {
		t.Fatalf("info %+v", info)
	}
}

func TestPublishWithTheOtherReadOnlyModeIsAlreadyExists(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	req := &agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "w1/" + hostA, Transport: agentapi.Transport_TRANSPORT_TCP, ReadOnly: true}
	if _, err := e.srv.PublishVolume(e.ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.PublishVolume(e.ctx, req); err != nil {
		t.Fatalf("repeat: %v", err)
	}
	req.ReadOnly = false
	_, err := e.srv.PublishVolume(e.ctx, req)
	wantCode(t, err, codes.AlreadyExists)
	got, _ := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: v.Id})
	if len(got.Volume.Hosts) != 1 || !got.Volume.Hosts[0].ReadOnly {
		t.Fatalf("hosts %v", got.Volume.Hosts)
	}
}

// TestConcurrentCreatesNeverExceedTheOvercommitLimit races 64 creations for a limit that holds
// 20 of them: the reservations are atomic, so exactly 20 succeed, however the calls interleave
// (the fake pool holds every creation until all have been admitted or refused).
func TestConcurrentCreatesNeverExceedTheOvercommitLimit(t *testing.T) {
	e := newEnv(t) // 10 GiB pool, ratio 2: 20 GiB provisionable
	release := make(chan struct{})
	e.pool.block = release
	const n = 64
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: fmt.Sprintf("pvc-%d", i), SizeBytes: gib})
			errs <- err
		})
	}
	// 20 are admitted and wait in the pool; the other 44 are refused without waiting.
	for range n - 20 {
		wantCode(t, <-errs, codes.ResourceExhausted)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an admitted creation failed: %v", err)
		}
	}
	c, _ := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{})
	if c.ProvisionedBytes != 20*gib || c.AvailableBytes != 0 {
		t.Fatalf("capacity after the race: %+v", c)
	}
	if vols, _ := e.srv.ListVolumes(e.ctx, &agentapi.ListVolumesRequest{}); len(vols.Volumes) != 20 {
		t.Fatalf("%d volumes, want 20", len(vols.Volumes))
	}
}

// TestNoCallListsThePool: the pool is listed once, at start; every call after that answers
// from the index, so its cost does not grow with the number of volumes.
func TestNoCallListsThePool(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	e.createVolume(t, "other", gib, nil)
	e.publish(t, v.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)
	e.publish(t, v.Id, hostB, "w2/"+hostB, agentapi.Transport_TRANSPORT_TCP)
	if _, err := e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.Id, SizeBytes: 2 * gib}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.UnpublishVolume(e.ctx, &agentapi.UnpublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA}); err != nil {
		t.Fatal(err)
	}
	for _, call := range []func() error{
		func() error { _, err := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: v.Id}); return err },
		func() error { _, err := e.srv.ListVolumes(e.ctx, &agentapi.ListVolumesRequest{}); return err },
		func() error { _, err := e.srv.ListSnapshots(e.ctx, &agentapi.ListSnapshotsRequest{}); return err },
		func() error { _, err := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{}); return err },
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.pool.count("list"); n != 1 {
		t.Fatalf("the pool was listed %d times; only Start may list it", n)
	}
	if n := e.pool.count("sethosts"); n != 3 {
		t.Fatalf("%d durable host changes for 2 publishes and 1 unpublish", n)
	}
}

// A pool call that hangs fails that call, when its deadline passes, with DeadlineExceeded;
// other volumes keep working meanwhile, and the hung call's capacity reservation is released.
func TestAHungPoolCallFailsThatCallOnly(t *testing.T) {
	e := newEnv(t)
	a := e.createVolume(t, "a", gib, nil)
	before, err := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.pool.mu.Lock()
	e.pool.hangName = "stuck"
	e.pool.mu.Unlock()

	hung := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, 500*time.Millisecond)
		defer cancel()
		_, err := e.srv.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "stuck", SizeBytes: gib})
		hung <- err
	}()
	// While it hangs: another create, a publish, a lookup and a delete all answer.
	b := e.createVolume(t, "b", gib, nil)
	e.publish(t, a.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)
	if _, err := e.srv.GetVolume(e.ctx, &agentapi.GetVolumeRequest{Id: a.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.DeleteVolume(e.ctx, &agentapi.DeleteVolumeRequest{Id: b.Id}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-hung:
		wantCode(t, err, codes.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the hung create did not end with its deadline")
	}

	after, err := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if after.GetAvailableBytes() != before.GetAvailableBytes() {
		t.Fatalf("available %d after the hung create, %d before: its reservation leaked", after.GetAvailableBytes(), before.GetAvailableBytes())
	}
	e.pool.mu.Lock()
	e.pool.hangName = ""
	e.pool.mu.Unlock()
	e.createVolume(t, "stuck", gib, nil)
}

// Capacity tells the truth: what may be provisioned is never more than the physical space
// left below pool.maxFillPercent, and at that level new volumes, clones and snapshots are
// refused with ResourceExhausted while expansion and deletion go on.
func TestPhysicalFillLevelBoundsCapacityAndCreations(t *testing.T) {
	e := newEnv(t) // 10 GiB of data, overcommit 2, maxFillPercent 90 (the default)
	now := time.Unix(1000, 0)
	e.srv.now = func() time.Time { return now }
	v := e.createVolume(t, "a", gib, nil)
	capacity := func() *agentapi.GetCapacityResponse {
		t.Helper()
		c, err := e.srv.GetCapacity(e.ctx, &agentapi.GetCapacityRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	setUsed := func(data, meta int64) {
		e.pool.mu.Lock()
		e.pool.dataUsed, e.pool.metaUsed = data, meta
		e.pool.mu.Unlock()
		now = now.Add(usageMaxAge) // the next admission reads it
	}

	if c := capacity(); c.AvailableBytes != 9*gib || c.MaximumVolumeBytes != 19*gib {
		t.Fatalf("empty pool: available %d, maximum %d; want the 9 GiB below the fill level and the overcommit headroom of 19 GiB",
			c.AvailableBytes, c.MaximumVolumeBytes)
	}
	setUsed(8*gib, 0) // 80%: 1 GiB left below 90%
	if c := capacity(); c.AvailableBytes != gib || c.MaximumVolumeBytes != 19*gib {
		t.Fatalf("80%% full: available %d, maximum %d; want the 1 GiB left below the fill level, and the headroom", c.AvailableBytes, c.MaximumVolumeBytes)
	}
	e.createVolume(t, "b", 4*gib, nil) // thin: more than is physically left, within the headroom

	for name, used := range map[string][2]int64{"data": {9 * gib, 0}, "metadata": {0, 10 * gib / 100}} {
		t.Run(name, func(t *testing.T) {
			setUsed(used[0], used[1])
			if c := capacity(); c.AvailableBytes != 0 || c.MaximumVolumeBytes != 0 {
				t.Fatalf("full: available %d, maximum %d", c.AvailableBytes, c.MaximumVolumeBytes)
			}
			_, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: "c", SizeBytes: gib})
			wantCode(t, err, codes.ResourceExhausted)
			if !strings.Contains(err.Error(), "maxFillPercent") || !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not say which space is full and which setting", err)
			}
			_, err = e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.Id})
			wantCode(t, err, codes.ResourceExhausted)
			if _, err := e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.Id, SizeBytes: 2 * gib}); err != nil {
				t.Fatalf("expansion refused on a full pool: %v", err)
			}
		})
	}
	setUsed(gib, 0)
	e.createVolume(t, "c", gib, nil)

	// A burst of creations asks the pool for its usage at most once per usageMaxAge.
	before := e.pool.calls["usage"]
	for i := range 5 {
		e.createVolume(t, fmt.Sprintf("burst-%d", i), 64<<20, nil)
	}
	if n := e.pool.calls["usage"] - before; n != 0 {
		t.Fatalf("%d usage reads for 5 creations within %v", n, usageMaxAge)
	}
}

func TestHostNodesListsTheNodesThatPresentedAHostNQN(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "a", gib, nil)
	e.publish(t, v.Id, hostA, "w1/"+hostA, agentapi.Transport_TRANSPORT_TCP)
	for nqn, want := range map[string][]string{hostA: {"w1/" + hostA}, hostB: {}} {
		resp, err := e.srv.HostNodes(e.ctx, &agentapi.HostNodesRequest{HostNqn: nqn})
		if err != nil || !slices.Equal(resp.GetNodeIds(), want) {
			t.Errorf("HostNodes(%s) = %v, %v; want %v", nqn, resp.GetNodeIds(), err, want)
		}
	}
	_, err := e.srv.HostNodes(e.ctx, &agentapi.HostNodesRequest{HostNqn: "not-an-nqn"})
	wantCode(t, err, codes.InvalidArgument)
}

func TestListExportsAndRemoveOrphans(t *testing.T) {
	e := newEnv(t)
	const hostC = "nqn.2014-08.org.nvmexpress:uuid:0f8e7c3a-0000-4000-8000-00000000000c"
	v := e.createVolume(t, "pvc-a", gib, nil)
	wanted := e.publish(t, v.Id, hostA, "node-a", agentapi.Transport_TRANSPORT_TCP).GetSubsystemNqn()
	// Left behind configfs by a crash: a subsystem of a volume with no record, allowing hostB,
	// and a host object no subsystem allows.
	e.fs.AddDevice("/dev/gone")
	stray := e.srv.cfg.NQNPrefix() + "vol-00000000000000000000000000000gone:h0000000000000000"
	if err := e.target.EnsureSubsystem(e.ctx, nvmet.Subsystem{NQN: stray, Hosts: []string{hostB}, Ports: []uint16{1},
		Namespace: nvmet.Namespace{DevicePath: "/dev/gone", UUID: "6c1f2a3e-0d4b-4c5a-9e8f-0123456789ab"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.target.EnsureHost(e.ctx, nvmet.Host{NQN: hostC}); err != nil {
		t.Fatal(err)
	}

	list, err := e.srv.ListExports(e.ctx, &agentapi.ListExportsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*agentapi.Export{}
	for _, x := range list.GetExports() {
		got[x.GetSubsystemNqn()] = x
	}
	if x := got[wanted]; x == nil || x.GetOrphan() || x.GetVolumeId() != v.Id || !slices.Equal(x.GetHostNqns(), []string{hostA}) {
		t.Errorf("the published export = %+v; want volume %s, host A, not an orphan", x, v.Id)
	}
	if x := got[stray]; x == nil || !x.GetOrphan() || !slices.Equal(x.GetHostNqns(), []string{hostB}) {
		t.Errorf("the stray export = %+v; want an orphan allowing host B", x)
	}
	if !slices.Equal(list.GetUnusedHosts(), []string{hostC}) {
		t.Errorf("unused hosts = %v; want [%s]", list.GetUnusedHosts(), hostC)
	}

	// Everything named; only the orphans go.
	rm, err := e.srv.RemoveOrphans(e.ctx, &agentapi.RemoveOrphansRequest{SubsystemNqns: []string{stray, wanted}, HostNqns: []string{hostC, hostA}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rm.GetRemovedSubsystems(), []string{stray}) || !slices.Equal(rm.GetRemovedHosts(), []string{hostC}) {
		t.Errorf("RemoveOrphans removed %v and %v; want only %s and %s", rm.GetRemovedSubsystems(), rm.GetRemovedHosts(), stray, hostC)
	}
	have, err := e.target.NQNs(e.ctx)
	if err != nil || !slices.Equal(have, []string{wanted}) {
		t.Errorf("subsystems after RemoveOrphans = %v, %v; want only the published one", have, err)
	}
	_, err = e.srv.RemoveOrphans(e.ctx, &agentapi.RemoveOrphansRequest{HostNqns: []string{"not an nqn"}})
	wantCode(t, err, codes.InvalidArgument)
}

// Two DH-HMAC-CHAP secrets of the transport form (test values, 32-byte keys).
const (
	keyOne  = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
	keyTwo  = "DHHC-1:00:r9WLxLBDkFzrYpGaRI2NVLgrWDvaGsS3Ufa0mVY5rTgXwz6G:"
	keyCtrl = "DHHC-1:00:Z3FlYmVyaG9zdGtleWZvcnRoZXRlc3Rvbmx5MTIzNDU2eDNvEg==:"
)

func TestPublishWithDHCHAPKeysSetsThemDurablyAndRotates(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume(t, "pvc", gib, nil)
	hostKey := func() (string, string) {
		t.Helper()
		k, err := e.fs.ReadFile(e.fs.Root() + "/hosts/" + hostA + "/dhchap_key")
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.fs.ReadFile(e.fs.Root() + "/hosts/" + hostA + "/dhchap_ctrl_key")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(k)), strings.TrimSpace(string(c))
	}
	publish := func(host, ctrl string) error {
		_, err := e.srv.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA, NodeId: "w1",
			Transport: agentapi.Transport_TRANSPORT_TCP, DhchapHostKey: host, DhchapCtrlKey: ctrl})
		return err
	}
	if err := publish(keyOne, keyCtrl); err != nil {
		t.Fatal(err)
	}
	if k, c := hostKey(); k != keyOne || c != keyCtrl {
		t.Fatalf("host object keys after publish: %q, %q; want the host and controller keys", k, c)
	}
	// Rotation: the same publication with a new host key.
	if err := publish(keyTwo, keyCtrl); err != nil {
		t.Fatal(err)
	}
	if k, _ := hostKey(); k != keyTwo {
		t.Fatalf("host key after rotation: %q; want the new one", k)
	}
	// A retry without keys leaves them in force.
	if err := publish("", ""); err != nil {
		t.Fatal(err)
	}
	if k, _ := hostKey(); k != keyTwo {
		t.Fatalf("host key after a publish without keys: %q; want it kept", k)
	}
	rec, _ := e.pool.Get(e.ctx, v.Id)
	if len(rec.Hosts) != 1 || rec.Hosts[0].DHCHAPKey != keyTwo || rec.Hosts[0].DHCHAPCtrlKey != keyCtrl {
		t.Fatalf("the pool's record of the publication: %+v; want the rotated keys, durably", rec.Hosts)
	}

	// A reboot: configfs is empty; the agent puts the keys back before it exports.
	fs := nvmettest.New()
	fs.AddDevice("/dev/vg/" + v.Id)
	e.fs = fs
	e.target.FS = fs
	e.target.Root = fs.Root()
	if err := e.srv.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if k, c := hostKey(); k != keyTwo || c != keyCtrl {
		t.Fatalf("host keys after a configfs wipe and restart: %q, %q; want the recorded ones", k, c)
	}

	// Bad keys are refused, without the error quoting them.
	for _, bad := range []struct{ host, ctrl string }{{"DHHC-1:09:xx:", ""}, {"plain-password", ""}, {"", keyCtrl}, {keyOne, "nope"}} {
		err := publish(bad.host, bad.ctrl)
		wantCode(t, err, codes.InvalidArgument)
		for _, k := range []string{bad.host, bad.ctrl} {
			if k != "" && strings.Contains(err.Error(), k) {
				t.Errorf("the error quotes a secret: %v", err)
			}
		}
	}
}

func TestPortalsReportTheirConfiguredANAState(t *testing.T) {
	fs := nvmettest.New()
	cfg := testConfig()
	cfg.Portals[0].ANAState = "non-optimized"
	cfg.Portals[1].ANAState = "inaccessible"
	target := &nvmet.Target{Root: fs.Root(), Prefix: cfg.NQNPrefix(), FS: fs}
	srv := New(cfg, newFakePool(fs.AddDevice), target)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"1": "non-optimized", "2": "inaccessible", "3": "optimized"} {
		got, err := fs.ReadFile(fs.Root() + "/ports/" + id + "/ana_groups/1/ana_state")
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("port %s: ANA state %q (%v); want %s", id, got, err, want)
		}
	}
}

func TestListVolumesReportsUsageOnlyWhenAskedAndKnown(t *testing.T) {
	e := newEnv(t)
	published := e.createVolume(t, "pvc-a", gib, nil)
	idle := e.createVolume(t, "pvc-b", gib, nil)
	e.publish(t, published.Id, hostA, "w1", agentapi.Transport_TRANSPORT_TCP)
	for _, with := range []bool{false, true} {
		resp, err := e.srv.ListVolumes(e.ctx, &agentapi.ListVolumesRequest{WithUsage: with})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range resp.GetVolumes() {
			switch {
			case !with && v.UsedBytes != nil:
				t.Errorf("usage of %s reported without being asked for", v.GetId())
			case with && v.GetId() == published.Id && v.GetUsedBytes() != gib/2:
				t.Errorf("usage of the exported volume = %v; want the pool's figure", v.UsedBytes)
			case with && v.GetId() == idle.Id && v.UsedBytes != nil:
				t.Errorf("usage of the inactive volume = %v; want none (unknown)", v.GetUsedBytes())
			}
		}
	}
}

func TestAHostsKeysGoWithItsLastKeyedPublication(t *testing.T) {
	e := newEnv(t)
	keyed := e.createVolume(t, "pvc-keyed", gib, nil)
	plain := e.createVolume(t, "pvc-plain", gib, nil)
	if _, err := e.srv.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: keyed.Id, HostNqn: hostA, NodeId: "w1",
		Transport: agentapi.Transport_TRANSPORT_TCP, DhchapHostKey: keyOne, DhchapCtrlKey: keyCtrl}); err != nil {
		t.Fatal(err)
	}
	plainSub := e.publish(t, plain.Id, hostA, "w1", agentapi.Transport_TRANSPORT_TCP).GetSubsystemNqn()
	hasKey := func() bool {
		t.Helper()
		has, err := e.target.HostHasKey(e.ctx, hostA)
		if err != nil {
			t.Fatal(err)
		}
		return has
	}
	if !hasKey() {
		t.Fatal("the host has no key while a publication with keys stands")
	}
	if _, err := e.srv.UnpublishVolume(e.ctx, &agentapi.UnpublishVolumeRequest{VolumeId: keyed.Id, HostNqn: hostA}); err != nil {
		t.Fatal(err)
	}
	if hasKey() {
		t.Fatal("the host keeps its key after its only keyed publication went: its other volumes would ask for a key it no longer presents")
	}
	sub, err := e.target.Get(e.ctx, plainSub)
	if err != nil || !slices.Equal(sub.Hosts, []string{hostA}) {
		t.Fatalf("the unkeyed volume's subsystem after the keys went: %+v, %v; want it to allow the host still", sub, err)
	}
	// A restart finds no keys in the records and leaves the host without them.
	if err := e.srv.Reconcile(e.ctx); err != nil || hasKey() {
		t.Fatalf("reconcile: %v; key %v", err, hasKey())
	}
}

func TestSizesRoundUpToTheBackendsGranularity(t *testing.T) {
	const mib = 1 << 20
	e := newEnv(t)
	create := func(name string, size, limit int64) (*agentapi.Volume, error) {
		resp, err := e.srv.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: name, SizeBytes: size, LimitBytes: limit})
		return resp.GetVolume(), err
	}
	// dmthin keeps whole MiB.
	v, err := create("small", mib+1, 2*mib)
	if err != nil || v.GetSizeBytes() != 2*mib {
		t.Fatalf("dmthin: 1 MiB + 1 byte = %v, %v; want 2 MiB", v, err)
	}
	_, err = create("over", 2*mib+1, 2*mib+2)
	wantCode(t, err, codes.OutOfRange)
	_, err = e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.GetId(), SizeBytes: 3*mib + 1, LimitBytes: 3*mib + 2})
	wantCode(t, err, codes.OutOfRange)
	grown, err := e.srv.ExpandVolume(e.ctx, &agentapi.ExpandVolumeRequest{Id: v.GetId(), SizeBytes: 3*mib + 1})
	if err != nil || grown.GetVolume().GetSizeBytes() != 4*mib {
		t.Fatalf("dmthin: expand to 3 MiB + 1 byte = %v, %v; want 4 MiB", grown, err)
	}

	// lvm allocates whole 4 MiB extents.
	e.srv.cfg.Pool.Backend = BackendLVM
	if v, err = create("extent", mib, 0); err != nil || v.GetSizeBytes() != 4*mib {
		t.Fatalf("lvm: 1 MiB = %v, %v; want 4 MiB", v, err)
	}
	_, err = create("extent-limited", mib, 3*mib)
	wantCode(t, err, codes.OutOfRange)
}
