package main

import (
	"context"
	"io"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// storageNodeStatus is one row of `status`.
type storageNodeStatus struct {
	Name              string `json:"name"`
	Address           string `json:"address"`
	Reachable         bool   `json:"reachable"`
	Error             string `json:"error,omitempty"`
	Version           string `json:"version,omitempty"`
	DataBytes         int64  `json:"dataBytes"`
	DataUsedBytes     int64  `json:"dataUsedBytes"`
	MetadataBytes     int64  `json:"metadataBytes"`
	MetadataUsedBytes int64  `json:"metadataUsedBytes"`
	ProvisionedBytes  int64  `json:"provisionedBytes"`
	// AvailableBytes is what may still be provisioned (GetCapacity's answer).
	AvailableBytes int64 `json:"availableBytes"`
	Volumes        int   `json:"volumes"`
	Snapshots      int   `json:"snapshots"`
	Exports        int   `json:"exports"`
}

type statusReport struct {
	Client       string              `json:"client"`
	StorageNodes []storageNodeStatus `json:"storageNodes"`
}

func runStatus(ctx context.Context, e *env) error {
	reports, err := e.survey(ctx)
	if err != nil {
		return err
	}
	out := statusReport{Client: version.String("nvmeofctl"), StorageNodes: []storageNodeStatus{}}
	for _, r := range reports {
		s := storageNodeStatus{Name: r.node.Name, Address: r.node.Address, Reachable: r.info != nil}
		if r.err != nil {
			s.Error = r.err.Error()
		}
		s.Version = r.info.GetVersion()
		if c := r.capacity; c != nil {
			s.DataBytes, s.DataUsedBytes = c.GetDataBytes(), c.GetDataUsedBytes()
			s.MetadataBytes, s.MetadataUsedBytes = c.GetMetadataBytes(), c.GetMetadataUsedBytes()
			s.ProvisionedBytes, s.AvailableBytes = c.GetProvisionedBytes(), c.GetAvailableBytes()
		}
		s.Volumes, s.Snapshots = len(r.volumes), len(r.snapshots)
		s.Exports = len(r.exports.GetExports())
		out.StorageNodes = append(out.StorageNodes, s)
	}
	return render(e, out, func(w io.Writer) {
		row(w, "STORAGE NODE", "ADDRESS", "REACHABLE", "VERSION", "DATA", "SIZE", "METADATA", "PROVISIONED", "AVAILABLE", "VOLUMES", "SNAPSHOTS", "EXPORTS")
		for _, s := range out.StorageNodes {
			if !s.Reachable || s.Error != "" {
				state := "no: " + s.Error
				if s.Reachable {
					state = "answers, but: " + s.Error
				}
				row(w, s.Name, s.Address, state, orDash(s.Version), "-", "-", "-", "-", "-", "-", "-", "-")
				continue
			}
			row(w, s.Name, s.Address, "yes", orDash(s.Version), bar(s.DataUsedBytes, s.DataBytes), bytesIEC(s.DataBytes),
				bar(s.MetadataUsedBytes, s.MetadataBytes), bytesIEC(s.ProvisionedBytes), bytesIEC(s.AvailableBytes),
				s.Volumes, s.Snapshots, s.Exports)
		}
	})
}
