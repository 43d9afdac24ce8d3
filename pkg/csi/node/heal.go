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

	var done []string
	did := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		log.Info("Healer: "+msg, "subsysNQN", st.SubsysNQN)
		done = append(done, volumeID+": "+msg)
	}
	ctrls, err := n.opts.Connector.Controllers(st.SubsysNQN)
	if err != nil {
		log.Error(err, "Healer cannot list the volume's controllers")
		return nil
	}

	// Dead or superseded controllers.
	var remove []string
	for _, c := range ctrls {
		superseded := c.State != "live" && slices.ContainsFunc(ctrls, func(o nvme.Controller) bool {
			return o.Name != c.Name && o.State == "live" && o.Address == c.Address && o.ServiceID == c.ServiceID
		})
		if c.State == "dead" || superseded {
			remove = append(remove, c.Name)
		}
	}
	if len(remove) > 0 {
		dctx, cancel := context.WithTimeout(ctx, n.opts.ConnectTimeout)
		err := n.opts.Connector.DeleteControllers(dctx, st.SubsysNQN, remove)
		cancel()
		if err != nil {
			log.Error(err, "Healer cannot delete dead or superseded controllers", "controllers", remove)
		} else {
			did("deleted dead or superseded controllers %v", remove)
			n.repairs.WithLabelValues("delete").Add(float64(len(remove)))
		}
		ctrls = slices.DeleteFunc(ctrls, func(c nvme.Controller) bool { return slices.Contains(remove, c.Name) })
	}

	// Portals without a controller.
	portals, perr := contract.ParsePortals(st.Portals)
	params, cerr := contract.ParseParams(st.Connection)
	if err := errors.Join(perr, cerr); err != nil {
		log.Error(err, "Healer cannot read the volume's portals or connection settings")
		return done
	}
	r := stageRequest{volumeID: volumeID, params: params, target: target{
		subsysNQN: st.SubsysNQN, nsUUID: st.NSUUID, transport: st.Transport, portals: portals, raw: st.Portals,
	}}
	if n.opts.Connector.MultipathEnabled() || len(ctrls) == 0 {
		for _, p := range portals {
			if slices.ContainsFunc(ctrls, func(c nvme.Controller) bool { return c.Address == p.Address && c.ServiceID == p.Port }) {
				continue
			}
			if err := n.connectPortal(ctx, r, p); err != nil {
				continue // logged; the next round tries again
			}
			did("reconnected portal %s", net.JoinHostPort(p.Address, p.Port))
			n.repairs.WithLabelValues("reconnect").Inc()
			if !n.opts.Connector.MultipathEnabled() {
				break
			}
		}
	}

	// A live path without the namespace's device.
	if _, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID); errors.Is(err, nvme.ErrNotFound) {
		if err := n.opts.Connector.RescanSubsystem(st.SubsysNQN); err == nil {
			did("rescanned: namespace %s had no device", st.NSUUID)
			n.repairs.WithLabelValues("rescan").Inc()
		} else if !errors.Is(err, nvme.ErrNotFound) {
			log.Error(err, "Healer cannot rescan the subsystem")
		}
	}
	return done
}
