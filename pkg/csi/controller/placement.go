package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Topology. A storage node's labels say where its volumes are reachable from; a volume there
// is accessible from a topology segment (a worker node's labels) that contains every label
// with the same value. A storage node without labels is reachable from everywhere. This is
// the same test Kubernetes applies to the PV node affinity built from accessible_topology.

// accessibleFrom reports whether a volume on a storage node with labels is accessible from
// segment.
func accessibleFrom(labels, segment map[string]string) bool {
	for k, v := range labels {
		if sv, ok := segment[k]; !ok || sv != v {
			return false
		}
	}
	return true
}

// meetsRequisite reports whether the node is accessible from at least one requisite segment
// (any node does when there is no requisite topology).
func meetsRequisite(node agentclient.StorageNode, req *csi.TopologyRequirement) bool {
	if len(req.GetRequisite()) == 0 {
		return true
	}
	return slices.ContainsFunc(req.GetRequisite(), func(t *csi.Topology) bool {
		return accessibleFrom(node.Topology, t.GetSegments())
	})
}

// preferenceRank is the index of the first preferred segment the node is accessible from, or
// len(preferred): CSI asks to try preferred segments in order.
func preferenceRank(node agentclient.StorageNode, req *csi.TopologyRequirement) int {
	for i, t := range req.GetPreferred() {
		if accessibleFrom(node.Topology, t.GetSegments()) {
			return i
		}
	}
	return len(req.GetPreferred())
}

// storageClass parses StorageClass parameters (errors are InvalidArgument) and returns the
// storage nodes they allow.
func (c *Controller) storageClass(raw map[string]string) (contract.Params, []agentclient.StorageNode, error) {
	params, err := contract.ParseParams(raw)
	if err != nil {
		return contract.Params{}, nil, err
	}
	allowed, err := c.allowedNodes(params.StorageNodes)
	return params, allowed, err
}

// allowedNodes returns the storage nodes a storageNodes parameter allows (all when empty).
func (c *Controller) allowedNodes(names []string) ([]agentclient.StorageNode, error) {
	if len(names) == 0 {
		return c.nodes, nil
	}
	var out []agentclient.StorageNode
	for _, name := range names {
		n, ok := c.byName[name]
		if !ok {
			return nil, rpcerr.Invalidf("storageNodes parameter names %q, which is not a configured storage node", name)
		}
		if !slices.ContainsFunc(out, func(o agentclient.StorageNode) bool { return o.Name == name }) {
			out = append(out, n)
		}
	}
	return out, nil
}

// survey asks every storage node, in one fan-out, for its capacity and whether it already
// holds lookupID (the object a creation is about: its name was maybe created before and the
// response lost). Placement needs both answers, so one round trip gives them.
func (c *Controller) survey(ctx context.Context, lookupID string) []nodeResult[*agentapi.GetCapacityResponse] {
	return fanOut(ctx, c, c.nodes, func(ctx context.Context, a agentapi.AgentClient) (*agentapi.GetCapacityResponse, error) {
		return a.GetCapacity(ctx, &agentapi.GetCapacityRequest{LookupId: lookupID})
	})
}

// holder returns the storage node whose survey answer says it holds the object. While a
// storage node that may hold it does not answer, and no other does, the answer is
// Unavailable: a new object elsewhere would give the name a second object and, once the
// silent node is back, a second ID. One volume per name and a stable ID are worth more than
// provisioning through an outage of one storage node; the error says what to do.
func holder(ctx context.Context, answers []nodeResult[*agentapi.GetCapacityResponse], what string) (agentclient.StorageNode, bool, error) {
	var found []agentclient.StorageNode
	var silent []nodeResult[*agentapi.GetCapacityResponse]
	for _, a := range answers {
		switch {
		case a.err != nil:
			silent = append(silent, a)
		case a.val.GetLookupFound():
			found = append(found, a.node)
		}
	}
	return pickHolder(ctx, found, silent, what)
}

// pickHolder is holder's and locate's decision: the first node found, else Unavailable while
// any node is silent, else none.
func pickHolder[T any](ctx context.Context, found []agentclient.StorageNode, silent []nodeResult[T], what string) (agentclient.StorageNode, bool, error) {
	switch {
	case len(found) > 1:
		klog.FromContext(ctx).Error(nil, "Object exists on several storage nodes; using the first", "object", what, "storageNodes", names(found))
		fallthrough
	case len(found) == 1:
		return found[0], true, nil
	case len(silent) > 0:
		msgs := make([]string, len(silent))
		for i, a := range silent {
			msgs[i] = fmt.Sprintf("%s: %v", a.node.Name, a.err)
		}
		return agentclient.StorageNode{}, false, rpcerr.Unavailablef("cannot tell whether %s exists already: no answer from %s; "+
			"it is not created elsewhere, which could give its name a second copy; retry once the storage node answers, "+
			"or remove it from the controller's storage nodes if it is gone for good", what, strings.Join(msgs, "; "))
	}
	return agentclient.StorageNode{}, false, nil
}

// rank orders the nodes a new volume of size bytes may go to: those allowed, meeting the
// requisite topology and answering the survey with room for it (maximum volume size), by
// preference rank, then most available capacity, then name.
func rank(ctx context.Context, answers []nodeResult[*agentapi.GetCapacityResponse], allowed []agentclient.StorageNode,
	req *csi.TopologyRequirement, size int64) ([]agentclient.StorageNode, error) {
	type fit struct {
		node      agentclient.StorageNode
		available int64
		rank      int
	}
	var fits []fit
	var candidates []agentclient.StorageNode
	var unanswered []string
	var largest int64
	for _, a := range answers {
		if !slices.ContainsFunc(allowed, func(n agentclient.StorageNode) bool { return n.Name == a.node.Name }) || !meetsRequisite(a.node, req) {
			continue
		}
		candidates = append(candidates, a.node)
		if a.err != nil {
			logSkipped(ctx, a.node.Name, a.err, "GetCapacity")
			unanswered = append(unanswered, fmt.Sprintf("%s: %v", a.node.Name, a.err))
			continue
		}
		// A volume fits where the agent would take it (its maximum volume size: the
		// overcommit headroom, 0 when the pool is at its fill level); among those, the most
		// available space (physical truth, below the fill level) wins.
		avail, most := a.val.GetAvailableBytes(), a.val.GetMaximumVolumeBytes()
		largest = max(largest, most)
		if most >= size {
			fits = append(fits, fit{a.node, avail, preferenceRank(a.node, req)})
		}
	}
	switch {
	case len(candidates) == 0:
		return nil, rpcerr.Exhaustedf("no storage node among %s is accessible from the requisite topology %v", names(allowed), req.GetRequisite())
	case len(unanswered) == len(candidates):
		return nil, rpcerr.Unavailablef("no candidate storage node answered: %s; check that their agents run and that the "+
			"controller reaches their addresses with its certificate (`kubectl nvmeof status`)", strings.Join(unanswered, "; "))
	case len(fits) == 0:
		return nil, rpcerr.Exhaustedf("no storage node among %s has %d bytes available (largest: %d); ask for less, delete unused "+
			"volumes and snapshots (`kubectl nvmeof orphans`), or add capacity (`kubectl nvmeof status` shows each pool)", names(candidates), size, largest)
	}
	slices.SortFunc(fits, func(a, b fit) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(b.available, a.available), cmp.Compare(a.node.Name, b.node.Name))
	})
	out := make([]agentclient.StorageNode, len(fits))
	for i, f := range fits {
		out[i] = f.node
	}
	return out, nil
}

// locate finds the storage node holding an object that may exist already, like holder, with
// its own lookup call (snapshots: their node is their source volume's), and like holder it is
// Unavailable while a node that may hold the object does not answer. With one storage node
// there is nothing to look up: the agent's create is idempotent by name.
func (c *Controller) locate(ctx context.Context, what string, exists func(ctx context.Context, a agentapi.AgentClient) error) (agentclient.StorageNode, bool, error) {
	if len(c.nodes) == 1 {
		return agentclient.StorageNode{}, false, nil
	}
	answers := fanOut(ctx, c, c.nodes, func(ctx context.Context, a agentapi.AgentClient) (struct{}, error) {
		return struct{}{}, exists(ctx, a)
	})
	var found []agentclient.StorageNode
	var silent []nodeResult[struct{}]
	for _, a := range answers {
		switch {
		case a.err == nil:
			found = append(found, a.node)
		case !rpcerr.IsCode(a.err, codes.NotFound):
			silent = append(silent, a)
		}
	}
	return pickHolder(ctx, found, silent, what)
}

func names(nodes []agentclient.StorageNode) string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return "[" + strings.Join(out, ", ") + "]"
}
