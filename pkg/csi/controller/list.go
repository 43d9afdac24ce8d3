package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Pagination. Lists are sorted by storage node name, then agent ID; a next_token is the ID of
// the first entry of the next page, and a page starts at the first entry at or after its
// token. Entries created or deleted between pages therefore never shift a page (CSI allows
// missing or repeated entries in that case, this never repeats one). A token that is not an ID
// of the listed kind is invalid: Aborted.

// keyed is a list entry with its sort key and ID.
type keyed[T any] struct {
	key, id string
	val     T
}

// paginate sorts entries and returns the page starting at token with at most maxEntries
// entries (0: all), and the next token.
func paginate[T any](entries []keyed[T], kind, token string, maxEntries int32) ([]T, string, error) {
	if maxEntries < 0 {
		return nil, "", rpcerr.Invalidf("max_entries must not be negative")
	}
	start := ""
	if token != "" {
		node, agentID, ok := contract.ParseObjectID(token, kind)
		if !ok {
			return nil, "", rpcerr.Abortedf("invalid starting token %q: not a %s ID", token, kindName(kind))
		}
		start = sortKey(node, agentID)
	}
	slices.SortFunc(entries, func(a, b keyed[T]) int { return cmp.Compare(a.key, b.key) })
	i, _ := slices.BinarySearchFunc(entries, start, func(e keyed[T], k string) int { return cmp.Compare(e.key, k) })
	entries = entries[i:]
	next := ""
	if maxEntries > 0 && len(entries) > int(maxEntries) {
		next = entries[maxEntries].id
		entries = entries[:maxEntries]
	}
	out := make([]T, len(entries))
	for i, e := range entries {
		out[i] = e.val
	}
	return out, next, nil
}

// listAll lists one kind of object on every storage node. Any node that does not answer fails
// the whole list (Unavailable): a partial list would tell the CO that volumes are gone or
// unpublished.
func listAll[T any](ctx context.Context, c *Controller, nodes []agentclient.StorageNode, what string,
	list func(ctx context.Context, a agentapi.AgentClient) ([]T, error)) ([]nodeResult[[]T], error) {
	answers := fanOut(ctx, c, nodes, list)
	for _, a := range answers {
		if a.err != nil {
			return nil, rpcerr.Unavailablef("storage node %s: list %s: %v", a.node.Name, what, a.err)
		}
	}
	return answers, nil
}

func listVolumesOf(ctx context.Context, a agentapi.AgentClient) ([]*agentapi.Volume, error) {
	resp, err := a.ListVolumes(ctx, &agentapi.ListVolumesRequest{})
	return resp.GetVolumes(), err
}

// listVolumes lists the volumes of all storage nodes with the nodes they are published to.
func (c *Controller) listVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	// Check the token before asking anyone.
	if _, _, err := paginate[struct{}](nil, kindVolume, req.GetStartingToken(), req.GetMaxEntries()); err != nil {
		return nil, err
	}
	answers, err := listAll(ctx, c, c.nodes, "volumes", listVolumesOf)
	if err != nil {
		return nil, err
	}
	var entries []keyed[*csi.ListVolumesResponse_Entry]
	for _, a := range answers {
		for _, v := range a.val {
			entries = append(entries, keyed[*csi.ListVolumesResponse_Entry]{
				key: sortKey(a.node.Name, v.GetId()),
				id:  contract.ObjectID(a.node.Name, v.GetId()),
				val: &csi.ListVolumesResponse_Entry{
					Volume: csiVolume(a.node, v),
					Status: &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: publishedNodeIDs(v)},
				},
			})
		}
	}
	page, next, err := paginate(entries, kindVolume, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	return &csi.ListVolumesResponse{Entries: page, NextToken: next}, nil
}

// nodeOf returns the configured storage node of an ID, if any.
func (c *Controller) nodeOf(id, kind string) (agentclient.StorageNode, string, bool) {
	node, agentID, ok := contract.ParseObjectID(id, kind)
	if !ok {
		return agentclient.StorageNode{}, "", false
	}
	n, ok := c.byName[node]
	return n, agentID, ok
}

func wrapAgent(node, what string, err error) error {
	return fmt.Errorf("storage node %s: %s: %w", node, what, err)
}
