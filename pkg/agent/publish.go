package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// PublishVolume allows a host NQN on a volume: recorded durably first, then projected into
// configfs (the volume's subsystem is created on its first publish). If the projection fails,
// the record is taken back, so nothing half-done remains.
func (s *Server) PublishVolume(ctx context.Context, req *agentapi.PublishVolumeRequest) (*agentapi.PublishVolumeResponse, error) {
	resp, err := s.publish(ctx, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return resp, nil
}

// maxNodeIDBytes is the longest node ID CSI allows.
const maxNodeIDBytes = 256

// checkNodeID refuses a node ID the pool's record cannot hold unchanged: empty, longer than
// CSI allows, not UTF-8, or with a control character (the lvm backend's host tag separates
// its fields with a newline).
func checkNodeID(id string) error {
	switch {
	case id == "":
		return rpcerr.Invalidf("node_id is required")
	case len(id) > maxNodeIDBytes:
		return rpcerr.Invalidf("node_id is %d bytes, more than %d", len(id), maxNodeIDBytes)
	case !utf8.ValidString(id):
		return rpcerr.Invalidf("node_id %q is not UTF-8", id)
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return rpcerr.Invalidf("node_id %q has a control character", id)
	}
	return nil
}

// checkKeys validates DH-HMAC-CHAP secrets without ever quoting them.
func checkKeys(host, ctrl string) error {
	if host != "" {
		if err := nvmet.ValidateDHCHAPKey(host); err != nil {
			return rpcerr.Invalidf("dhchap_host_key: %v", err)
		}
	}
	if ctrl != "" {
		if host == "" {
			return rpcerr.Invalidf("dhchap_ctrl_key needs dhchap_host_key: bidirectional authentication authenticates the host too")
		}
		if err := nvmet.ValidateDHCHAPKey(ctrl); err != nil {
			return rpcerr.Invalidf("dhchap_ctrl_key: %v", err)
		}
	}
	return nil
}

// checkPublish validates a publish request and returns its transport's name.
func (s *Server) checkPublish(req *agentapi.PublishVolumeRequest) (string, error) {
	if err := validateID(req.GetVolumeId(), volumePrefix); err != nil {
		return "", err
	}
	if err := nvmet.ValidateNQN(req.GetHostNqn()); err != nil {
		return "", rpcerr.Invalidf("host_nqn: %v", err)
	}
	if err := checkNodeID(req.GetNodeId()); err != nil {
		return "", err
	}
	transport := agentapi.TransportName(req.GetTransport())
	if transport == "" {
		return "", rpcerr.Invalidf("transport must be tcp or rdma")
	}
	if len(s.portIDs([]string{transport})) == 0 {
		return "", rpcerr.Preconditionf("storage node %s has no %s portal", s.cfg.NodeName, transport)
	}
	if err := checkKeys(req.GetDhchapHostKey(), req.GetDhchapCtrlKey()); err != nil {
		return "", err
	}
	return transport, nil
}

func (s *Server) publish(ctx context.Context, req *agentapi.PublishVolumeRequest) (*agentapi.PublishVolumeResponse, error) {
	transport, err := s.checkPublish(req)
	if err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	ctx, unlock, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	rec, ok := s.idx.get(id)
	if !ok {
		return nil, errNoRecord("volume", id)
	}
	want := pool.Host{NQN: req.GetHostNqn(), NodeID: req.GetNodeId(), ReadOnly: req.GetReadOnly()}
	if other, clash := s.idx.otherNode(want.NQN, want.NodeID); clash {
		return nil, rpcerr.Preconditionf("host NQN %s is already used by node %q, and now node %q presents it: "+
			"every node needs its own /etc/nvme/hostnqn and hostid", want.NQN, other, want.NodeID)
	}
	for _, h := range rec.Hosts {
		if h.NQN == want.NQN && h.NodeID == want.NodeID && h.ReadOnly != want.ReadOnly {
			return nil, rpcerr.Existsf("volume %s is published to %s with read_only=%v", id, h.NQN, h.ReadOnly)
		}
	}
	next := rec.Clone()
	i := slices.IndexFunc(next.Hosts, func(h pool.Host) bool { return h.NQN == want.NQN && h.NodeID == want.NodeID })
	if i < 0 {
		next.Hosts = append(next.Hosts, want)
		i = len(next.Hosts) - 1
	}
	if k := req.GetDhchapHostKey(); k != "" && (k != next.Hosts[i].DHCHAPKey || req.GetDhchapCtrlKey() != next.Hosts[i].DHCHAPCtrlKey) {
		// New keys, or rotated ones: in force from now on for the host's new connections.
		next.Hosts[i].DHCHAPKey, next.Hosts[i].DHCHAPCtrlKey = k, req.GetDhchapCtrlKey()
		next.Hosts[i].KeysSetUnixNano = s.now().UnixNano()
	}
	if !slices.Contains(next.Transports, transport) {
		next.Transports = append(next.Transports, transport)
	}
	if err := s.setHosts(ctx, next); err != nil {
		return nil, err
	}
	if err := s.export(ctx, next, nil); err != nil {
		// Take the record back and restore the previous projection, even when the request
		// has ended, within a bound of its own.
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if rerr := s.setHosts(bg, rec); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, errors.Join(err, s.export(bg, rec, nil))
	}
	return &agentapi.PublishVolumeResponse{
		SubsystemNqn:  s.hostSubsystemNQN(id, want.NQN),
		Transport:     req.GetTransport(),
		Portals:       s.portals(transport),
		NamespaceUuid: rec.UUID,
	}, nil
}

// setHosts records rec's hosts and transports durably, then in the index; an unchanged
// record costs nothing.
func (s *Server) setHosts(ctx context.Context, rec pool.Record) error {
	old, _ := s.idx.get(rec.ID)
	if sameHosts(old, rec) {
		return nil
	}
	v, err := s.pool.SetHosts(ctx, rec.ID, rec.Hosts, rec.Transports)
	if err != nil {
		return err
	}
	s.idx.put(v.Record)
	return nil
}

func sameHosts(a, b pool.Record) bool {
	return len(a.Hosts) == len(b.Hosts) && len(a.Transports) == len(b.Transports) &&
		!slices.ContainsFunc(a.Hosts, func(h pool.Host) bool { return !slices.Contains(b.Hosts, h) }) &&
		!slices.ContainsFunc(a.Transports, func(t string) bool { return !slices.Contains(b.Transports, t) })
}

// UnpublishVolume removes a host NQN from a volume: its subsystem goes first, which ends that
// host's controllers at once (no further I/O completes through them) while the volume's other
// hosts keep their subsystems, paths and I/O; then the record. An unknown volume or host is
// not an error: there is nothing to revoke.
func (s *Server) UnpublishVolume(ctx context.Context, req *agentapi.UnpublishVolumeRequest) (*agentapi.UnpublishVolumeResponse, error) {
	if err := s.unpublish(ctx, req); err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.UnpublishVolumeResponse{}, nil
}

func (s *Server) unpublish(ctx context.Context, req *agentapi.UnpublishVolumeRequest) error {
	id := req.GetVolumeId()
	if err := validateID(id, volumePrefix); err != nil {
		return nil
	}
	ctx, unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	rec, ok := s.idx.get(id)
	if !ok {
		return nil
	}
	next := rec.Clone()
	next.Hosts = slices.DeleteFunc(next.Hosts, func(h pool.Host) bool { return h.NQN == req.GetHostNqn() })
	if len(next.Hosts) == 0 {
		next.Transports = nil
	}
	// Revoke in configfs first: if the record went first and configfs failed, a retry would
	// find nothing to revoke while the host still had access.
	if err := s.export(ctx, next, nil); err != nil {
		return err
	}
	if err := s.setHosts(ctx, next); err != nil {
		return err
	}
	// The host's keys may have gone with this publication: the host object follows.
	ctx, unlockHost, err := s.lockHost(ctx, req.GetHostNqn())
	if err != nil {
		return err
	}
	defer unlockHost()
	return s.settleHostKeys(ctx, req.GetHostNqn(), next)
}

// exportTo makes sub, the volume's subsystem for host nqn, under the host's lock: the host
// object first, with its keys in force, so the subsystem never admits the host
// unauthenticated, not even for a moment after configfs was wiped or while an orphan search
// removes the host object.
func (s *Server) exportTo(ctx context.Context, rec pool.Record, nqn string, sub nvmet.Subsystem) error {
	ctx, unlock, err := s.lockHost(ctx, nqn)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.settleHostKeys(ctx, nqn, rec); err != nil {
		return err
	}
	return s.target.EnsureSubsystem(ctx, sub)
}

// lockHost serializes what changes host object nqn (its keys, its removal) with the linking of
// subsystems to it. It is taken after the volume's lock, never before one.
func (s *Server) lockHost(ctx context.Context, nqn string) (context.Context, func(), error) {
	return s.lock(ctx, "host:"+nqn)
}

// settleHostKeys makes host object nqn carry the DH-HMAC-CHAP keys in force for it (the
// newest of its publications', rec's included), or none when none of its publications has
// keys any more: then the host object is made again without keys (the kernel cannot unset a
// key), unlinked from and relinked into the subsystems that allow it, which leaves their live
// controllers alone. A host no subsystem allows is removed instead. The host's lock is held.
func (s *Server) settleHostKeys(ctx context.Context, nqn string, rec pool.Record) error {
	if keys, ok := s.idx.keysOf(nqn, rec); ok {
		if err := s.target.EnsureHost(ctx, nvmet.Host{NQN: nqn, DHCHAPKey: keys.DHCHAPKey, DHCHAPCtrlKey: keys.DHCHAPCtrlKey}); err != nil {
			return fmt.Errorf("setting the DH-HMAC-CHAP keys of host %s: %w", nqn, err)
		}
		return nil
	}
	has, err := s.target.HostHasKey(ctx, nqn)
	if err != nil || !has {
		return err
	}
	subs, err := s.target.List(ctx)
	if err != nil {
		return err
	}
	var allowing []string
	for _, sub := range subs {
		if slices.Contains(sub.Hosts, nqn) {
			allowing = append(allowing, sub.NQN)
		}
	}
	for _, sub := range allowing {
		if err := s.target.DisallowHost(ctx, sub, nqn); err != nil {
			return err
		}
	}
	if err := s.target.RemoveHost(ctx, nqn); err != nil {
		return fmt.Errorf("dropping the DH-HMAC-CHAP keys of host %s: %w", nqn, err)
	}
	klog.FromContext(ctx).Info("Dropped a host's DH-HMAC-CHAP keys: none of its publications has any now", "hostNQN", nqn)
	for _, sub := range allowing {
		if err := s.target.AllowHost(ctx, sub, nqn); err != nil {
			return err
		}
	}
	return nil
}

// export projects a volume's recorded hosts into configfs: one subsystem per host, on the
// ports of the volume's transports, and no other subsystem of the volume. have lists our
// subsystems' NQNs (nil: read them now); a subsystem created since is never one to remove,
// since the caller holds the volume's lock.
func (s *Server) export(ctx context.Context, rec pool.Record, have []string) error {
	want := map[string]bool{}
	if len(rec.Hosts) > 0 {
		v, err := s.pool.Activate(ctx, rec.ID)
		if err != nil {
			return err
		}
		ports := s.portIDs(rec.Transports)
		for _, h := range rec.Hosts {
			sub := s.subsystem(rec, h.NQN, v.Path, ports)
			want[sub.NQN] = true
			if err := s.exportTo(ctx, rec, h.NQN, sub); err != nil {
				return err
			}
		}
	}
	if have == nil {
		var err error
		if have, err = s.target.NQNs(ctx); err != nil {
			return err
		}
	}
	var errs []error
	for _, nqn := range have {
		if !want[nqn] && s.volumeOfNQN(nqn) == rec.ID {
			errs = append(errs, s.target.RemoveSubsystem(ctx, nqn))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) subsystem(rec pool.Record, hostNQN, devicePath string, ports []uint16) nvmet.Subsystem {
	return nvmet.Subsystem{
		NQN:   s.hostSubsystemNQN(rec.ID, hostNQN),
		Model: "nvmeof-csi",
		Namespace: nvmet.Namespace{
			ID:         1,
			DevicePath: devicePath,
			UUID:       rec.UUID,
			ANAGroupID: 1,
		},
		Hosts: []string{hostNQN},
		Ports: ports,
	}
}

// HostNodes returns the node IDs that presented a host NQN in this storage node's
// publications.
func (s *Server) HostNodes(_ context.Context, req *agentapi.HostNodesRequest) (*agentapi.HostNodesResponse, error) {
	if err := nvmet.ValidateNQN(req.GetHostNqn()); err != nil {
		return nil, rpcerr.Status(rpcerr.Invalidf("host_nqn: %v", err))
	}
	return &agentapi.HostNodesResponse{NodeIds: s.idx.nodesOf(req.GetHostNqn())}, nil
}
