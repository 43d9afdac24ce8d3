package contract

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The parsers of what Kubernetes and callers hand the driver: never a panic, and whatever is
// accepted is exactly what the formatting side produces.

func FuzzParseObjectID(f *testing.F) {
	f.Add("storage-1/vol-0123456789abcdef0123456789abcdef", "vol")
	f.Add("s/snap-00000000000000000000000000000000", "snap")
	f.Add("fake-vol-id", "vol")
	f.Add("a/vol-x/y", "vol")
	f.Fuzz(func(t *testing.T, id, kind string) {
		node, aid, ok := ParseObjectID(id, kind)
		if !ok {
			return
		}
		if ObjectID(node, aid) != id || !strings.HasPrefix(aid, kind+"-") || strings.Contains(node, "/") {
			t.Fatalf("ParseObjectID(%q, %q) = %q, %q", id, kind, node, aid)
		}
	})
}

func FuzzParseNodeID(f *testing.F) {
	f.Add("worker-1/nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001")
	f.Add("w/nqn.x")
	f.Add("w/nqn.a\nb")
	f.Add("W/nqn.a")
	f.Add("/nqn.")
	f.Fuzz(func(t *testing.T, id string) {
		name, nqn, err := ParseNodeID(id)
		if err != nil {
			return
		}
		if NodeID(name, nqn) != id || len(id) > MaxNodeIDBytes || !utf8.ValidString(id) {
			t.Fatalf("ParseNodeID(%q) accepted %q, %q", id, name, nqn)
		}
		for _, r := range id {
			if r < ' ' || r == 0x7f || r == ' ' {
				t.Fatalf("ParseNodeID(%q) accepted a control character or space", id)
			}
		}
	})
}

func FuzzParsePortals(f *testing.F) {
	f.Add("192.0.2.1:4420,[fd00::1]:4421")
	f.Add("host:4420")
	f.Add(",")
	f.Add("[::1]:0")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePortals(s)
		if err != nil {
			return
		}
		again, err := ParsePortals(FormatPortals(ps))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("ParsePortals(%q) = %v, but its format %q parses to %v, %v", s, ps, FormatPortals(ps), again, err)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("portal %d of %q: %v, then %v", i, s, ps[i], again[i])
			}
		}
	})
}

// FuzzParseParams: accepted parameters are within their documented bounds, and the
// volume_context made from them parses back to the same connection settings.
func FuzzParseParams(f *testing.F) {
	f.Add("transport", "rdma", "ctrlLossTmo", "60")
	f.Add("storageNodes", "a, b", "csi.storage.k8s.io/pvc/name", "x")
	f.Add("nrIOQueues", "-1", "keepAliveTmo", "3600")
	f.Add("zeroed", "true", "reconnectDelay", "0x10")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := map[string]string{k1: v1, k2: v2}
		p, err := ParseParams(in)
		if err != nil {
			return
		}
		if (p.Transport != "tcp" && p.Transport != "rdma") || p.CtrlLossTmo < 1 || p.CtrlLossTmo > 86400 ||
			p.ReconnectDelay < 1 || p.ReconnectDelay > 3600 || p.KeepAliveTmo < 1 || p.KeepAliveTmo > 3600 ||
			p.NrIOQueues < 0 || p.NrIOQueues > 1024 {
			t.Fatalf("ParseParams(%v) accepted %+v", in, p)
		}
		for _, n := range p.StorageNodes {
			if !storageNodeRE.MatchString(n) {
				t.Fatalf("ParseParams(%v) accepted storage node %q", in, n)
			}
		}
		back, err := ParseParams(p.VolumeContext())
		if err != nil || back.Transport != p.Transport || back.CtrlLossTmo != p.CtrlLossTmo ||
			back.ReconnectDelay != p.ReconnectDelay || back.KeepAliveTmo != p.KeepAliveTmo ||
			back.NrIOQueues != p.NrIOQueues || back.Zeroed != p.Zeroed {
			t.Fatalf("ParseParams(%v) = %+v; its volume_context parses to %+v, %v", in, p, back, err)
		}
	})
}
