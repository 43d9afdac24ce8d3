package agent

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
)

// Tag keys of the durable state kept on each LV (values are encoded by lvm.EncodeTag).
const (
	tagName      = "nvmeof.name"      // the CSI name the ID was derived from
	tagUUID      = "nvmeof.uuid"      // namespace UUID (volumes)
	tagSource    = "nvmeof.source"    // content source ID (clones, snapshots)
	tagCreated   = "nvmeof.created"   // creation time, Unix nanoseconds (snapshots)
	tagLabel     = "nvmeof.label"     // "key\nvalue", one tag per label
	tagHost      = "nvmeof.host"      // "hostNQN\nnodeID\nrw|ro", one tag per published host
	tagTransport = "nvmeof.transport" // "tcp" or "rdma", one tag per transport in use
)

const (
	maxNameBytes   = 128
	maxLabels      = 16
	maxLabelBytes  = 128
	volumePrefix   = "vol-"
	snapshotPrefix = "snap-"
)

func isVolume(lv lvm.LV) bool   { return strings.HasPrefix(lv.Name, volumePrefix) }
func isSnapshot(lv lvm.LV) bool { return strings.HasPrefix(lv.Name, snapshotPrefix) }

// host is one published host of a volume.
type host struct {
	nqn, nodeID string
	readOnly    bool
}

func (h host) tag() string {
	mode := "rw"
	if h.readOnly {
		mode = "ro"
	}
	return lvm.EncodeTag(tagHost, h.nqn+"\n"+h.nodeID+"\n"+mode)
}

func hostsOf(lv lvm.LV) []host {
	var out []host
	for _, v := range lvm.TagValues(lv.Tags, tagHost) {
		parts := strings.SplitN(v, "\n", 3)
		h := host{nqn: parts[0]}
		if len(parts) > 1 {
			h.nodeID = parts[1]
		}
		h.readOnly = len(parts) > 2 && parts[2] == "ro"
		out = append(out, h)
	}
	return out
}

func transportsOf(lv lvm.LV) []string { return lvm.TagValues(lv.Tags, tagTransport) }

func tagOf(lv lvm.LV, key string) string {
	v, _ := lvm.TagValue(lv.Tags, key)
	return v
}

// volumeOf describes a volume LV in the API's terms.
func volumeOf(lv lvm.LV) *agentapi.Volume {
	v := &agentapi.Volume{
		Id:        lv.Name,
		Name:      tagOf(lv, tagName),
		SizeBytes: lv.SizeBytes,
		Uuid:      tagOf(lv, tagUUID),
		Source:    sourceOf(tagOf(lv, tagSource)),
	}
	for _, h := range hostsOf(lv) {
		v.Hosts = append(v.Hosts, &agentapi.Host{Nqn: h.nqn, NodeId: h.nodeID, ReadOnly: h.readOnly})
	}
	for _, kv := range lvm.TagValues(lv.Tags, tagLabel) {
		k, val, _ := strings.Cut(kv, "\n")
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
		v.Labels[k] = val
	}
	return v
}

func snapshotOf(lv lvm.LV) *agentapi.Snapshot {
	created, _ := strconv.ParseInt(tagOf(lv, tagCreated), 10, 64)
	return &agentapi.Snapshot{
		Id:                   lv.Name,
		Name:                 tagOf(lv, tagName),
		SourceVolumeId:       tagOf(lv, tagSource),
		SizeBytes:            lv.SizeBytes,
		CreationTimeUnixNano: created,
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
