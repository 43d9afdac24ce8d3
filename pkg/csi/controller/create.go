package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// source is a resolved volume content source.
type source struct {
	node  string // empty: no source
	agent *agentapi.ContentSource
	size  int64
}

// createVolume places and creates a volume. Placement: a volume of this name that exists
// already stays where it is (idempotency across lost responses); a clone or restore goes to
// its source's storage node; otherwise the best-ranked candidate (storageNodes parameter,
// topology, capacity) that accepts it.
func (c *Controller) createVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, rpcerr.Invalidf("volume name is required")
	}
	if _, err := contract.ParseCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	if len(req.GetMutableParameters()) > 0 {
		return nil, rpcerr.Invalidf("mutable parameters (VolumeAttributeClass) are not supported")
	}
	if _, set := req.GetParameters()[contract.ContextZeroed]; set {
		return nil, rpcerr.Invalidf("parameter %q is set by the driver, not by a StorageClass", contract.ContextZeroed)
	}
	params, allowed, err := c.storageClass(req.GetParameters())
	if err != nil {
		return nil, err
	}
	src, err := c.contentSource(ctx, req.GetVolumeContentSource())
	if err != nil {
		return nil, err
	}
	size, err := volumeSize(req.GetCapacityRange(), src.size)
	if err != nil {
		return nil, err
	}
	areq := &agentapi.CreateVolumeRequest{Name: req.GetName(), SizeBytes: size, LimitBytes: req.GetCapacityRange().GetLimitBytes(),
		Source: src.agent, Labels: maps.Clone(params.Reserved)}
	node, vol, err := c.provision(ctx, req, areq, allowed, src)
	if err != nil {
		return nil, err
	}
	v := csiVolume(node, vol)
	params.Zeroed = src.node == "" // a new thin volume reads zeros; a clone holds its source's data
	v.VolumeContext = params.VolumeContext()
	v.ContentSource = req.GetVolumeContentSource()
	klog.FromContext(ctx).V(2).Info("Volume created", "name", req.GetName(), "volumeID", v.VolumeId, "sizeBytes", v.CapacityBytes)
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

// contentSource resolves the source of a clone or restore; one that does not exist (malformed
// ID, unknown storage node, unknown to the agent) is NotFound.
func (c *Controller) contentSource(ctx context.Context, cs *csi.VolumeContentSource) (source, error) {
	switch {
	case cs == nil:
		return source{}, nil
	case cs.GetSnapshot() != nil:
		id := cs.GetSnapshot().GetSnapshotId()
		t, err := c.resolve(id, kindSnapshot)
		if err != nil {
			return source{}, fmt.Errorf("source %w", err)
		}
		resp, err := t.agent.GetSnapshot(ctx, &agentapi.GetSnapshotRequest{Id: t.agentID})
		if err != nil {
			return source{}, fmt.Errorf("source snapshot %s: %w", id, err)
		}
		return source{
			node:  t.node.Name,
			agent: &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: t.agentID}},
			size:  resp.GetSnapshot().GetSizeBytes(),
		}, nil
	case cs.GetVolume() != nil:
		id := cs.GetVolume().GetVolumeId()
		t, err := c.resolve(id, kindVolume)
		if err != nil {
			return source{}, fmt.Errorf("source %w", err)
		}
		resp, err := t.agent.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: t.agentID})
		if err != nil {
			return source{}, fmt.Errorf("source volume %s: %w", id, err)
		}
		return source{
			node:  t.node.Name,
			agent: &agentapi.ContentSource{Source: &agentapi.ContentSource_VolumeId{VolumeId: t.agentID}},
			size:  resp.GetVolume().GetSizeBytes(),
		}, nil
	}
	return source{}, rpcerr.Invalidf("unsupported volume content source %v", cs)
}

// provision chooses the storage node and asks its agent to create the volume. With one
// storage node that takes one agent call (the agent's create is idempotent by name and refuses
// what does not fit); with several, one survey first (where the name may exist already, and
// where it fits), then the create.
func (c *Controller) provision(ctx context.Context, req *csi.CreateVolumeRequest, areq *agentapi.CreateVolumeRequest,
	allowed []agentclient.StorageNode, src source) (agentclient.StorageNode, *agentapi.Volume, error) {
	topo := req.GetAccessibilityRequirements()
	isAllowed := func(n agentclient.StorageNode) bool {
		return slices.ContainsFunc(allowed, func(a agentclient.StorageNode) bool { return a.Name == n.Name })
	}
	if len(c.nodes) == 1 && src.node == "" {
		node := c.nodes[0]
		if !meetsRequisite(node, topo) {
			return node, nil, rpcerr.Exhaustedf("storage node %s is not accessible from the requisite topology %v", node.Name, topo.GetRequisite())
		}
		vol, err := c.createOn(ctx, node, areq)
		return node, vol, err
	}

	var answers []nodeResult[*agentapi.GetCapacityResponse]
	if len(c.nodes) > 1 {
		answers = c.survey(ctx, agentapi.VolumeID(req.GetName()))
	}
	node, ok, err := holder(ctx, answers, fmt.Sprintf("volume %q", req.GetName()))
	if err != nil {
		return node, nil, err
	}
	if ok {
		switch {
		case src.node != "" && node.Name != src.node:
			return node, nil, rpcerr.Existsf("volume %q exists on storage node %s, not on its source's node %s", req.GetName(), node.Name, src.node)
		case !isAllowed(node):
			return node, nil, rpcerr.Existsf("volume %q exists on storage node %s, which the storageNodes parameter excludes", req.GetName(), node.Name)
		case !meetsRequisite(node, topo):
			return node, nil, rpcerr.Existsf("volume %q exists on storage node %s, which is not accessible from the requisite topology", req.GetName(), node.Name)
		}
		vol, err := c.createOn(ctx, node, areq)
		return node, vol, err
	}

	if src.node != "" {
		node := c.byName[src.node]
		switch {
		case !isAllowed(node):
			return node, nil, rpcerr.Invalidf("the content source is on storage node %s, which the storageNodes parameter excludes", node.Name)
		case !meetsRequisite(node, topo):
			return node, nil, rpcerr.Exhaustedf("the content source is on storage node %s, which is not accessible from the requisite topology", node.Name)
		}
		vol, err := c.createOn(ctx, node, areq)
		return node, vol, err
	}

	ranked, err := rank(ctx, answers, allowed, topo, areq.GetSizeBytes())
	if err != nil {
		return agentclient.StorageNode{}, nil, err
	}
	for _, node := range ranked {
		vol, err := c.createOn(ctx, node, areq)
		if rpcerr.IsCode(err, codes.ResourceExhausted) {
			// Definitely not created: the next candidate may have room.
			klog.FromContext(ctx).V(2).Info("Storage node is full; trying the next", "storageNode", node.Name, "err", err)
			continue
		}
		return node, vol, err
	}
	return agentclient.StorageNode{}, nil, rpcerr.Exhaustedf("no storage node among %s could hold %d bytes; delete unused volumes "+
		"and snapshots (`kubectl nvmeof orphans`) or add capacity (`kubectl nvmeof status`)", names(ranked), areq.GetSizeBytes())
}

func (c *Controller) createOn(ctx context.Context, node agentclient.StorageNode, areq *agentapi.CreateVolumeRequest) (*agentapi.Volume, error) {
	agent, err := c.agents.Client(node.Name)
	if err != nil {
		return nil, err
	}
	resp, err := agent.CreateVolume(ctx, areq)
	if err != nil {
		return nil, fmt.Errorf("storage node %s: create volume %q: %w", node.Name, areq.GetName(), err)
	}
	return resp.GetVolume(), nil
}
