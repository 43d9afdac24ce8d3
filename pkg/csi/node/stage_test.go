package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

const snw = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER

func TestStageRejectsInvalidRequests(t *testing.T) {
	h := newHarness(t)
	for name, mutate := range map[string]func(r *csi.NodeStageVolumeRequest){
		"no volume ID":    func(r *csi.NodeStageVolumeRequest) { r.VolumeId = "" },
		"no staging path": func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "" },
		// Relative: it would be created and mounted under the plugin's working directory.
		"relative staging path": func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "staging/globalmount" },
		"unclean staging path":  func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath += "/../../etc" },
		"NUL in staging path":   func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath += "\x00x" },
		"no capability":         func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nil },
		"no subsystem NQN":      func(r *csi.NodeStageVolumeRequest) { delete(r.PublishContext, contract.PublishSubsysNQN) },
		"no namespace UUID":     func(r *csi.NodeStageVolumeRequest) { delete(r.PublishContext, contract.PublishNSUUID) },
		"no transport":          func(r *csi.NodeStageVolumeRequest) { delete(r.PublishContext, contract.PublishTransport) },
		"no portals":            func(r *csi.NodeStageVolumeRequest) { delete(r.PublishContext, contract.PublishPortals) },
		"no publish context":    func(r *csi.NodeStageVolumeRequest) { r.PublishContext = nil },
		"malformed NQN":         func(r *csi.NodeStageVolumeRequest) { r.PublishContext[contract.PublishSubsysNQN] = "nqn.x,hostnqn=y" },
		"malformed UUID":        func(r *csi.NodeStageVolumeRequest) { r.PublishContext[contract.PublishNSUUID] = "not-a-uuid" },
		"unknown transport":     func(r *csi.NodeStageVolumeRequest) { r.PublishContext[contract.PublishTransport] = "fc" },
		"malformed portals":     func(r *csi.NodeStageVolumeRequest) { r.PublishContext[contract.PublishPortals] = "192.0.2.1" },
		"unknown parameter":     func(r *csi.NodeStageVolumeRequest) { r.VolumeContext["bogus"] = "1" },
		"bad ctrlLossTmo":       func(r *csi.NodeStageVolumeRequest) { r.VolumeContext[contract.ParamCtrlLossTmo] = "-1" },
		"unsupported fs":        func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = mountCap("btrfs", snw) },
		"no access type": func(r *csi.NodeStageVolumeRequest) {
			r.VolumeCapability = &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: snw}}
		},
		"unknown access mode": func(r *csi.NodeStageVolumeRequest) {
			r.VolumeCapability = mountCap("ext4", csi.VolumeCapability_AccessMode_UNKNOWN)
		},
		"multi-writer file system": func(r *csi.NodeStageVolumeRequest) {
			r.VolumeCapability = mountCap("ext4", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
		},
	} {
		t.Run(name, func(t *testing.T) {
			req := h.stageRequest(mountCap("ext4", snw))
			mutate(req)
			_, err := h.node.NodeStageVolume(context.Background(), req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	if len(h.conn.connects) != 0 || h.stashExists() {
		t.Errorf("invalid requests connected (%d) or stashed", len(h.conn.connects))
	}
}

func TestStageConnectsEveryPortalFormatsMountsAndStashesOutsideTheMount(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("", snw, "noatime"))

	if len(h.conn.connects) != 2 {
		t.Fatalf("%d connects, want one per portal", len(h.conn.connects))
	}
	for _, o := range h.conn.connects {
		if o.SubsysNQN != testNQN || o.HostNQN != testHost || o.HostID != testHostID || o.Transport != "tcp" ||
			o.CtrlLossTmo != 60 || o.ReconnectDelay != 3 || o.KeepAliveTmo != contract.DefaultKeepAliveTmo {
			t.Errorf("connect options %+v", o)
		}
	}
	m, ok := h.mnt.Mounts()[h.stagingPath()]
	if !ok || m.Source != testDev || m.FSType != "ext4" || !slices.Contains(m.Options, "noatime") {
		t.Fatalf("staging mount %+v, want %s as ext4 with noatime", m, testDev)
	}
	if h.mnt.Format(testDev) != "ext4" {
		t.Error("the blank device was not formatted as ext4 (the default)")
	}
	if !h.stashExists() {
		t.Fatal("no stash")
	}
	if !strings.HasPrefix(h.node.stash.path(testVolume), h.path("state")+"/") {
		t.Errorf("stash at %s, want it in the state directory", h.node.stash.path(testVolume))
	}
	if entries, _ := os.ReadDir(h.stagingPath()); len(entries) != 0 {
		t.Errorf("staging directory holds %v; the mount would hide it", entries)
	}
}

func TestStageIsIdempotent(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	calls := len(h.mnt.Calls())
	h.stage(mountCap("ext4", snw))
	if got := h.mnt.Calls()[calls:]; len(got) != 0 {
		t.Errorf("a repeated stage did %v", got)
	}
	if h.conn.controllerCount() != 2 {
		t.Errorf("%d controllers, want 2", h.conn.controllerCount())
	}
}

func TestStageToleratesAFailingPortal(t *testing.T) {
	h := newHarness(t)
	h.conn.failPortals["192.0.2.2:4420"] = syscall.ECONNREFUSED
	h.stage(mountCap("ext4", snw))
	if n := h.conn.controllerCount(); n != 1 {
		t.Errorf("%d controllers, want the one portal that works", n)
	}
}

// What the kernel answers a refused connect with maps to a code that says whose move it is,
// never Internal.
func TestStageMapsTheKernelsConnectErrnos(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		code  codes.Code
	}{
		{syscall.EIO, codes.FailedPrecondition}, // host not allowed: publish first
		{syscall.EKEYREJECTED, codes.FailedPrecondition},
		{syscall.ENOKEY, codes.FailedPrecondition},
		{syscall.EINVAL, codes.FailedPrecondition},
		{syscall.ENODEV, codes.FailedPrecondition},
		{syscall.EPERM, codes.FailedPrecondition},
		{syscall.ECONNREFUSED, codes.Unavailable},
		{syscall.ECONNRESET, codes.Unavailable},
		{syscall.ETIMEDOUT, codes.Unavailable},
		{syscall.EHOSTUNREACH, codes.Unavailable},
		{syscall.EADDRNOTAVAIL, codes.Unavailable},
		{syscall.ENOMEM, codes.Unavailable},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			h := newHarness(t)
			for _, p := range testPortals {
				h.conn.failPortals[p.Address+":"+p.Port] = tc.errno
			}
			_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
			wantCode(t, err, tc.code)
			if !errors.Is(err, tc.errno) && !strings.Contains(err.Error(), tc.errno.Error()) {
				t.Errorf("error %q lost the kernel's answer", err)
			}
		})
	}
}

func TestStageFailsCleanlyWhenNoPortalConnects(t *testing.T) {
	h := newHarness(t)
	for _, p := range testPortals {
		h.conn.failPortals[p.Address+":"+p.Port] = syscall.ECONNREFUSED
	}
	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.Unavailable)
	if h.stashExists() || len(h.mnt.Mounts()) != 0 {
		t.Error("a failed stage left a stash or a mount")
	}
}

func TestStageWithoutMultipathConnectsOnePath(t *testing.T) {
	h := newHarness(t)
	h.conn.multipath = false
	h.conn.failPortals["192.0.2.1:4420"] = syscall.EHOSTUNREACH
	h.stage(mountCap("ext4", snw))
	ctrls, _ := h.conn.Controllers(testNQN)
	if len(ctrls) != 1 || ctrls[0].Address != "192.0.2.2" {
		t.Errorf("controllers %+v, want only the second portal (the first fails)", ctrls)
	}
}

func TestStageUndoesEverythingWhenTheMountFails(t *testing.T) {
	h := newHarness(t)
	h.mnt.SetHook(func(_ context.Context, op, _ string) error {
		if op == "FormatAndMount" {
			return errors.New("mount: wrong fs type")
		}
		return nil
	})
	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.FailedPrecondition) // final: kubelet may forget the volume, nothing is left
	if h.conn.controllerCount() != 0 || h.stashExists() {
		t.Errorf("left %d controllers, stash %t", h.conn.controllerCount(), h.stashExists())
	}
}

func TestStageUndoesTheMountWhenAResizeFails(t *testing.T) {
	h := newHarness(t)
	h.mnt.SetFormat(testDev, "ext4")
	h.mnt.SetHook(func(_ context.Context, op, _ string) error {
		if op == "Resize" {
			return errors.New("resize2fs: bad superblock")
		}
		return nil
	})
	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.Internal)
	if len(h.mnt.Mounts()) != 0 || h.conn.controllerCount() != 0 || h.stashExists() {
		t.Errorf("left mounts %v, %d controllers, stash %t", h.mnt.Mounts(), h.conn.controllerCount(), h.stashExists())
	}
}

func TestStageKeepsAConnectionThatExistedBeforeAndSaysUnavailable(t *testing.T) {
	h := newHarness(t)
	if _, err := h.conn.Connect(context.Background(), h.connectOptionsFor(testPortals[0])); err != nil {
		t.Fatal(err)
	}
	h.mnt.SetHook(func(_ context.Context, op, _ string) error {
		if op == "FormatAndMount" {
			return errors.New("mount failed")
		}
		return nil
	})
	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.Unavailable) // kubelet must keep the volume uncertain and unstage it
	if h.conn.controllerCount() == 0 || !h.stashExists() {
		t.Error("a connection older than the call was torn down, or its stash forgotten")
	}
}

func TestStageUndoFailureIsReportedAsLeftBehind(t *testing.T) {
	h := newHarness(t)
	h.conn.stuck = true
	h.mnt.SetHook(func(_ context.Context, op, _ string) error {
		if op == "FormatAndMount" {
			return errors.New("mount failed")
		}
		return nil
	})
	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.Unavailable)
	if !h.stashExists() {
		t.Error("the stash was forgotten although the subsystem is still connected")
	}
}

func TestStageRefusesADeviceHoldingAnotherFileSystem(t *testing.T) {
	h := newHarness(t)
	h.mnt.SetFormat(testDev, "xfs")
	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.FailedPrecondition)
	if h.mnt.Format(testDev) != "xfs" || h.conn.controllerCount() != 0 {
		t.Error("the device was reformatted, or the connection kept")
	}
}

func TestStageGrowsAnExistingFileSystemButNotAFreshOne(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	if slices.Contains(h.mnt.Calls(), "Resize "+h.stagingPath()) {
		t.Error("resized a file system mkfs had just made")
	}
	if err := h.unstage(); err != nil {
		t.Fatal(err)
	}
	h.stage(mountCap("ext4", snw)) // restage: the device now holds ext4
	if !slices.Contains(h.mnt.Calls(), "Resize "+h.stagingPath()) {
		t.Error("restaging did not grow the existing file system")
	}
}

func TestStageMountOptionsForReadOnlyModesAndXFS(t *testing.T) {
	h := newHarness(t)
	h.mnt.SetFormat(testDev, "xfs")
	h.stage(mountCap("xfs", csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY))
	m := h.mnt.Mounts()[h.stagingPath()]
	if !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "nouuid") {
		t.Errorf("staging mount options %v, want ro and nouuid", m.Options)
	}
	if slices.Contains(h.mnt.Calls(), "Resize "+h.stagingPath()) {
		t.Error("resized a read-only staging mount")
	}
}

func TestStageBlockConnectsWithoutMounting(t *testing.T) {
	h := newHarness(t)
	h.stage(blockCap())
	if len(h.mnt.Mounts()) != 0 || h.mnt.Format(testDev) != "" {
		t.Errorf("block stage mounted %v or formatted", h.mnt.Mounts())
	}
	st, err := h.node.stash.load(testVolume)
	if err != nil || st == nil || !st.Block || st.Device != testDev {
		t.Fatalf("stash %+v, %v", st, err)
	}
	h.stage(blockCap()) // idempotent
}

func TestStageOverAStaleMountIsLeftForUnstage(t *testing.T) {
	h := newHarness(t)
	req := h.stageRequest(mountCap("ext4", snw))
	h.mnt.SetDeviceSize("/dev/nvme7n1", testSize)
	h.mnt.AddMount("/dev/nvme7n1", h.stagingPath(), "ext4", nil) // an earlier connection's device
	_, err := h.node.NodeStageVolume(context.Background(), req)
	wantCode(t, err, codes.Unavailable)
	if h.mnt.Mounts()[h.stagingPath()].Source != "/dev/nvme7n1" {
		t.Error("the stale mount was replaced under its users")
	}
}

func TestStageOfAVolumeStagedIncompatiblyIsAlreadyExists(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	req := h.stageRequest(blockCap())
	req.StagingTargetPath = h.path("other")
	_, err := h.node.NodeStageVolume(context.Background(), req)
	wantCode(t, err, codes.AlreadyExists)
}

// TestSecondConcurrentStageIsAborted holds the first stage inside FormatAndMount and proves
// that a second stage of the same volume answers Aborted at once while another volume's
// operations are not blocked.
func TestSecondConcurrentStageIsAborted(t *testing.T) {
	h := newHarness(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	h.mnt.SetHook(func(ctx context.Context, op, _ string) error {
		if op == "FormatAndMount" {
			close(entered)
			<-release
		}
		return nil
	})
	first := make(chan error, 1)
	go func() {
		_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
		first <- err
	}()
	<-entered

	_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
	wantCode(t, err, codes.Aborted)
	_, err = h.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: h.stagingPath()})
	wantCode(t, err, codes.Aborted)
	// Another volume is not held up by this one.
	_, err = h.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: "other", TargetPath: h.path("nothing")})
	if err != nil {
		t.Errorf("another volume's unpublish: %v", err)
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first stage: %v", err)
	}
	h.stage(mountCap("ext4", snw)) // the lock is free again
}

func (h *harness) connectOptionsFor(p contract.Portal) nvme.ConnectOptions {
	return nvme.ConnectOptions{Transport: "tcp", Address: p.Address, ServiceID: p.Port, SubsysNQN: testNQN, HostNQN: testHost, HostID: testHostID}
}

func TestStagingPathIsCreatedWhenMissing(t *testing.T) {
	h := newHarness(t)
	req := h.stageRequest(mountCap("ext4", snw))
	req.StagingTargetPath = filepath.Join(h.dir, "new", "globalmount")
	if _, err := h.node.NodeStageVolume(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.mnt.Mounts()[req.StagingTargetPath]; !ok {
		t.Error("not mounted at the new staging path")
	}
}

// See the controller's TestCreateVolumeAcceptsAFileSystemInUpperCase: both sides accept "XFS".
func TestStageFormatsXFSSpelledInUpperCase(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("XFS", snw))
	if got := h.mnt.Format(testDev); got != "xfs" {
		t.Fatalf("formatted as %q, want xfs", got)
	}
}

// A volume the controller created empty (volume_context zeroed=true) is formatted without
// zeroing; any other volume (a clone of an unformatted block volume could hold anything) is
// formatted the ordinary way.
func TestStageLetsMkfsSkipZeroingOnlyOnZeroedVolumes(t *testing.T) {
	for _, zeroed := range []bool{true, false} {
		h := newHarness(t)
		req := h.stageRequest(mountCap("ext4", snw))
		if zeroed {
			req.VolumeContext[contract.ContextZeroed] = "true"
		}
		if _, err := h.node.NodeStageVolume(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if made, ok := h.mnt.Made(testDev); !ok || made.Zeroed != zeroed {
			t.Fatalf("zeroed=%v: formatted %v with %+v", zeroed, ok, made)
		}
	}
}

func TestStageAuthenticatesWithTheNodesDHCHAPKeys(t *testing.T) {
	h := newHarness(t)
	secrets := map[string]string{"host.worker-1": "DHHC-1:00:d29ya2VyLTE=:", "host.worker-2": "DHHC-1:00:d29ya2VyLTI=:", "ctrl": "DHHC-1:00:Y3RybA==:"}
	req := h.stageRequest(mountCap("ext4", snw))
	req.PublishContext[contract.PublishDHCHAP] = "true"
	req.Secrets = secrets
	if _, err := h.node.NodeStageVolume(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, o := range h.conn.connects {
		if o.DHChapSecret != secrets["host.worker-1"] || o.DHChapCtrlSecret != secrets["ctrl"] {
			t.Errorf("connect to %s without this node's keys", o.Address)
		}
	}
	st, err := h.node.stash.load(testVolume)
	if err != nil || st.DHCHAP.Host != secrets["host.worker-1"] {
		t.Fatalf("stash keys = %v (%v); want them kept for the healer's reconnects", st, err)
	}
	if fmt.Sprint(st.DHCHAP) != "(DH-HMAC-CHAP keys not shown)" {
		t.Errorf("the keys format as %q", fmt.Sprint(st.DHCHAP))
	}

	// The target asks for authentication and no Secret was given: the StorageClass lacks the
	// node-stage secret.
	h2 := newHarness(t)
	req = h2.stageRequest(mountCap("ext4", snw))
	req.PublishContext[contract.PublishDHCHAP] = "true"
	_, err = h2.node.NodeStageVolume(context.Background(), req)
	if status.Code(err) != codes.FailedPrecondition || len(h2.conn.connects) != 0 {
		t.Errorf("stage without the secrets the target asks for = %v after %d connects; want FailedPrecondition before any", err, len(h2.conn.connects))
	}
}

func TestStageClassifiesAFailedMountByThePathsState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state string
		want  codes.Code
	}{
		{"paths live: the programs refused the device", "live", codes.FailedPrecondition},
		{"no live path: the device could not be read", "connecting", codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mnt.SetHook(func(_ context.Context, op, _ string) error {
				if op == "FormatAndMount" {
					h.conn.setState(tc.state, 0, 1)
					return errors.New("mount: exit status 32")
				}
				return nil
			})
			_, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(mountCap("ext4", snw)))
			if status.Code(err) != tc.want {
				t.Errorf("stage = %v; want %s", err, tc.want)
			}
		})
	}
}
