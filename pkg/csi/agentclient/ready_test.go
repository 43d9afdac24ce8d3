package agentclient_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
)

func TestReadyWhenOneStorageNodeAnswersWithItsName(t *testing.T) {
	s1, s2 := fakeagent.New("s1", 1<<40), fakeagent.New("s2", 1<<40)
	cluster := fakeagent.NewCluster(s1, s2)
	nodes := []agentclient.StorageNode{{Name: "s1"}, {Name: "s2"}}
	impostor := fakeagent.NewCluster(fakeagent.New("other", 1<<40))

	for _, tc := range []struct {
		name  string
		ready func(context.Context) error
		setup func()
		want  bool
	}{
		{name: "all agents answer", ready: agentclient.Ready(nodes, cluster, 0), want: true},
		{
			name:  "one agent down is still ready",
			ready: agentclient.Ready(nodes, cluster, 0),
			setup: func() { s1.SetError(fakeagent.AllMethods, fakeagent.Unavailable) },
			want:  true,
		},
		{
			name:  "all agents down is not ready",
			ready: agentclient.Ready(nodes, cluster, 0),
			setup: func() {
				s1.SetError(fakeagent.AllMethods, fakeagent.Unavailable)
				s2.SetError("Info", errors.New("boom"))
			},
			want: false,
		},
		{name: "no storage nodes is not ready", ready: agentclient.Ready(nil, cluster, 0), want: false},
		{
			name:  "an agent with another name is not ready",
			ready: agentclient.Ready([]agentclient.StorageNode{{Name: "other-name"}}, fakeRename{impostor}, 0),
			want:  false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s1.SetError(fakeagent.AllMethods, nil)
			s2.SetError("Info", nil)
			if tc.setup != nil {
				tc.setup()
			}
			err := tc.ready(context.Background())
			if (err == nil) != tc.want {
				t.Errorf("ready check = %v, want ready=%v", err, tc.want)
			}
		})
	}
}

// fakeRename hands out the agent "other" under any name: a misconfigured address.
type fakeRename struct{ c *fakeagent.Cluster }

func (f fakeRename) Client(string) (agentapi.AgentClient, error) { return f.c.Client("other") }
