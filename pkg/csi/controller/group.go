package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Group snapshots (the CSI GroupController service).
//
// A group snapshot's ID is agentapi.GroupSnapshotID of its name; each member is a snapshot of
// one source volume on that volume's storage node, named "<group ID>/<source agent ID>" and
// labelled with the group ID, so that Get and Delete find the members on every node.
//
// Crash consistency: members on one storage node are made by one CreateGroupSnapshot (one
// write hold on that node). Members on several nodes take two phases: HoldWrites on every
// node (in parallel), then CreateGroupSnapshot under each node's hold. No member is made
// before every node holds writes, and each node makes its members while its own hold is
// intact; so the members show every volume at one instant: a write any member shows was
// acknowledged before the write holds began, and none that was acknowledged later is shown.
// Each agent ends its hold by itself at GroupHoldTimeout, even if this controller dies; a
// hold that ended before its node's members were made fails phase two there, and the
// controller deletes the members other nodes made (Aborted: the CO retries). A retry that
// finds some members of the group (an attempt cut short) deletes them and starts again; one
// that finds them all returns them.

// GroupHoldTimeout bounds how long writes to a group's volumes stay held on each storage node
// of a group snapshot across nodes (the agents enforce it).
const GroupHoldTimeout = 5 * time.Second

// keyGroup is the lock namespace of group snapshots (by ID; Create derives it from the name).
const keyGroup = "group/"

// Group implements csi.GroupControllerServer over a Controller's storage nodes.
type Group struct {
	csi.UnimplementedGroupControllerServer
	c *Controller
}

var _ csi.GroupControllerServer = (*Group)(nil)

// NewGroup returns the group controller service of c.
func NewGroup(c *Controller) *Group { return &Group{c: c} }

// GroupControllerGetCapabilities implements csi.GroupControllerServer.
func (g *Group) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: []*csi.GroupControllerServiceCapability{{
		Type: &csi.GroupControllerServiceCapability_Rpc{Rpc: &csi.GroupControllerServiceCapability_RPC{
			Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,
		}},
	}}}, nil
}

// CreateVolumeGroupSnapshot implements csi.GroupControllerServer.
func (g *Group) CreateVolumeGroupSnapshot(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	key := ""
	if req.GetName() != "" {
		key = keyGroup + agentapi.GroupSnapshotID(req.GetName())
	}
	return rpcerr.Result(keylock.Do(ctx, &g.c.locks, key, func(ctx context.Context) (*csi.CreateVolumeGroupSnapshotResponse, error) {
		return g.c.createGroup(ctx, req)
	}))
}

// DeleteVolumeGroupSnapshot implements csi.GroupControllerServer.
func (g *Group) DeleteVolumeGroupSnapshot(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	return locked(ctx, g.c, keyGroup, req.GetGroupSnapshotId(), req, g.c.deleteGroup)
}

// GetVolumeGroupSnapshot implements csi.GroupControllerServer.
func (g *Group) GetVolumeGroupSnapshot(ctx context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	return rpcerr.Result(g.c.getGroup(ctx, req))
}

// member is one snapshot of a group on its storage node.
type member struct {
	node agentclient.StorageNode
	snap *agentapi.Snapshot
}

// memberName is the agent name of the member of group whose source is srcAgentID.
func memberName(groupID, srcAgentID string) string { return groupID + "/" + srcAgentID }

func csiGroup(groupID string, members []member) *csi.VolumeGroupSnapshot {
	out := &csi.VolumeGroupSnapshot{GroupSnapshotId: groupID, ReadyToUse: true}
	var created int64
	for _, m := range members {
		out.Snapshots = append(out.Snapshots, csiSnapshot(m.node.Name, m.snap))
		if t := m.snap.GetCreationTimeUnixNano(); created == 0 || t < created {
			created = t
		}
	}
	out.CreationTime = timestamppb.New(timeFromUnixNano(created))
	return out
}

// groupDeletionPolicyParam is a VolumeGroupSnapshotClass parameter that is accepted and
// ignored: the Kubernetes external-storage suite copies the class's deletionPolicy into its
// parameters. What happens to a group snapshot's content is the class's own deletionPolicy,
// which the snapshot-controller applies; the driver has nothing to decide.
const groupDeletionPolicyParam = "deletionPolicy"

func (c *Controller) createGroup(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	switch {
	case req.GetName() == "":
		return nil, rpcerr.Invalidf("group snapshot name is required")
	case len(req.GetSourceVolumeIds()) == 0:
		return nil, rpcerr.Invalidf("source volume IDs are required")
	}
	for k, v := range req.GetParameters() {
		switch {
		case strings.HasPrefix(k, contract.ReservedPrefix):
		case k == groupDeletionPolicyParam:
			if v != "Delete" && v != "Retain" {
				return nil, rpcerr.Invalidf("group snapshot parameter %s=%q: want Delete or Retain", k, v)
			}
		default:
			return nil, rpcerr.Invalidf("unknown group snapshot parameter %q (VolumeGroupSnapshotClass parameters are not supported)", k)
		}
	}
	groupID := agentapi.GroupSnapshotID(req.GetName())
	// The members by storage node, in the order of the request.
	byNode := map[string][]*agentapi.GroupMember{}
	var nodes []agentclient.StorageNode
	want := map[string]bool{} // CSI snapshot IDs of the members
	for _, id := range req.GetSourceVolumeIds() {
		src, err := c.resolve(id, kindVolume)
		if err != nil {
			return nil, fmt.Errorf("source %w", err)
		}
		name := memberName(groupID, src.agentID)
		snapID := contract.ObjectID(src.node.Name, agentapi.SnapshotID(name))
		if want[snapID] {
			return nil, rpcerr.Invalidf("source volume %q named twice", id)
		}
		want[snapID] = true
		if _, ok := byNode[src.node.Name]; !ok {
			nodes = append(nodes, src.node)
		}
		byNode[src.node.Name] = append(byNode[src.node.Name], &agentapi.GroupMember{Name: name, SourceVolumeId: src.agentID})
	}

	existing, err := c.groupMembers(ctx, groupID, nodes)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		done, err := c.existingGroup(ctx, groupID, existing, want)
		if done != nil || err != nil {
			return done, err
		}
	}

	log := klog.FromContext(ctx).WithValues("groupSnapshotID", groupID, "name", req.GetName())
	start := time.Now()
	var members []member
	if len(nodes) == 1 {
		members, err = c.groupOnOneNode(ctx, groupID, nodes[0], byNode[nodes[0].Name])
	} else {
		members, err = c.groupAcrossNodes(ctx, groupID, nodes, byNode)
	}
	if err != nil {
		return nil, err
	}
	log.V(2).Info("Group snapshot created", "members", len(members), "storageNodes", len(nodes), "took", time.Since(start))
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(groupID, members)}, nil
}

// existingGroup answers a retry: the group when all its members exist; AlreadyExists when
// the name was used for other volumes; otherwise (an attempt cut short) it deletes the
// members found and returns nil, nil to start again.
func (c *Controller) existingGroup(ctx context.Context, groupID string, existing []member, want map[string]bool) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	for _, m := range existing {
		if !want[contract.ObjectID(m.node.Name, m.snap.GetId())] {
			return nil, rpcerr.Existsf("group snapshot %s exists with other source volumes (it holds a snapshot of %s)",
				groupID, contract.ObjectID(m.node.Name, m.snap.GetSourceVolumeId()))
		}
	}
	if len(existing) == len(want) {
		return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(groupID, existing)}, nil
	}
	klog.FromContext(ctx).Info("Deleting the members of a group snapshot cut short before taking it again",
		"groupSnapshotID", groupID, "found", len(existing), "members", len(want))
	return nil, c.deleteMembers(ctx, existing)
}

func (c *Controller) groupOnOneNode(ctx context.Context, groupID string, node agentclient.StorageNode, ms []*agentapi.GroupMember) ([]member, error) {
	agent, err := c.agents.Client(node.Name)
	if err != nil {
		return nil, err
	}
	resp, err := agent.CreateGroupSnapshot(ctx, &agentapi.CreateGroupSnapshotRequest{GroupId: groupID, Members: ms})
	if err != nil {
		return nil, wrapAgent(node.Name, "group snapshot "+groupID, err)
	}
	klog.FromContext(ctx).V(2).Info("Writes held for a group snapshot", "groupSnapshotID", groupID, "storageNode", node.Name,
		"hold", time.Duration(resp.GetHoldNanos()))
	var out []member
	for _, s := range resp.GetSnapshots() {
		out = append(out, member{node, s})
	}
	return out, nil
}

// groupAcrossNodes runs the two phases (see the top of this file).
func (c *Controller) groupAcrossNodes(ctx context.Context, groupID string, nodes []agentclient.StorageNode, byNode map[string][]*agentapi.GroupMember) ([]member, error) {
	holdID := groupID + "/" + randomHex(8)
	log := klog.FromContext(ctx).WithValues("groupSnapshotID", groupID, "holdID", holdID)
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), GroupHoldTimeout)
		defer cancel()
		for _, r := range fanOut(rctx, c, nodes, func(ctx context.Context, a agentapi.AgentClient) (*agentapi.ReleaseWritesResponse, error) {
			return a.ReleaseWrites(ctx, &agentapi.ReleaseWritesRequest{HoldId: holdID})
		}) {
			if r.err != nil {
				log.Error(r.err, "Cannot release a write hold; the agent ends it at its timeout", "storageNode", r.node.Name)
			}
		}
	}

	held := perNode(ctx, c, nodes, func(ctx context.Context, n agentclient.StorageNode, a agentapi.AgentClient) (*agentapi.HoldWritesResponse, error) {
		var vols []string
		for _, m := range byNode[n.Name] {
			vols = append(vols, m.GetSourceVolumeId())
		}
		return a.HoldWrites(ctx, &agentapi.HoldWritesRequest{HoldId: holdID, VolumeIds: vols, TimeoutMs: GroupHoldTimeout.Milliseconds()})
	})
	for _, r := range held {
		if r.err != nil {
			release()
			return nil, wrapAgent(r.node.Name, "hold writes for group snapshot "+groupID, r.err)
		}
	}
	made := perNode(ctx, c, nodes, func(ctx context.Context, n agentclient.StorageNode, a agentapi.AgentClient) (*agentapi.CreateGroupSnapshotResponse, error) {
		return a.CreateGroupSnapshot(ctx, &agentapi.CreateGroupSnapshotRequest{GroupId: groupID, Members: byNode[n.Name], HoldId: holdID})
	})
	var members []member
	var failed error
	for _, r := range made {
		if r.err != nil {
			failed = wrapAgent(r.node.Name, "group snapshot "+groupID, r.err)
			continue
		}
		log.V(2).Info("Writes held for a group snapshot", "storageNode", r.node.Name, "hold", time.Duration(r.val.GetHoldNanos()))
		for _, s := range r.val.GetSnapshots() {
			members = append(members, member{r.node, s})
		}
	}
	if failed != nil {
		release()
		if err := c.deleteMembers(context.WithoutCancel(ctx), members); err != nil {
			log.Error(err, "Cannot delete the members of a failed group snapshot; a retry deletes them")
		}
		if rpcerr.IsCode(failed, codes.Aborted) {
			return nil, failed
		}
		return nil, fmt.Errorf("%w (the members made were deleted again)", failed)
	}
	return members, nil
}

// groupMembers finds the members of a group on every storage node. A node that does not
// answer fails the call if it is one of mustAnswer (it may hold a member), else it is left
// out.
func (c *Controller) groupMembers(ctx context.Context, groupID string, mustAnswer []agentclient.StorageNode) ([]member, error) {
	answers := fanOut(ctx, c, c.nodes, func(ctx context.Context, a agentapi.AgentClient) ([]*agentapi.Snapshot, error) {
		resp, err := a.ListSnapshots(ctx, &agentapi.ListSnapshotsRequest{})
		return resp.GetSnapshots(), err
	})
	var out []member
	for _, a := range answers {
		if a.err != nil {
			if slices.ContainsFunc(mustAnswer, func(n agentclient.StorageNode) bool { return n.Name == a.node.Name }) {
				return nil, wrapAgent(a.node.Name, "list snapshots", a.err)
			}
			logSkipped(ctx, a.node.Name, a.err, "group snapshot members")
			continue
		}
		for _, s := range a.val {
			if s.GetGroupId() == groupID {
				out = append(out, member{a.node, s})
			}
		}
	}
	return out, nil
}

// deleteMembers deletes snapshots on their nodes; ones already gone are fine.
func (c *Controller) deleteMembers(ctx context.Context, members []member) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent, err := c.agents.Client(m.node.Name)
			if err == nil {
				_, err = agent.DeleteSnapshot(ctx, &agentapi.DeleteSnapshotRequest{Id: m.snap.GetId()})
			}
			if err != nil && !rpcerr.IsCode(err, codes.NotFound) {
				mu.Lock()
				errs = append(errs, wrapAgent(m.node.Name, "delete snapshot "+m.snap.GetId(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%w (and %d more)", errs[0], len(errs)-1)
	}
	return nil
}

func (c *Controller) getGroup(ctx context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if id == "" {
		return nil, rpcerr.Invalidf("group snapshot ID is required")
	}
	if !agentapi.IsGroupSnapshotID(id) {
		return nil, rpcerr.NotFoundf("group snapshot %q: no such group snapshot (malformed ID)", id)
	}
	members, err := c.groupMembers(ctx, id, c.namedNodes(req.GetSnapshotIds()))
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, rpcerr.NotFoundf("group snapshot %s: no member on any storage node", id)
	}
	if err := matchMembers(id, members, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(id, members)}, nil
}

func (c *Controller) deleteGroup(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if id == "" {
		return nil, rpcerr.Invalidf("group snapshot ID is required")
	}
	if !agentapi.IsGroupSnapshotID(id) {
		klog.FromContext(ctx).Info("Deleting a group snapshot that cannot exist: nothing to do", "groupSnapshotID", id)
		return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
	}
	// Every node that may hold a member must answer: a member left behind would be leaked.
	members, err := c.groupMembers(ctx, id, c.nodes)
	if err != nil {
		return nil, err
	}
	if err := matchMembers(id, members, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	if err := c.deleteMembers(ctx, members); err != nil {
		return nil, err
	}
	klog.FromContext(ctx).V(2).Info("Group snapshot deleted", "groupSnapshotID", id, "members", len(members))
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

// matchMembers checks the snapshot IDs a CO names for a group against its members: naming a
// snapshot that is not one of them is InvalidArgument (CSI: report a mismatch the plugin can
// detect). Members the CO does not name (already deleted on its side) are not an error.
func matchMembers(groupID string, members []member, ids []string) error {
	have := map[string]bool{}
	for _, m := range members {
		have[contract.ObjectID(m.node.Name, m.snap.GetId())] = true
	}
	for _, id := range ids {
		if !have[id] {
			if _, _, ok := contract.ParseObjectID(id, kindSnapshot); !ok {
				continue // cannot exist: nothing to mismatch
			}
			return rpcerr.Invalidf("snapshot %q is not a member of group snapshot %s", id, groupID)
		}
	}
	return nil
}

// namedNodes returns the configured storage nodes that snapshot IDs name.
func (c *Controller) namedNodes(ids []string) []agentclient.StorageNode {
	var out []agentclient.StorageNode
	for _, id := range ids {
		if n, _, ok := c.nodeOf(id, kindSnapshot); ok && !slices.ContainsFunc(out, func(o agentclient.StorageNode) bool { return o.Name == n.Name }) {
			out = append(out, n)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
