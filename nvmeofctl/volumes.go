package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// volumeRow is one row of `volumes`.
type volumeRow struct {
	// ID is the CSI volume ID (<storage node>/<agent ID>).
	ID          string `json:"id"`
	StorageNode string `json:"storageNode"`
	// Name is the CSI name it was created with (pvc-<UID> from the provisioner).
	Name string `json:"name"`
	PV   string `json:"pv,omitempty"`
	// PVC is <namespace>/<name> of the PV's claim.
	PVC       string `json:"pvc,omitempty"`
	SizeBytes int64  `json:"sizeBytes"`
	// UsedBytes is how much of the pool it holds, when the storage node can tell (an
	// exported volume).
	UsedBytes *int64 `json:"usedBytes,omitempty"`
	// Source is the CSI ID of the snapshot or volume it was made from.
	Source    string `json:"source,omitempty"`
	Snapshots int    `json:"snapshots"`
	Clones    int    `json:"clones"`
	// Hosts are the CSI node IDs it is published to.
	Hosts []string `json:"hosts"`
	// Paths are its path states on each worker that has it staged ("node: 2 live").
	Paths []string `json:"paths"`
}

type volumesReport struct {
	Volumes []volumeRow `json:"volumes"`
	// Unreachable are the storage nodes that did not answer, with why.
	Unreachable []string `json:"unreachable,omitempty"`
	// Notes say what could not be shown.
	Notes []string `json:"notes,omitempty"`
}

func runVolumes(ctx context.Context, e *env) error {
	reports, err := e.survey(ctx)
	if err != nil {
		return err
	}
	var view *clusterView
	var rep volumesReport
	if e.inCluster() {
		if view, err = e.view(ctx); err != nil {
			return err
		}
		if view.pathsErr != nil {
			rep.Notes = append(rep.Notes, view.pathsErr.Error())
		}
	} else {
		rep.Notes = append(rep.Notes, "no cluster: PV, PVC and path states not shown")
	}
	rep.Volumes = []volumeRow{}
	for _, r := range reports {
		if r.err != nil {
			rep.Unreachable = append(rep.Unreachable, fmt.Sprintf("%s: %v", r.node.Name, r.err))
			continue
		}
		rep.Volumes = append(rep.Volumes, r.volumeRows(view)...)
	}
	slices.SortFunc(rep.Volumes, func(a, b volumeRow) int {
		return strings.Compare(a.StorageNode+"\x00"+a.PVC+"\x00"+a.ID, b.StorageNode+"\x00"+b.PVC+"\x00"+b.ID)
	})
	err = render(e, rep, func(w io.Writer) {
		row(w, "ID", "PVC", "PV", "SIZE", "USED", "SNAPSHOTS", "CLONES", "SOURCE", "HOSTS", "PATHS")
		for _, v := range rep.Volumes {
			used := "-"
			if v.UsedBytes != nil {
				used = bytesIEC(*v.UsedBytes)
			}
			row(w, v.ID, orDash(v.PVC), orDash(v.PV), bytesIEC(v.SizeBytes), used, v.Snapshots, v.Clones, orDash(v.Source),
				orDash(strings.Join(v.Hosts, ",")), orDash(strings.Join(v.Paths, "; ")))
		}
	})
	if err != nil {
		return err
	}
	if e.opts.output == "table" {
		for _, u := range rep.Unreachable {
			fmt.Fprintln(e.errOut, "unreachable storage node:", u)
		}
		for _, n := range rep.Notes {
			fmt.Fprintln(e.errOut, "note:", n)
		}
	}
	if len(rep.Unreachable) > 0 {
		return fmt.Errorf("%d of %d storage nodes did not answer: their volumes are missing", len(rep.Unreachable), len(reports))
	}
	return nil
}

// volumeRows are the storage node's volumes with their snapshot and clone counts, and with
// their PV, PVC and path states when view is not nil.
func (r *nodeReport) volumeRows(view *clusterView) []volumeRow {
	var rows []volumeRow
	// A clone counts for the volume it was cloned from, directly or through a snapshot.
	snaps, clones, origin := map[string]int{}, map[string]int{}, map[string]string{}
	for _, s := range r.snapshots {
		snaps[s.GetSourceVolumeId()]++
		origin[s.GetId()] = s.GetSourceVolumeId()
	}
	for _, v := range r.volumes {
		if src := v.GetSource().GetVolumeId(); src != "" {
			clones[src]++
		} else if src := origin[v.GetSource().GetSnapshotId()]; src != "" {
			clones[src]++
		}
	}
	for _, v := range r.volumes {
		row := volumeRow{
			ID: contract.ObjectID(r.node.Name, v.GetId()), StorageNode: r.node.Name, Name: v.GetName(),
			SizeBytes: v.GetSizeBytes(), Snapshots: snaps[v.GetId()], Clones: clones[v.GetId()], Hosts: []string{}, Paths: []string{},
		}
		if v.UsedBytes != nil {
			n := v.GetUsedBytes()
			row.UsedBytes = &n
		}
		switch src := v.GetSource(); {
		case src.GetSnapshotId() != "":
			row.Source = contract.ObjectID(r.node.Name, src.GetSnapshotId())
		case src.GetVolumeId() != "":
			row.Source = contract.ObjectID(r.node.Name, src.GetVolumeId())
		}
		for _, h := range v.GetHosts() {
			row.Hosts = append(row.Hosts, h.GetNodeId())
		}
		if view != nil {
			if pv := view.pvs[row.ID]; pv != nil {
				row.PV = pv.Name
				if c := pv.Spec.ClaimRef; c != nil {
					row.PVC = c.Namespace + "/" + c.Name
				}
			}
			row.Paths = append(row.Paths, view.paths[row.ID]...)
		}
		rows = append(rows, row)
	}
	return rows
}
