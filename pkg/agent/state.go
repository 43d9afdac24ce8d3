package agent

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

const (
	maxNameBytes   = 128
	maxLabels      = 16
	maxLabelBytes  = 128
	volumePrefix   = "vol-"
	snapshotPrefix = "snap-"
)

// volumeOf describes a volume record in the API's terms.
func volumeOf(r pool.Record) *agentapi.Volume {
	v := &agentapi.Volume{
		Id:        r.ID,
		Name:      r.Name,
		SizeBytes: r.SizeBytes,
		Uuid:      r.UUID,
		Source:    sourceOf(r.Source),
		Labels:    r.Labels,
	}
	for _, h := range r.Hosts {
		v.Hosts = append(v.Hosts, &agentapi.Host{Nqn: h.NQN, NodeId: h.NodeID, ReadOnly: h.ReadOnly})
	}
	return v
}

func snapshotOf(r pool.Record) *agentapi.Snapshot {
	return &agentapi.Snapshot{
		Id:                   r.ID,
		Name:                 r.Name,
		SourceVolumeId:       r.Source,
		SizeBytes:            r.SizeBytes,
		CreationTimeUnixNano: r.CreatedUnixNano,
		GroupId:              r.Labels[groupLabel],
	}
}

func sourceOf(id string) *agentapi.ContentSource {
	switch {
	case strings.HasPrefix(id, snapshotPrefix):
		return &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: id}}
	case strings.HasPrefix(id, volumePrefix):
		return &agentapi.ContentSource{Source: &agentapi.ContentSource_VolumeId{VolumeId: id}}
	}
	return nil
}

// sourceID is the ID a content source names ("" for none).
func sourceID(src *agentapi.ContentSource) string {
	if src == nil {
		return ""
	}
	if id := src.GetSnapshotId(); id != "" {
		return id
	}
	return src.GetVolumeId()
}

func randomUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func itoa(n int) string { return strconv.Itoa(n) }
