package node

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// FuzzParsePublishContext: publish_context arrives through kubelet from the API server. What
// is accepted is safe to put in a fabrics option string and names at least one portal.
func FuzzParsePublishContext(f *testing.F) {
	f.Add(testNQN, testUUID, "tcp", "192.0.2.1:4420,192.0.2.2:4420")
	f.Add("nqn.x,hostnqn=y", testUUID, "rdma", "[fd00::1]:4421")
	f.Add(testNQN, "not-a-uuid", "fc", "192.0.2.1")
	f.Fuzz(func(t *testing.T, nqn, uuid, transport, portals string) {
		tg, err := parsePublishContext(map[string]string{
			contract.PublishSubsysNQN: nqn, contract.PublishNSUUID: uuid,
			contract.PublishTransport: transport, contract.PublishPortals: portals,
		})
		if err != nil {
			return
		}
		if nvme.ValidNQN(tg.subsysNQN) != nil || nvme.ValidUUID(tg.nsUUID) != nil || len(tg.portals) == 0 {
			t.Fatalf("accepted %+v", tg)
		}
	})
}

// FuzzCheckPath: an accepted path is absolute and clean, with no NUL byte.
func FuzzCheckPath(f *testing.F) {
	f.Add("/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pv/mount")
	f.Add("rel/path")
	f.Add("/a/../b")
	f.Add("/a\x00")
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath("path", p, nil) != nil {
			return
		}
		for i := 0; i < len(p); i++ {
			if p[i] == 0 {
				t.Fatalf("accepted %q with a NUL byte", p)
			}
		}
		if p[0] != '/' || (len(p) > 1 && p[len(p)-1] == '/') {
			t.Fatalf("accepted %q", p)
		}
	})
}
