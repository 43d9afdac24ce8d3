package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// Kinds of orphans, in the order --clean removes them: the paths first, the data last.
const (
	kindController = "controller"
	kindSubsystem  = "subsystem"
	kindHost       = "host"
	kindSnapshot   = "snapshot"
	kindVolume     = "volume"
)

var kindOrder = []string{kindController, kindSubsystem, kindHost, kindSnapshot, kindVolume}

// orphan is one thing nothing wants any more.
type orphan struct {
	Kind string `json:"kind"`
	// Where is the storage node (or, for a controller, this machine: "local").
	Where string `json:"where"`
	// ID is the CSI ID (volume, snapshot), the NQN (subsystem, host) or the controller name.
	ID string `json:"id"`
	// Detail says why it is an orphan.
	Detail string `json:"detail"`
	// Removable: --clean removes it. Otherwise Detail says what stands in the way.
	Removable bool `json:"removable"`

	// subsystem is a controller's subsystem NQN.
	subsystem string
}

type orphansReport struct {
	Orphans []orphan `json:"orphans"`
	// Notes say what could not be searched (an unreachable storage node, no snapshot API).
	Notes []string `json:"notes,omitempty"`
}

func runOrphans(ctx context.Context, e *env) error {
	if !e.inCluster() {
		return errors.New("orphans are found against the cluster's PVs: run with a kubeconfig")
	}
	rep, err := findOrphans(ctx, e)
	if err != nil {
		return err
	}
	err = render(e, rep, func(w io.Writer) {
		row(w, "KIND", "WHERE", "ID", "REMOVABLE", "DETAIL")
		for _, o := range rep.Orphans {
			row(w, o.Kind, o.Where, o.ID, yesNo(o.Removable), o.Detail)
		}
	})
	if err != nil {
		return err
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(e.errOut, "note:", n)
	}
	if !e.opts.clean {
		return nil
	}
	var todo []orphan
	for _, o := range rep.Orphans {
		if o.Removable {
			todo = append(todo, o)
		}
	}
	if len(todo) == 0 {
		fmt.Fprintln(e.errOut, "Nothing to remove.")
		return nil
	}
	if !e.opts.yes && !confirm(e, fmt.Sprintf("Remove the %d orphans marked removable? Type yes to go on: ", len(todo))) {
		return errors.New("not confirmed: nothing removed")
	}
	return clean(ctx, e, todo)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// confirm asks on errOut and reads one line from in.
func confirm(e *env, question string) bool {
	_, _ = fmt.Fprint(e.errOut, question)
	line, _ := bufio.NewReader(e.in).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "yes" || answer == "y"
}

// findOrphans compares every storage node's volumes, snapshots and exports with the cluster,
// and this machine's NVMe controllers with the exports.
func findOrphans(ctx context.Context, e *env) (*orphansReport, error) {
	reports, err := e.survey(ctx)
	if err != nil {
		return nil, err
	}
	view, err := e.view(ctx)
	if err != nil {
		return nil, err
	}
	rep := &orphansReport{Orphans: []orphan{}}
	if !view.snapshotAPI {
		rep.Notes = append(rep.Notes, "the cluster has no VolumeSnapshotContent API: snapshots were not searched")
	}
	// wanted are the subsystem NQNs the reachable storage nodes export on purpose; prefixes
	// theirs, so that a controller of an unreachable node is never called stale.
	wanted := map[string]bool{}
	var prefixes []string
	for _, r := range reports {
		if r.err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("storage node %s did not answer, not searched: %v", r.node.Name, r.err))
			continue
		}
		prefixes = append(prefixes, nqnPrefix+r.node.Name+":")
		rep.Orphans = append(rep.Orphans, r.orphans(view)...)
		for _, x := range r.exports.GetExports() {
			if !x.GetOrphan() {
				wanted[x.GetSubsystemNqn()] = true
			}
		}
	}
	paths, err := e.localPaths()
	if err != nil {
		rep.Notes = append(rep.Notes, "this machine's NVMe controllers not searched: "+err.Error())
	}
	for _, p := range paths {
		ours := slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(p.Subsystem, pre) })
		if ours && !wanted[p.Subsystem] {
			rep.Orphans = append(rep.Orphans, orphan{Kind: kindController, Where: "local", ID: p.Controller, subsystem: p.Subsystem,
				Detail: fmt.Sprintf("%s path to %s, which no storage node exports (state %s)", p.Transport, p.Subsystem, p.State), Removable: true})
		}
	}
	slices.SortStableFunc(rep.Orphans, func(a, b orphan) int {
		return slices.Index(kindOrder, a.Kind) - slices.Index(kindOrder, b.Kind)
	})
	return rep, nil
}

// orphans finds the storage node's volumes, snapshots, subsystems and host objects that
// nothing references.
func (r *nodeReport) orphans(view *clusterView) []orphan {
	var out []orphan
	for _, v := range r.volumes {
		id := contract.ObjectID(r.node.Name, v.GetId())
		why, ok := volumeUnreferenced(view, id, v.GetName())
		if !ok {
			continue
		}
		o := orphan{Kind: kindVolume, Where: r.node.Name, ID: id, Detail: why, Removable: true}
		if len(v.GetHosts()) > 0 {
			o.Removable = false
			o.Detail += fmt.Sprintf("; still published to %s: unpublish it first", strings.Join(nodeIDs(v.GetHosts()), ", "))
		}
		out = append(out, o)
	}
	if view.snapshotAPI {
		for _, s := range r.snapshots {
			id := contract.ObjectID(r.node.Name, s.GetId())
			if why, ok := snapshotUnreferenced(view, id, s.GetName()); ok {
				out = append(out, orphan{Kind: kindSnapshot, Where: r.node.Name, ID: id, Detail: why, Removable: true})
			}
		}
	}
	for _, x := range r.exports.GetExports() {
		if x.GetOrphan() {
			out = append(out, orphan{Kind: kindSubsystem, Where: r.node.Name, ID: x.GetSubsystemNqn(), Removable: true,
				Detail: fmt.Sprintf("exports %s to %s, which its record does not publish there", orDash(x.GetVolumeId()), strings.Join(x.GetHostNqns(), ", "))})
		}
	}
	for _, h := range r.exports.GetUnusedHosts() {
		out = append(out, orphan{Kind: kindHost, Where: r.node.Name, ID: h, Detail: "host entry no subsystem allows", Removable: true})
	}
	return out
}

// volumeUnreferenced reports whether no PV references volume id and no PVC is being
// provisioned under its name (the provisioner names volumes pvc-<claim UID> and creates the
// PV after CreateVolume returns).
func volumeUnreferenced(view *clusterView, id, name string) (string, bool) {
	if view.pvs[id] != nil {
		return "", false
	}
	if uid, ok := strings.CutPrefix(name, "pvc-"); ok && view.claimUIDs[uid] {
		return "", false
	}
	return fmt.Sprintf("no PV references it (name %s)", name), true
}

// snapshotUnreferenced is volumeUnreferenced for snapshots: no VolumeSnapshotContent, no
// VolumeSnapshot being created under its name (snapshot-<UID>).
func snapshotUnreferenced(view *clusterView, id, name string) (string, bool) {
	if view.contents[id] != "" {
		return "", false
	}
	if uid, ok := strings.CutPrefix(name, "snapshot-"); ok && view.snapshotUIDs[uid] {
		return "", false
	}
	return fmt.Sprintf("no VolumeSnapshotContent references it (name %s)", name), true
}

func nodeIDs(hosts []*agentapi.Host) []string {
	var ids []string
	for _, h := range hosts {
		ids = append(ids, h.GetNodeId())
	}
	return ids
}

// clean removes todo in kind order. Volumes and snapshots are checked against a fresh read of
// the cluster right before: one that a PV or VolumeSnapshotContent references by then stays.
func clean(ctx context.Context, e *env, todo []orphan) error {
	view, err := e.view(ctx)
	if err != nil {
		return err
	}
	_, agents, err := e.storageNodes(ctx)
	if err != nil {
		return err
	}
	var failed []string
	removed := 0
	for i, o := range todo {
		fmt.Fprintf(e.errOut, "[%d/%d] %s %s: ", i+1, len(todo), o.Kind, o.ID)
		err := removeOrphan(ctx, e, agents, view, o)
		if err != nil {
			fmt.Fprintln(e.errOut, err)
			failed = append(failed, fmt.Sprintf("%s %s: %v", o.Kind, o.ID, err))
			continue
		}
		removed++
		fmt.Fprintln(e.errOut, "removed")
	}
	fmt.Fprintf(e.errOut, "Removed %d of %d.\n", removed, len(todo))
	if len(failed) > 0 {
		return fmt.Errorf("%d not removed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// errKept is a removal skipped because the thing is no longer an orphan.
var errKept = errors.New("kept: no longer an orphan")

func removeOrphan(ctx context.Context, e *env, agents agentclient.Source, view *clusterView, o orphan) error {
	if o.Kind == kindController {
		// The volume may have been published (again) since the search: ask its storage node.
		if exported, err := exportedNow(ctx, agents, o.subsystem); err != nil || exported {
			if err != nil {
				return fmt.Errorf("cannot tell whether %s is exported again: %w", o.subsystem, err)
			}
			return errKept
		}
		return e.localInitiator().DeleteControllers(ctx, o.subsystem, []string{o.ID})
	}
	c, err := agents.Client(o.Where)
	if err != nil {
		return err
	}
	switch o.Kind {
	case kindVolume:
		_, agentID, _ := contract.ParseObjectID(o.ID, "vol")
		v, err := c.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: agentID})
		if err != nil {
			return err
		}
		if _, ok := volumeUnreferenced(view, o.ID, v.GetVolume().GetName()); !ok || len(v.GetVolume().GetHosts()) > 0 {
			return errKept
		}
		_, err = c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: agentID})
		return err
	case kindSnapshot:
		_, agentID, _ := contract.ParseObjectID(o.ID, "snap")
		s, err := c.GetSnapshot(ctx, &agentapi.GetSnapshotRequest{Id: agentID})
		if err != nil {
			return err
		}
		if _, ok := snapshotUnreferenced(view, o.ID, s.GetSnapshot().GetName()); !ok {
			return errKept
		}
		_, err = c.DeleteSnapshot(ctx, &agentapi.DeleteSnapshotRequest{Id: agentID})
		return err
	case kindSubsystem, kindHost:
		req := &agentapi.RemoveOrphansRequest{}
		if o.Kind == kindSubsystem {
			req.SubsystemNqns = []string{o.ID}
		} else {
			req.HostNqns = []string{o.ID}
		}
		resp, err := c.RemoveOrphans(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.GetRemovedSubsystems())+len(resp.GetRemovedHosts()) == 0 {
			return errKept
		}
		return nil
	}
	return fmt.Errorf("unknown kind %q", o.Kind)
}

// exportedNow asks the storage node a subsystem NQN names whether it exports it on purpose.
func exportedNow(ctx context.Context, agents agentclient.Source, nqn string) (bool, error) {
	rest, _ := strings.CutPrefix(nqn, nqnPrefix)
	node, _, _ := strings.Cut(rest, ":")
	c, err := agents.Client(node)
	if err != nil {
		return false, err
	}
	exports, err := c.ListExports(ctx, &agentapi.ListExportsRequest{})
	if err != nil {
		return false, err
	}
	for _, x := range exports.GetExports() {
		if x.GetSubsystemNqn() == nqn && !x.GetOrphan() {
			return true, nil
		}
	}
	return false, nil
}
