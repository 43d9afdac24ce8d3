package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// publishVolume allows the node's host NQN on the volume's subsystem (fencing every other
// host) and returns what NodeStageVolume needs to connect.
func (c *Controller) publishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, rpcerr.Invalidf("volume ID is required")
	case req.GetNodeId() == "":
		return nil, rpcerr.Invalidf("node ID is required")
	case req.GetVolumeCapability() == nil:
		return nil, rpcerr.Invalidf("volume capability is required")
	}
	vc, err := contract.ParseCapability(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	tname := req.GetVolumeContext()[contract.ParamTransport]
	if tname == "" {
		tname = contract.DefaultTransport
	}
	transport, err := agentapi.ParseTransport(tname)
	if err != nil {
		return nil, rpcerr.Invalidf("volume context %s: %v", contract.ParamTransport, err)
	}
	t, vol, err := c.getAgentVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	nodeName, hostNQN, err := contract.ParseNodeID(req.GetNodeId())
	if err != nil {
		return nil, rpcerr.NotFoundf("node %q does not exist: %v", req.GetNodeId(), err)
	}
	hostKey, ctrlKey, err := contract.DHCHAPKeys(req.GetSecrets(), nodeName)
	if err != nil {
		return nil, rpcerr.Preconditionf("%v", err)
	}
	if err := c.checkHostNQN(ctx, t.node.Name, hostNQN, req.GetNodeId()); err != nil {
		return nil, err
	}
	if !vc.MultiNode {
		for _, h := range vol.GetHosts() {
			if h.GetNqn() != hostNQN && h.GetNodeId() != req.GetNodeId() {
				return nil, rpcerr.Preconditionf("volume %s is published to node %s; access mode %s allows one node", req.GetVolumeId(), hostName(h), vc.Mode)
			}
		}
	}
	resp, err := t.agent.PublishVolume(ctx, &agentapi.PublishVolumeRequest{
		VolumeId: t.agentID, HostNqn: hostNQN, Transport: transport, NodeId: req.GetNodeId(),
		ReadOnly: req.GetReadonly(), DhchapHostKey: hostKey, DhchapCtrlKey: ctrlKey,
	})
	if err != nil {
		return nil, fmt.Errorf("storage node %s: publish volume %s to %s: %w", t.node.Name, t.agentID, hostNQN, err)
	}
	portals := make([]contract.Portal, 0, len(resp.GetPortals()))
	for _, p := range resp.GetPortals() {
		portals = append(portals, contract.Portal{Address: p.GetAddress(), Port: p.GetServiceId()})
	}
	if len(portals) == 0 {
		return nil, rpcerr.Preconditionf("storage node %s has no %s portal", t.node.Name, tname)
	}
	if got := agentapi.TransportName(resp.GetTransport()); got != "" {
		tname = got
	}
	klog.FromContext(ctx).V(2).Info("Volume published", "volumeID", req.GetVolumeId(), "nodeID", req.GetNodeId())
	pc := map[string]string{
		contract.PublishSubsysNQN: resp.GetSubsystemNqn(),
		contract.PublishNSUUID:    resp.GetNamespaceUuid(),
		contract.PublishTransport: tname,
		contract.PublishPortals:   contract.FormatPortals(portals),
	}
	if hostKey != "" {
		pc[contract.PublishDHCHAP] = "true"
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: pc}, nil
}

func hostName(h *agentapi.Host) string {
	if h.GetNodeId() != "" {
		return h.GetNodeId()
	}
	return h.GetNqn()
}

// unpublishVolume removes the node's host NQN from the volume (all hosts when no node ID is
// given, as CSI asks). A volume or node that does not exist is not published: OK.
func (c *Controller) unpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, rpcerr.Invalidf("volume ID is required")
	}
	done := &csi.ControllerUnpublishVolumeResponse{}
	if _, _, ok := contract.ParseObjectID(req.GetVolumeId(), kindVolume); !ok {
		// No volume can have this ID, so nothing is exported under it.
		return done, nil
	}
	t, err := c.resolve(req.GetVolumeId(), kindVolume)
	if errors.Is(err, rpcerr.ErrNotFound) {
		// Its storage node is not configured: it may still export the volume, and this
		// controller cannot revoke that. OK would let the attacher forget the access.
		return nil, rpcerr.Preconditionf("%v: access to the volume cannot be revoked from this controller; "+
			"add the storage node back to its configuration, or revoke on the storage node itself", err)
	}
	if err != nil {
		return nil, err
	}
	var nqns []string
	if req.GetNodeId() == "" {
		resp, err := t.agent.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: t.agentID})
		if rpcerr.IsCode(err, codes.NotFound) {
			return done, nil
		}
		if err != nil {
			return nil, fmt.Errorf("storage node %s: volume %s: %w", t.node.Name, t.agentID, err)
		}
		for _, h := range resp.GetVolume().GetHosts() {
			nqns = append(nqns, h.GetNqn())
		}
	} else {
		_, nqn, err := contract.ParseNodeID(req.GetNodeId())
		if err != nil {
			// Publish refuses what ParseNodeID refuses: no host has access under this ID.
			return done, nil
		}
		nqns = []string{nqn}
	}
	for _, nqn := range nqns {
		_, err := t.agent.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: t.agentID, HostNqn: nqn})
		if rpcerr.IsCode(err, codes.NotFound) {
			return done, nil
		}
		if err != nil {
			return nil, fmt.Errorf("storage node %s: unpublish volume %s from %s: %w", t.node.Name, t.agentID, nqn, err)
		}
	}
	return done, nil
}

// checkHostNQN refuses a host NQN that another node presented on any other storage node (the
// volume's own agent checks its publications itself): two nodes sharing an NQN would share
// access. A storage node that does not answer cannot say; it is logged and left out.
func (c *Controller) checkHostNQN(ctx context.Context, volumeNode, hostNQN, nodeID string) error {
	var others []agentclient.StorageNode
	for _, n := range c.nodes {
		if n.Name != volumeNode {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return nil
	}
	answers := fanOut(ctx, c, others, func(ctx context.Context, a agentapi.AgentClient) (*agentapi.HostNodesResponse, error) {
		return a.HostNodes(ctx, &agentapi.HostNodesRequest{HostNqn: hostNQN})
	})
	for _, a := range answers {
		if a.err != nil {
			logSkipped(ctx, a.node.Name, a.err, "HostNodes")
			continue
		}
		for _, other := range a.val.GetNodeIds() {
			if other != nodeID {
				return rpcerr.Preconditionf("host NQN %s is already used by node %q (on storage node %s), and now node %q presents it: "+
					"every node needs its own /etc/nvme/hostnqn and hostid", hostNQN, other, a.node.Name, nodeID)
			}
		}
	}
	return nil
}
