package contract

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestObjectIDRoundTripAndRejects(t *testing.T) {
	id := ObjectID("storage-1", "vol-0123456789abcdef0123456789abcdef")
	node, aid, ok := ParseObjectID(id, "vol")
	if !ok || node != "storage-1" || aid != "vol-0123456789abcdef0123456789abcdef" {
		t.Fatalf("ParseObjectID(%q) = %q, %q, %v", id, node, aid, ok)
	}
	for _, bad := range []string{
		"", "storage-1", "storage-1/", "/vol-0123456789abcdef0123456789abcdef",
		"Storage/vol-0123456789abcdef0123456789abcdef", "s/vol-0123", "s/vol-0123456789ABCDEF0123456789abcdef",
		"s/snap-0123456789abcdef0123456789abcdef", "s/vol-0123456789abcdef0123456789abcdef/x",
	} {
		if _, _, ok := ParseObjectID(bad, "vol"); ok {
			t.Errorf("ParseObjectID(%q, vol) accepted a malformed ID", bad)
		}
	}
}

func TestNodeIDRoundTrip(t *testing.T) {
	const nqn = "nqn.2014-08.org.nvmexpress:uuid:8a0c8b2e-1d4f-4f57-9a62-2d0e0f6c2b11"
	longest := strings.Repeat("w", 32) + "/nqn." + strings.Repeat("x", 219)
	if _, _, err := ParseNodeID(longest); err != nil || len(longest) != MaxNodeIDBytes {
		t.Fatalf("ParseNodeID(%d bytes) = %v", len(longest), err)
	}
	name, got, err := ParseNodeID(NodeID("worker-1", nqn))
	if err != nil || name != "worker-1" || got != nqn {
		t.Fatalf("ParseNodeID = %q, %q, %v", name, got, err)
	}
	for _, bad := range []string{"", "worker-1", "/" + nqn, "worker-1/not-an-nqn", "worker-1/nqn.x/y",
		"Worker-1/" + nqn, "worker_1/" + nqn, "worker-1/" + nqn + "\n", "worker-1/" + nqn + "\x00", "worker-1/nqn.a b",
		"worker-1/nqn.\xff", strings.Repeat("w", 40) + "/nqn." + strings.Repeat("x", 219)} {
		if _, _, err := ParseNodeID(bad); !errors.Is(err, ErrBadNodeID) {
			t.Errorf("ParseNodeID(%q) err = %v, want ErrBadNodeID", bad, err)
		}
	}
}

func TestPortalsRoundTrip(t *testing.T) {
	in := []Portal{{"192.0.2.1", "4420"}, {"fd00::1", "4421"}}
	s := FormatPortals(in)
	if s != "192.0.2.1:4420,[fd00::1]:4421" {
		t.Fatalf("FormatPortals = %q", s)
	}
	out, err := ParsePortals(s)
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("ParsePortals = %v, %v", out, err)
	}
	for _, bad := range []string{"", "host:4420", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:x"} {
		if _, err := ParsePortals(bad); err == nil {
			t.Errorf("ParsePortals(%q) accepted", bad)
		}
	}
}

func TestParseParams(t *testing.T) {
	p, err := ParseParams(map[string]string{
		"transport": "rdma", "storageNodes": "a, b", "ctrlLossTmo": "60",
		"csi.storage.k8s.io/pvc/name": "data",
		// What external-provisioner adds to every PV's volumeAttributes (seen on a real
		// cluster: NodeStage got it in volume_context).
		"storage.kubernetes.io/csiProvisionerIdentity": "1795263182-9135-nvmeof.csi.io",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Params{Transport: "rdma", StorageNodes: []string{"a", "b"}, CtrlLossTmo: 60,
		ReconnectDelay: DefaultReconnectDelay, KeepAliveTmo: DefaultKeepAliveTmo,
		Reserved: map[string]string{"csi.storage.k8s.io/pvc/name": "data",
			"storage.kubernetes.io/csiProvisionerIdentity": "1795263182-9135-nvmeof.csi.io"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("ParseParams = %+v, want %+v", p, want)
	}
	back, err := ParseParams(p.VolumeContext())
	if err != nil || back.Transport != "rdma" || back.CtrlLossTmo != 60 {
		t.Fatalf("volume context round trip = %+v, %v", back, err)
	}
	for name, bad := range map[string]map[string]string{
		"unknown key":        {"fsType": "ext4"},
		"bad transport":      {"transport": "fc"},
		"infinite ctrl loss": {"ctrlLossTmo": "-1"},
		"not a number":       {"keepAliveTmo": "five"},
		"bad node name":      {"storageNodes": "Node_1"},
		"near-miss prefix":   {"storage.k8s.io/x": "y"},
	} {
		if _, err := ParseParams(bad); !errors.Is(err, ErrBadParameter) {
			t.Errorf("%s: err = %v, want ErrBadParameter", name, err)
		}
	}
}

func TestDHCHAPKeysPicksTheNodesKeys(t *testing.T) {
	secrets := map[string]string{"host.w1": "DHHC-1:00:aG9zdA==:", "host.w2": "DHHC-1:00:b3RoZXI=:", "ctrl": "DHHC-1:00:Y3RybA==:"}
	host, ctrl, err := DHCHAPKeys(secrets, "w1")
	if err != nil || host != secrets["host.w1"] || ctrl != secrets["ctrl"] {
		t.Errorf("DHCHAPKeys(w1) = %q, %q, %v", host, ctrl, err)
	}
	if host, ctrl, err := DHCHAPKeys(nil, "w1"); host != "" || ctrl != "" || err != nil {
		t.Errorf("DHCHAPKeys without secrets = %q, %q, %v; want no authentication", host, ctrl, err)
	}
	_, _, err = DHCHAPKeys(secrets, "w3")
	if err == nil || !strings.Contains(err.Error(), "host.w3") || strings.Contains(err.Error(), "aG9zdA") {
		t.Errorf("DHCHAPKeys(w3) error = %v; want one naming host.w3 and quoting no key", err)
	}
}
