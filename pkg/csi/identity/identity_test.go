package identity

import (
	"context"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

func TestGetPluginInfo(t *testing.T) {
	resp, err := New(Options{}).GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
	if err != nil || resp.GetName() != contract.DriverName || resp.GetVendorVersion() != version.Version {
		t.Fatalf("GetPluginInfo = %v, %v", resp, err)
	}
}

func TestGetPluginCapabilitiesDependOnTheControllerService(t *testing.T) {
	for _, tc := range []struct {
		controller bool
		want       map[string]bool
	}{
		{true, map[string]bool{"CONTROLLER_SERVICE": true, "VOLUME_ACCESSIBILITY_CONSTRAINTS": true, "ONLINE": true}},
		{false, map[string]bool{"ONLINE": true}},
	} {
		resp, err := New(Options{Controller: tc.controller}).GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, c := range resp.GetCapabilities() {
			if s := c.GetService(); s != nil {
				got[s.GetType().String()] = true
			}
			if e := c.GetVolumeExpansion(); e != nil {
				got[e.GetType().String()] = true
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("controller=%v: capabilities %v, want %v", tc.controller, got, tc.want)
		}
		for k := range tc.want {
			if !got[k] {
				t.Errorf("controller=%v: missing %s in %v", tc.controller, k, got)
			}
		}
	}
}

func TestProbe(t *testing.T) {
	s1, s2 := fakeagent.New("s1", 1<<40), fakeagent.New("s2", 1<<40)
	cluster := fakeagent.NewCluster(s1, s2)
	nodes := []agentclient.StorageNode{{Name: "s1"}, {Name: "s2"}}
	impostor := fakeagent.NewCluster(fakeagent.New("other", 1<<40))

	for _, tc := range []struct {
		name  string
		opts  Options
		setup func()
		want  bool
	}{
		{name: "node-only mode is always ready", opts: Options{}, want: true},
		{name: "all agents answer", opts: Options{Controller: true, Ready: AgentsReady(nodes, cluster, 0)}, want: true},
		{
			name:  "one agent down is still ready",
			opts:  Options{Controller: true, Ready: AgentsReady(nodes, cluster, 0)},
			setup: func() { s1.SetError(fakeagent.AllMethods, fakeagent.Unavailable) },
			want:  true,
		},
		{
			name: "all agents down is not ready",
			opts: Options{Controller: true, Ready: AgentsReady(nodes, cluster, 0)},
			setup: func() {
				s1.SetError(fakeagent.AllMethods, fakeagent.Unavailable)
				s2.SetError("Info", errors.New("boom"))
			},
			want: false,
		},
		{name: "no storage nodes is not ready", opts: Options{Controller: true, Ready: AgentsReady(nil, cluster, 0)}, want: false},
		{
			name: "an agent with another name is not ready",
			opts: Options{Controller: true, Ready: AgentsReady([]agentclient.StorageNode{{Name: "other-name"}}, fakeRename{impostor}, 0)},
			want: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s1.SetError(fakeagent.AllMethods, nil)
			s2.SetError("Info", nil)
			if tc.setup != nil {
				tc.setup()
			}
			resp, err := New(tc.opts).Probe(context.Background(), &csi.ProbeRequest{})
			if err != nil {
				t.Fatalf("Probe error %v; not being ready must be an answer", err)
			}
			if resp.GetReady().GetValue() != tc.want {
				t.Errorf("ready = %v, want %v", resp.GetReady().GetValue(), tc.want)
			}
		})
	}
}

// fakeRename hands out the agent "other" under any name: a misconfigured address.
type fakeRename struct{ c *fakeagent.Cluster }

func (f fakeRename) Client(string) (agentapi.AgentClient, error) { return f.c.Client("other") }
