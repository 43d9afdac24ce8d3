package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// stageVolume is NodeStageVolume: connect every portal, wait for the namespace, and for
// filesystem volumes format (if blank) and mount it at the staging path.
func (n *Node) stageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	r, err := parseStage(req, n.opts.NodeName)
	if err != nil {
		return nil, err
	}
	return &csi.NodeStageVolumeResponse{}, n.stage(ctx, r)
}

func (n *Node) stage(ctx context.Context, r stageRequest) error {
	log := klog.FromContext(ctx).WithValues("volumeID", r.volumeID, "subsysNQN", r.target.subsysNQN)
	ctx = klog.NewContext(ctx, log)
	prev, err := n.stash.load(r.volumeID)
	if err != nil {
		return err
	}
	if err := n.checkPrevious(prev, r); err != nil {
		return err
	}
	if !r.cap.Block {
		mounted, err := n.opts.Mounter.IsMountPoint(r.stagingPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if mounted {
			return n.checkStaged(ctx, r)
		}
	}
	return n.stageNew(ctx, r)
}

// checkPrevious refuses to stage over an active staging of the same volume that is
// incompatible with this request (CSI: AlreadyExists). A stash whose subsystem is not
// connected and whose staging path is not mounted is stale and gets replaced.
func (n *Node) checkPrevious(prev *volumeStash, r stageRequest) error {
	if prev == nil {
		return nil
	}
	same := prev.StagingPath == r.stagingPath && prev.Block == r.cap.Block && prev.FSType == r.cap.FSType &&
		prev.SubsysNQN == r.target.subsysNQN && prev.NSUUID == r.target.nsUUID
	if same {
		return nil
	}
	ctrls, err := n.opts.Connector.Controllers(prev.SubsysNQN)
	if err != nil {
		return err
	}
	mounted, _ := n.opts.Mounter.IsMountPoint(prev.StagingPath)
	if len(ctrls) == 0 && !mounted {
		return nil
	}
	return rpcerr.Existsf("volume %s is already staged at %s (block=%t, fsType=%q, subsystem %s); unstage it first",
		r.volumeID, prev.StagingPath, prev.Block, prev.FSType, prev.SubsysNQN)
}

// checkStaged handles a staging path that is already a mount point: fine if it is the
// volume's namespace, else the mount is stale (e.g. the device of an earlier connection).
// A stale mount is left for NodeUnstageVolume: pods may still use it.
func (n *Node) checkStaged(ctx context.Context, r stageRequest) error {
	log := klog.FromContext(ctx)
	dev, err := n.opts.Connector.FindNamespace(r.target.subsysNQN, r.target.nsUUID)
	if err != nil && !errors.Is(err, nvme.ErrNotFound) {
		return err
	}
	if err == nil {
		same, err := n.sameDevice(r.stagingPath, dev)
		if err != nil {
			return err
		}
		if same {
			log.V(2).Info("Volume already staged", "stagingPath", r.stagingPath, "device", dev)
			return n.stash.save(newStash(r, dev))
		}
	}
	return fmt.Errorf("%w: staging path %s is mounted, but not from namespace %s of %s (device %q): "+
		"NodeUnstageVolume must clean it up first", errLeftBehind, r.stagingPath, r.target.nsUUID, r.target.subsysNQN, dev)
}

// sameDevice reports whether path (a mount point or a bind-mounted device file) is backed by
// the block device dev.
func (n *Node) sameDevice(path, dev string) (bool, error) {
	a, err := n.opts.Mounter.DeviceNumber(path)
	if err != nil {
		return false, err
	}
	b, err := n.opts.Mounter.DeviceNumber(dev)
	if err != nil {
		return false, err
	}
	return a == b, nil
}

func newStash(r stageRequest, dev string) *volumeStash {
	return &volumeStash{
		VolumeID: r.volumeID, StagingPath: r.stagingPath,
		SubsysNQN: r.target.subsysNQN, NSUUID: r.target.nsUUID,
		Transport: r.target.transport, Portals: r.target.raw,
		Block: r.cap.Block, FSType: r.cap.FSType, Device: dev,
		Connection: r.params.VolumeContext(),
		DHCHAP:     r.keys,
	}
}

// stageNew connects and, for filesystem volumes, formats and mounts. On failure it undoes
// what it did, in reverse order, with a context of its own (the request's may have ended).
func (n *Node) stageNew(ctx context.Context, r stageRequest) (err error) {
	log := klog.FromContext(ctx)
	nqn := r.target.subsysNQN
	before, err := n.opts.Connector.Controllers(nqn)
	if err != nil {
		return err
	}
	connectedBefore := len(before) > 0
	// Intent record first: whatever happens next, Unstage can find the subsystem.
	if err := n.stash.save(newStash(r, "")); err != nil {
		return err
	}
	var undo undoStack
	if !connectedBefore {
		undo.push("forget the stash", func(context.Context) error { return n.stash.remove(r.volumeID) })
		undo.push("disconnect "+nqn, func(ctx context.Context) error { return n.disconnect(ctx, nqn) })
	}
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.CleanupTimeout)
		defer cancel()
		if uerr := undo.run(cctx, log); uerr != nil {
			err = fmt.Errorf("%w (undo failed: %w; %w)", err, uerr, errLeftBehind)
		} else if connectedBefore {
			err = fmt.Errorf("%w (subsystem %s was connected before this call and stays: %w)", err, nqn, errLeftBehind)
		}
	}()

	// Where a stage spends its time (logged with the result): connect (every portal and the
	// namespace device), probe (blkid), mount (fsck or mkfs, then mount), resize.
	took := phases{last: time.Now()}
	dev, err := n.connect(ctx, r)
	if err != nil {
		return err
	}
	took.mark("connect")
	if r.cap.Block {
		log.Info("Staged block volume", "device", dev, "took", took)
		return n.stash.save(newStash(r, dev))
	}
	if err := os.MkdirAll(r.stagingPath, 0o750); err != nil {
		return err
	}
	if err := n.opts.Connector.VerifyDevice(dev, nqn, r.target.nsUUID); err != nil {
		return err
	}
	format, err := n.opts.Mounter.GetDiskFormat(ctx, dev)
	if err != nil {
		return n.deviceErr(nqn, err)
	}
	took.mark("probe")
	if format != "" && format != r.cap.FSType {
		return rpcerr.Preconditionf("%s holds %q, not the requested %s: refusing to mount or format it", dev, format, r.cap.FSType)
	}
	// Registered before mounting: a mount that outlives a cancelled call still gets undone.
	undo.push("unmount "+r.stagingPath, func(ctx context.Context) error { return n.opts.Mounter.Unmount(ctx, r.stagingPath) })
	mkfs := mounter.Format{Zeroed: r.params.Zeroed}
	if err := n.opts.Mounter.FormatAndMount(ctx, dev, r.stagingPath, r.cap.FSType, stageMountOptions(r.cap), mkfs); err != nil {
		return n.deviceErr(nqn, err)
	}
	took.mark("mount")
	if format != "" && !r.cap.ReadOnly {
		// An existing, writable file system: grow it in case the volume was expanded while it
		// was not staged. (No NeedResize: the format and the mode are known already.)
		if _, err := n.opts.Mounter.Resize(ctx, dev, r.stagingPath); err != nil {
			return err
		}
		took.mark("resize")
	}
	if err := n.stash.save(newStash(r, dev)); err != nil {
		return err
	}
	log.Info("Staged filesystem volume", "device", dev, "fsType", r.cap.FSType, "formatted", format == "",
		"stagingPath", r.stagingPath, "took", took)
	return nil
}

// stageMountOptions are the options of the staging mount: the capability's flags, "ro" for
// read-only access modes, and for xfs "nouuid", so that a clone (same file system UUID) can be
// mounted on the node where its source is.
func stageMountOptions(c contract.Capability) []string {
	opts := append([]string(nil), c.MountFlags...)
	if c.ReadOnly {
		opts = append(opts, "ro")
	}
	if c.FSType == "xfs" {
		opts = append(opts, "nouuid")
	}
	return opts
}

// undoStack runs cleanup steps in reverse order of registration.
type undoStack struct {
	steps []undoStep
}

type undoStep struct {
	what string
	fn   func(context.Context) error
}

func (u *undoStack) push(what string, fn func(context.Context) error) {
	u.steps = append(u.steps, undoStep{what, fn})
}

// run stops at the first failing step: later (earlier registered) steps depend on it, e.g.
// a subsystem must not be disconnected while its file system is still mounted.
func (u *undoStack) run(ctx context.Context, log klog.Logger) error {
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.fn(ctx); err != nil {
			log.Error(err, "Undoing a failed stage", "step", s.what)
			return fmt.Errorf("%s: %w", s.what, err)
		}
		log.V(2).Info("Undid", "step", s.what)
	}
	return nil
}

// phases times the steps of a call, for its log line: "connect=120ms probe=30ms ...".
type phases struct {
	last  time.Time
	parts []string
}

// mark ends the step called name, which began at the previous mark (or at last's start).
func (p *phases) mark(name string) {
	now := time.Now()
	p.parts = append(p.parts, fmt.Sprintf("%s=%s", name, now.Sub(p.last).Round(time.Millisecond)))
	p.last = now
}

func (p phases) String() string { return strings.Join(p.parts, " ") }

// deviceErr classifies a failure to probe, format or mount the namespace's device: with no
// live path to the subsystem the device could not be read, so the kubelet should retry once
// paths return (Unavailable); otherwise the mounter's class stands (FailedPrecondition when it
// has none: the programs refused the device).
func (n *Node) deviceErr(nqn string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	ctrls, cerr := n.opts.Connector.Controllers(nqn)
	if cerr == nil && !slices.ContainsFunc(ctrls, func(c nvme.Controller) bool { return c.State == "live" }) {
		return fmt.Errorf("%w: no live path to %s: %w", rpcerr.ErrUnavailable, nqn, err)
	}
	if rpcerr.Code(err) == codes.Unknown || rpcerr.Code(err) == codes.Internal {
		return fmt.Errorf("%w: %w", rpcerr.ErrPrecondition, err)
	}
	return err
}
