// Package controller is the CSI controller service of nvmeof-csi. It is stateless: volume and
// snapshot IDs name the storage node that holds them (package contract), so every call is
// answered by asking that node's agent.
//
// Concurrency policy lives in one thin layer (locked.go): mutating calls take a per-name
// (Create*) or per-ID try-lock and fail with codes.Aborted at once when another call holds it;
// the logic below it is lock-free and relies on the agents' own per-volume serialization and
// idempotency. Read-only calls take no lock. Errors of the logic are turned into gRPC codes in
// one place, toStatus (errors.go).
package controller

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Options are the dependencies of a Controller.
type Options struct {
	// StorageNodes are the configured storage nodes (agentclient.Config.StorageNodes).
	StorageNodes []agentclient.StorageNode
	// Agents gives the agent client of each storage node. Its clients bound each call (see
	// agentclient.CallTimeout), so that one unreachable storage node cannot use up the whole
	// deadline of a call that asks several at once (placement, lookups, capacity, health).
	Agents agentclient.Source
}

// Controller implements csi.ControllerServer.
type Controller struct {
	csi.UnimplementedControllerServer

	nodes  []agentclient.StorageNode // sorted by name
	byName map[string]agentclient.StorageNode
	agents agentclient.Source
	locks  keylock.Locks
}

var _ csi.ControllerServer = (*Controller)(nil)

// New returns a controller over the given storage nodes.
func New(o Options) *Controller {
	c := &Controller{
		nodes:  slices.Clone(o.StorageNodes),
		byName: map[string]agentclient.StorageNode{},
		agents: o.Agents,
	}
	slices.SortFunc(c.nodes, func(a, b agentclient.StorageNode) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range c.nodes {
		c.byName[n.Name] = n
	}
	return c
}

// capabilities are the controller RPCs this service implements.
var capabilities = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
	csi.ControllerServiceCapability_RPC_GET_VOLUME,
	csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
	// CSI 1.13 replaced the removed VOLUME_CONDITION with these two.
	csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
	csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
}

// ControllerGetCapabilities implements csi.ControllerServer.
func (c *Controller) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, t := range capabilities {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return resp, nil
}

// Object kinds of contract.ParseObjectID.
const (
	kindVolume   = "vol"
	kindSnapshot = "snap"
)

// target is a parsed volume or snapshot ID with its storage node's agent.
type target struct {
	node    agentclient.StorageNode
	agentID string
	agent   agentapi.AgentClient
}

// resolve parses a volume (kind "vol") or snapshot ("snap") ID. A malformed ID or one naming
// a storage node that is not configured is rpcerr.ErrNotFound, as CSI asks.
func (c *Controller) resolve(id, kind string) (target, error) {
	nodeName, agentID, ok := contract.ParseObjectID(id, kind)
	if !ok {
		return target{}, rpcerr.NotFoundf("%s %q: no such %s (malformed ID)", kindName(kind), id, kindName(kind))
	}
	node, ok := c.byName[nodeName]
	if !ok {
		return target{}, rpcerr.NotFoundf("%s %q: storage node %q is not configured", kindName(kind), id, nodeName)
	}
	agent, err := c.agents.Client(nodeName)
	if err != nil {
		return target{}, err
	}
	return target{node: node, agentID: agentID, agent: agent}, nil
}

func kindName(kind string) string {
	if kind == kindSnapshot {
		return "snapshot"
	}
	return "volume"
}

// nodeResult is one storage node's answer in a fan-out.
type nodeResult[T any] struct {
	node agentclient.StorageNode
	val  T
	err  error
}

// fanOut asks every node in parallel (each call bounded by the Source's clients, see
// Options.Agents) and returns the answers in the order of nodes.
func fanOut[T any](ctx context.Context, c *Controller, nodes []agentclient.StorageNode,
	ask func(ctx context.Context, agent agentapi.AgentClient) (T, error)) []nodeResult[T] {
	return perNode(ctx, c, nodes, func(ctx context.Context, _ agentclient.StorageNode, agent agentapi.AgentClient) (T, error) {
		return ask(ctx, agent)
	})
}

// perNode is fanOut for questions that depend on the node asked.
func perNode[T any](ctx context.Context, c *Controller, nodes []agentclient.StorageNode,
	ask func(ctx context.Context, node agentclient.StorageNode, agent agentapi.AgentClient) (T, error)) []nodeResult[T] {
	out := make([]nodeResult[T], len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i].node = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent, err := c.agents.Client(n.Name)
			if err != nil {
				out[i].err = err
				return
			}
			out[i].val, out[i].err = ask(ctx, n, agent)
		}()
	}
	wg.Wait()
	return out
}

// logSkipped logs a storage node left out of a fan-out answer.
func logSkipped(ctx context.Context, node string, err error, what string) {
	klog.FromContext(ctx).Error(err, "Storage node did not answer; leaving it out", "storageNode", node, "query", what)
}
