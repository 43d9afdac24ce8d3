// Package contract holds what the controller and node plugins agree on without talking to each
// other: the driver name, the formats of volume, snapshot and node IDs, the keys of
// publish_context and volume_context, and the StorageClass parameters with their defaults.
// Everything here is part of the driver's compatibility surface: IDs and keys outlive releases.
package contract

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// DriverName is the CSI driver name.
const DriverName = "nvmeof.csi.io"

// Volume and snapshot IDs are "<storage node>/<agent ID>": the storage node named in the
// controller's configuration, and the agent's own ID for the object ("vol-…" or "snap-…"). The
// controller needs no database: the ID says which agent to ask.
var (
	storageNodeRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)
	agentIDRE     = regexp.MustCompile(`^(vol|snap)-[0-9a-f]{32}$`)
)

// ObjectID joins a storage node and an agent ID.
func ObjectID(storageNode, agentID string) string { return storageNode + "/" + agentID }

// ParseObjectID splits an ID made by ObjectID. kind is "vol" or "snap". A malformed ID (which
// CSI asks to treat as not found) returns ok=false.
func ParseObjectID(id, kind string) (storageNode, agentID string, ok bool) {
	node, aid, found := strings.Cut(id, "/")
	if !found || !storageNodeRE.MatchString(node) || !agentIDRE.MatchString(aid) || !strings.HasPrefix(aid, kind+"-") {
		return "", "", false
	}
	return node, aid, true
}

// Node IDs are "<node name>/<host NQN>". The host NQN, the identity the kernel presents to
// targets, is everything after the first '/': NQNs never contain '/', node names never do
// either, so the mapping is deterministic and two nodes with different host NQNs can never
// share a node ID.

// NodeID joins a node name and the host's NQN.
func NodeID(nodeName, hostNQN string) string { return nodeName + "/" + hostNQN }

// ErrBadNodeID reports a node ID not made by NodeID.
var ErrBadNodeID = rpcerr.Sentinel(rpcerr.ErrNotFound, "malformed node ID")

// MaxNodeIDBytes is the longest node ID CSI allows (NodeGetInfoResponse.node_id).
const MaxNodeIDBytes = 256

// nodeNameRE is a Kubernetes node name: a DNS subdomain.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// ParseNodeID splits a node ID made by NodeID. It accepts exactly what the agent can record
// and the kernel target can allow: at most MaxNodeIDBytes, a Kubernetes node name, and an NQN
// of at most 223 bytes of UTF-8 with no '/', space or control character. Publish and
// unpublish both parse with it, so a node ID it refuses can never have been given access.
func ParseNodeID(id string) (nodeName, hostNQN string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s; want <node name>/<host NQN>", ErrBadNodeID, id, why)
	}
	name, nqn, found := strings.Cut(id, "/")
	switch {
	case len(id) > MaxNodeIDBytes:
		return "", "", bad(fmt.Sprintf("longer than %d bytes", MaxNodeIDBytes))
	case !found:
		return "", "", bad("no '/'")
	case !nodeNameRE.MatchString(name):
		return "", "", bad("the node name is not a Kubernetes node name")
	case !strings.HasPrefix(nqn, "nqn.") || len(nqn) > 223 || !utf8.ValidString(nqn):
		return "", "", bad("the host NQN is not \"nqn.\" and at most 223 bytes of UTF-8")
	case strings.IndexFunc(nqn, func(r rune) bool { return r == '/' || r <= ' ' || r == 0x7f }) >= 0:
		return "", "", bad("the host NQN has a '/', a space or a control character")
	}
	return name, nqn, nil
}

// TopologyNodeKey is the topology segment every node reports with its node name, so that
// accessibility is never empty; operators add segments (zones, racks) with --topology.
const TopologyNodeKey = "topology.nvmeof.csi.io/node"

// publish_context keys, set by ControllerPublishVolume for NodeStageVolume.
const (
	PublishSubsysNQN = "subsysNQN"
	PublishNSUUID    = "nsUUID"
	PublishTransport = "transport"
	// PublishPortals is a comma-separated list of host:port (IPv6 in brackets).
	PublishPortals = "portals"
	// PublishDHCHAP is "true" when the target authenticates the node with DH-HMAC-CHAP: the
	// node must then present its key (NodeStageVolume's secrets).
	PublishDHCHAP = "dhchap"
)

// SubsystemNQNPrefix starts the NQN of every subsystem an agent exports
// (<prefix><storage node>:<volume ID>:h<host hash>; the agent builds them, pkg/agent).
const SubsystemNQNPrefix = "nqn.2026-11.io.nvmeof-csi:"

// DH-HMAC-CHAP keys come in one Kubernetes Secret that the StorageClass names twice, for
// ControllerPublishVolume (csi.storage.k8s.io/controller-publish-secret-name and -namespace)
// and for NodeStageVolume (csi.storage.k8s.io/node-stage-secret-name and -namespace). Each
// worker's host key is under "host.<node name>"; the storage nodes' key, which makes the
// authentication bidirectional, under "ctrl" (optional).
const (
	SecretHostKeyPrefix = "host."
	SecretCtrlKey       = "ctrl"
)

// DHCHAPKeys picks a node's keys out of a CSI call's secrets. No secrets: no authentication
// (empty keys, nil error). Secrets without the node's host key are an error that names the
// missing key, never a value.
func DHCHAPKeys(secrets map[string]string, nodeName string) (host, ctrl string, err error) {
	if len(secrets) == 0 {
		return "", "", nil
	}
	host = secrets[SecretHostKeyPrefix+nodeName]
	if host == "" {
		return "", "", fmt.Errorf("the DH-HMAC-CHAP Secret has no key %q for node %s: add the node's host key "+
			"(nvme gen-dhchap-key) under that name", SecretHostKeyPrefix+nodeName, nodeName)
	}
	return host, secrets[SecretCtrlKey], nil
}

// Portal is one address of a subsystem.
type Portal struct{ Address, Port string }

// FormatPortals encodes portals for PublishPortals.
func FormatPortals(ps []Portal) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = net.JoinHostPort(p.Address, p.Port)
	}
	return strings.Join(out, ",")
}

// ParsePortals decodes PublishPortals.
func ParsePortals(s string) ([]Portal, error) {
	if s == "" {
		return nil, errors.New("no portals")
	}
	var out []Portal
	for _, hp := range strings.Split(s, ",") {
		h, p, err := net.SplitHostPort(hp)
		if err != nil || net.ParseIP(h) == nil {
			return nil, fmt.Errorf("portal %q: want ip:port", hp)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("portal %q: bad port", hp)
		}
		out = append(out, Portal{Address: h, Port: p})
	}
	return out, nil
}

// StorageClass parameters. They are also copied into the volume_context, where the node reads
// the connection tuning.
const (
	// ParamTransport is tcp (default) or rdma.
	ParamTransport = "transport"
	// ParamStorageNodes restricts placement to a comma-separated list of storage node names.
	ParamStorageNodes = "storageNodes"
	// ParamCtrlLossTmo is the seconds a lost controller keeps reconnecting before it is removed
	// (ctrl_loss_tmo). Never infinite: an endless reconnect blocks node shutdown.
	ParamCtrlLossTmo = "ctrlLossTmo"
	// ParamReconnectDelay is the seconds between reconnect attempts (reconnect_delay).
	ParamReconnectDelay = "reconnectDelay"
	// ParamKeepAliveTmo is the keep-alive timeout in seconds (keep_alive_tmo).
	ParamKeepAliveTmo = "keepAliveTmo"
	// ParamNrIOQueues is the number of I/O queues (nr_io_queues); 0 lets the kernel choose.
	ParamNrIOQueues = "nrIoQueues"
	// ContextZeroed ("true") is set by the controller in the volume_context of a volume created
	// empty: its device reads zeros wherever it was never written (a new thin volume), so the
	// node lets mkfs skip zeroing and discards. Never a StorageClass parameter.
	ContextZeroed = "zeroed"
	// ReservedPrefix marks keys the CSI sidecars add (PVC/PV names); accepted, not interpreted.
	ReservedPrefix = "csi.storage.k8s.io/"
	// KubernetesPrefix marks keys Kubernetes itself keeps in a volume's attributes, e.g.
	// storage.kubernetes.io/csiProvisionerIdentity, which external-provisioner adds to every
	// PV it creates and the kubelet passes on in NodeStage's volume_context; accepted, not
	// interpreted.
	KubernetesPrefix = "storage.kubernetes.io/"
)

// Defaults of the connection tuning.
const (
	DefaultTransport      = agentapi.TransportNameTCP
	DefaultCtrlLossTmo    = 300
	DefaultReconnectDelay = 5
	DefaultKeepAliveTmo   = 5
	DefaultNrIOQueues     = 0
)

// Params are the validated StorageClass parameters.
type Params struct {
	Transport      string
	StorageNodes   []string
	CtrlLossTmo    int
	ReconnectDelay int
	KeepAliveTmo   int
	NrIOQueues     int
	// Zeroed is ContextZeroed: the volume was created empty.
	Zeroed bool
	// Reserved holds the csi.storage.k8s.io/ and storage.kubernetes.io/ keys as given.
	Reserved map[string]string
}

// ErrBadParameter reports an unknown or invalid parameter.
var ErrBadParameter = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid parameter")

// ParseParams validates StorageClass parameters (or a volume_context) and fills in defaults.
// Unknown keys are errors, except the reserved csi.storage.k8s.io/ and storage.kubernetes.io/
// ones.
func ParseParams(in map[string]string) (Params, error) {
	p := Params{
		Transport:      DefaultTransport,
		CtrlLossTmo:    DefaultCtrlLossTmo,
		ReconnectDelay: DefaultReconnectDelay,
		KeepAliveTmo:   DefaultKeepAliveTmo,
		NrIOQueues:     DefaultNrIOQueues,
	}
	var errs []error
	ints := map[string]struct {
		dst      *int
		min, max int
	}{
		ParamCtrlLossTmo:    {&p.CtrlLossTmo, 1, 86400},
		ParamReconnectDelay: {&p.ReconnectDelay, 1, 3600},
		ParamKeepAliveTmo:   {&p.KeepAliveTmo, 1, 3600},
		ParamNrIOQueues:     {&p.NrIOQueues, 0, 1024},
	}
	for k, v := range in {
		switch {
		case k == ParamTransport:
			if _, err := agentapi.ParseTransport(v); err != nil {
				errs = append(errs, fmt.Errorf("%w %s: %w", ErrBadParameter, k, err))
			}
			p.Transport = v
		case k == ContextZeroed:
			z, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w %s=%q: want true or false", ErrBadParameter, k, v))
			}
			p.Zeroed = z
		case k == ParamStorageNodes:
			for _, n := range strings.Split(v, ",") {
				n = strings.TrimSpace(n)
				if !storageNodeRE.MatchString(n) {
					errs = append(errs, fmt.Errorf("%w %s: %q is not a storage node name", ErrBadParameter, k, n))
					continue
				}
				p.StorageNodes = append(p.StorageNodes, n)
			}
		case strings.HasPrefix(k, ReservedPrefix), strings.HasPrefix(k, KubernetesPrefix):
			if p.Reserved == nil {
				p.Reserved = map[string]string{}
			}
			p.Reserved[k] = v
		default:
			spec, ok := ints[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%w: unknown parameter %q", ErrBadParameter, k))
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < spec.min || n > spec.max {
				errs = append(errs, fmt.Errorf("%w %s=%q: want an integer in [%d, %d]", ErrBadParameter, k, v, spec.min, spec.max))
				continue
			}
			*spec.dst = n
		}
	}
	return p, errors.Join(errs...)
}

// VolumeContext is what the controller returns in a volume's volume_context: the connection
// tuning in the same keys as the StorageClass (the node parses it with ParseParams).
func (p Params) VolumeContext() map[string]string {
	vc := map[string]string{
		ParamTransport:      p.Transport,
		ParamCtrlLossTmo:    strconv.Itoa(p.CtrlLossTmo),
		ParamReconnectDelay: strconv.Itoa(p.ReconnectDelay),
		ParamKeepAliveTmo:   strconv.Itoa(p.KeepAliveTmo),
		ParamNrIOQueues:     strconv.Itoa(p.NrIOQueues),
	}
	if p.Zeroed {
		vc[ContextZeroed] = "true"
	}
	return vc
}
