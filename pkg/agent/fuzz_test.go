package agent

import (
	"strings"
	"testing"
)

// FuzzParseConfig: any file parses to an error or to a configuration that passes its own
// validation again and names a valid node (the NQN prefix is built from it).
func FuzzParseConfig(f *testing.F) {
	f.Add("nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1}]\nlisten: unix:///x\n")
	f.Add("nodeName: s1\npool: {backend: dmthin, dataDevice: /dev/vdb, metadataDevice: /dev/vdc}\nportals: [{id: 1, transport: rdma, address: \"fd00::1\", port: 4421}]\nlisten: unix:///x\n")
	f.Add("nodeName: S1\nnodeName: s2\n")
	f.Add("topology: {a: b}\n")
	f.Add("{")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseConfig([]byte(raw))
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted %q, which then fails validation: %v", raw, err)
		}
		if !nodeNameRE.MatchString(c.NodeName) || !strings.HasSuffix(c.NQNPrefix(), c.NodeName+":") {
			t.Fatalf("ParseConfig accepted node name %q (prefix %q)", c.NodeName, c.NQNPrefix())
		}
	})
}
