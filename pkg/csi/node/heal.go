package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// DefaultHealInterval is how often RunHealer looks at every staged volume's paths.
const DefaultHealInterval = 30 * time.Second

// RunHealer calls Heal every interval until ctx ends.
func (n *Node) RunHealer(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.Heal(ctx)
		}
	}
}

// Heal repairs the paths of every volume staged on this node, one volume at a time, and
// returns what it did. For each volume, under its lock (a volume busy with a stage or an
// unstage is left for the next round):
//   - a controller that is dead, or not live while another controller of the same portal is
//     (superseded), is deleted;
//   - a portal of the volume with no controller — the kernel removed it after ctrl_loss_tmo,
//     or it never connected — is connected again (with native multipath; without it, only
//     when the volume has no path at all), bounded by ConnectTimeout;
//   - when a controller is live but the namespace has no device (an asynchronous event the
//     host missed), the subsystem is rescanned.
//
// Failures are logged and left for the next round; NodeGetVolumeHealth reports the paths.
func (n *Node) Heal(ctx context.Context) []string {
	ids, err := n.stash.all()
	if err != nil {
		klog.FromContext(ctx).Error(err, "Healer cannot list the staged volumes")
		return nil
	}
	var done []string
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		done = append(done, n.healVolume(ctx, id)...)
	}
	return done
}

func (n *Node) healVolume(ctx context.Context, volumeID string) []string {
	log := klog.FromContext(ctx).WithValues("volumeID", volumeID)
	ctx, release, ok := n.volumes.TryHold(ctx, volumeID)
	if !ok {
		return nil // busy: a stage or unstage is at work on it
	}
	defer release()
	st, err := n.stash.load(volumeID)
	if err != nil || st == nil {
		if err != nil {
			log.Error(err, "Healer cannot read the volume's stash")
		}
		return nil
	}
	ctx, unlock, err := n.lockSubsystem(ctx, st.SubsysNQN)
	if err != nil {
		return nil
	}
	defer unlock()
	ctrls, err := n.opts.Connector.Controllers(st.SubsysNQN)
	if err != nil {
		log.Error(err, "Healer cannot list the volume's controllers")
		return nil
	}
	hl := healing{n: n, log: log.WithValues("subsysNQN", st.SubsysNQN), st: st}
	ctrls = hl.removeStale(ctx, ctrls)
	hl.reconnect(ctx, ctrls)
	hl.rescan()
	return hl.done
}

// healing is one volume's round of repairs.
type healing struct {
	n    *Node
	log  klog.Logger
	st   *volumeStash
	done []string
}

func (h *healing) did(action, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	h.log.Info("Healer: " + msg)
	h.done = append(h.done, h.st.VolumeID+": "+msg)
	h.n.repairs.WithLabelValues(action).Inc()
}

// removeStale deletes dead and superseded controllers and returns the others.
func (h *healing) removeStale(ctx context.Context, ctrls []nvme.Controller) []nvme.Controller {
	var remove []string
	for _, c := range ctrls {
		superseded := c.State != "live" && slices.ContainsFunc(ctrls, func(o nvme.Controller) bool {
			return o.Name != c.Name && o.State == "live" && o.Address == c.Address && o.ServiceID == c.ServiceID
		})
		if c.State == "dead" || superseded {
			remove = append(remove, c.Name)
		}
	}
	if len(remove) == 0 {
		return ctrls
	}
	dctx, cancel := context.WithTimeout(ctx, h.n.opts.ConnectTimeout)
	defer cancel()
	if err := h.n.opts.Connector.DeleteControllers(dctx, h.st.SubsysNQN, remove); err != nil {
		h.log.Error(err, "Healer cannot delete dead or superseded controllers", "controllers", remove)
	} else {
		for _, name := range remove {
			h.did("delete", "deleted dead or superseded controller %s", name)
		}
	}
	return slices.DeleteFunc(ctrls, func(c nvme.Controller) bool { return slices.Contains(remove, c.Name) })
}

// reconnect connects the volume's portals that have no controller: all of them with native
// multipath, one when the volume has no path at all without it.
func (h *healing) reconnect(ctx context.Context, ctrls []nvme.Controller) {
	multipath := h.n.opts.Connector.MultipathEnabled()
	if !multipath && len(ctrls) > 0 {
		return
	}
	portals, perr := contract.ParsePortals(h.st.Portals)
	params, cerr := contract.ParseParams(h.st.Connection)
	if err := errors.Join(perr, cerr); err != nil {
		h.log.Error(err, "Healer cannot read the volume's portals or connection settings")
		return
	}
	r := stageRequest{volumeID: h.st.VolumeID, params: params, keys: h.st.DHCHAP, target: target{
		subsysNQN: h.st.SubsysNQN, nsUUID: h.st.NSUUID, transport: h.st.Transport, portals: portals, raw: h.st.Portals,
	}}
	for _, p := range portals {
		if slices.ContainsFunc(ctrls, func(c nvme.Controller) bool { return c.Address == p.Address && c.ServiceID == p.Port }) {
			continue
		}
		if err := h.n.connectPortal(ctx, r, p); err != nil {
			continue // logged; the next round tries again
		}
		h.did("reconnect", "reconnected portal %s", net.JoinHostPort(p.Address, p.Port))
		if !multipath {
			return
		}
	}
}

// rescan asks the subsystem to rescan when a live path shows no namespace device.
func (h *healing) rescan() {
	if _, err := h.n.opts.Connector.FindNamespace(h.st.SubsysNQN, h.st.NSUUID); !errors.Is(err, nvme.ErrNotFound) {
		return
	}
	if err := h.n.opts.Connector.RescanSubsystem(h.st.SubsysNQN); err == nil {
		h.did("rescan", "rescanned: namespace %s had no device", h.st.NSUUID)
	} else if !errors.Is(err, nvme.ErrNotFound) {
		h.log.Error(err, "Healer cannot rescan the subsystem")
	}
}
