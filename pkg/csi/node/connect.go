package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// connect connects the volume's portals and waits for its namespace device. With native
// multipath every portal is connected, in parallel, and some may fail as long as one
// connects; the kernel merges the paths into one head device. Without multipath the portals
// are tried in order and the first that connects is the only path.
func (n *Node) connect(ctx context.Context, r stageRequest) (string, error) {
	log := klog.FromContext(ctx)
	nqn := r.target.subsysNQN
	ctx, unlock, err := n.lockSubsystem(ctx, nqn)
	if err != nil {
		return "", err
	}
	defer unlock()

	var connected int
	var errs []error
	if n.opts.Connector.MultipathEnabled() {
		results := make([]error, len(r.target.portals))
		var wg sync.WaitGroup
		for i, p := range r.target.portals {
			wg.Go(func() { results[i] = n.connectPortal(ctx, r, p) })
		}
		wg.Wait()
		for _, err := range results {
			if err == nil {
				connected++
			} else {
				errs = append(errs, err)
			}
		}
	} else {
		log.Info("Native NVMe multipath is off on this host: connecting a single path", "portals", r.target.raw)
		for _, p := range r.target.portals {
			err := n.connectPortal(ctx, r, p)
			if err == nil {
				connected++
				break
			}
			errs = append(errs, err)
		}
	}
	if connected == 0 {
		return "", fmt.Errorf("no portal of %s connected: %w", nqn, errors.Join(errs...))
	}
	if len(errs) > 0 {
		log.Info("Some portals failed; continuing with the paths that connected",
			"connected", connected, "failed", len(errs), "errors", errors.Join(errs...).Error())
	}
	wctx, cancel := context.WithTimeout(ctx, n.opts.NamespaceTimeout)
	defer cancel()
	dev, err := n.opts.Connector.WaitNamespace(wctx, nqn, r.target.nsUUID, n.opts.PollInterval)
	if err != nil {
		return "", fmt.Errorf("namespace %s of %s: %w", r.target.nsUUID, nqn, err)
	}
	return dev, nil
}

// connectPortal connects one path, bounded by ConnectTimeout.
func (n *Node) connectPortal(ctx context.Context, r stageRequest, p contract.Portal) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.ConnectTimeout)
	defer cancel()
	ctrl, err := n.opts.Connector.Connect(ctx, nvme.ConnectOptions{
		Transport:        r.target.transport,
		Address:          p.Address,
		ServiceID:        p.Port,
		SubsysNQN:        r.target.subsysNQN,
		HostNQN:          n.opts.Identity.HostNQN,
		HostID:           n.opts.Identity.HostID,
		CtrlLossTmo:      r.params.CtrlLossTmo,
		ReconnectDelay:   r.params.ReconnectDelay,
		KeepAliveTmo:     r.params.KeepAliveTmo,
		NrIOQueues:       r.params.NrIOQueues,
		DHChapSecret:     r.keys.Host,
		DHChapCtrlSecret: r.keys.Ctrl,
	})
	portal := net.JoinHostPort(p.Address, p.Port)
	if err != nil {
		klog.FromContext(ctx).Error(err, "Portal did not connect", "portal", portal, "transport", r.target.transport)
		return fmt.Errorf("portal %s: %w", portal, classifyConnect(err))
	}
	klog.FromContext(ctx).V(2).Info("Connected", "portal", portal, "transport", r.target.transport, "controller", ctrl)
	return nil
}

// connectErrnos gives each errno the kernel answers a fabrics connect with its class and what
// to do about it (README, "Node errors"). Errnos of an unreachable target or network
// (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT) are Unavailable by rpcerr's table; an
// errno in neither is Internal.
var connectErrnos = []struct {
	errno syscall.Errno
	class error
	why   string
}{
	{syscall.EIO, rpcerr.ErrPrecondition, "the target refused this host: it is not (or no longer) allowed on the subsystem, " +
		"or the subsystem is not exported on this portal; ControllerPublishVolume grants access"},
	{syscall.EKEYREJECTED, rpcerr.ErrPrecondition, "the target rejected this host's authentication, or the host the target's (DH-HMAC-CHAP): " +
		"the keys in the StorageClass's Secret differ from the ones the storage node has; the next ControllerPublishVolume sets them"},
	{syscall.ENOKEY, rpcerr.ErrPrecondition, "the target requires DH-HMAC-CHAP authentication and this node presented no key: " +
		"the StorageClass must name the Secret for node-stage too"},
	{syscall.EINVAL, rpcerr.ErrPrecondition, "the kernel refused the connect options: is the transport's module (nvme-tcp, nvme-rdma) loaded?"},
	{syscall.ENODEV, rpcerr.ErrPrecondition, "no device for the transport on this host (for RDMA: no RDMA device reaches the portal)"},
	{syscall.EPERM, rpcerr.ErrPrecondition, "the plugin may not write to the fabrics device (it needs CAP_SYS_ADMIN)"},
	{syscall.ECONNRESET, rpcerr.ErrUnavailable, "the target closed the connection"},
	{syscall.EADDRNOTAVAIL, rpcerr.ErrUnavailable, "no local address reaches the portal now"},
	{syscall.ENOMEM, rpcerr.ErrUnavailable, "the kernel is short of memory"},
}

// classifyConnect adds the class and advice of connectErrnos to a connect error.
func classifyConnect(err error) error {
	for _, e := range connectErrnos {
		if errors.Is(err, e.errno) {
			return fmt.Errorf("%w: %w (%s)", e.class, err, e.why)
		}
	}
	return err
}

// disconnect removes every controller of the subsystem and returns nil only once they are
// gone from sysfs.
func (n *Node) disconnect(ctx context.Context, nqn string) error {
	ctx, unlock, err := n.lockSubsystem(ctx, nqn)
	if err != nil {
		return err
	}
	defer unlock()
	if err := n.opts.Connector.Disconnect(ctx, nqn); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Disconnected", "subsysNQN", nqn)
	return nil
}
