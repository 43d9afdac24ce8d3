//go:build vm

package nvmet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestHostKeyIsRequiredAndKeptOnTheKernel(t *testing.T) {
	ctx := context.Background()
	dev := vmenv.Loop(t, "nvmet-dhchap", "64M")
	tg := setUp(t)
	secret := vmenv.DHCHAPSecret(t)
	mustDo(t, tg.EnsureHost(ctx, nvmet.Host{NQN: hostA.nqn, DHCHAPKey: secret}))
	t.Cleanup(func() { mustDo(t, tg.RemoveHost(ctx, hostA.nqn)) })
	vol := nvmet.Subsystem{
		NQN:       prefix + "vol-auth",
		Namespace: nvmet.Namespace{DevicePath: dev, UUID: uuid1},
		Hosts:     []string{hostA.nqn},
		Ports:     []uint16{1},
	}
	mustDo(t, tg.EnsureSubsystem(ctx, vol))
	opts := connectOpts("tcp", vmtest.PortalA, vol.NQN, hostA)

	_, err := connect(opts)
	if err == nil {
		t.Fatal("connected without the key")
	}
	t.Logf("refused without the key: %v", err)
	if _, err := connect(opts + ",dhchap_secret=" + vmenv.DHCHAPSecret(t)); err == nil {
		t.Fatal("connected with a wrong key")
	}
	ctrl := mustConnect(t, opts+",dhchap_secret="+secret)
	namespaceDir(t, ctrl)
	disconnect(t, ctrl)

	mustDo(t, tg.RemoveSubsystem(ctx, vol.NQN))
	key, err := os.ReadFile(filepath.Join(root, "hosts", hostA.nqn, "dhchap_key"))
	if err != nil || string(key) != secret+"\n" {
		t.Fatalf("the keyed host object did not survive its last subsystem: %q, %v", key, err)
	}
	mustDo(t, tg.RemoveHost(ctx, hostA.nqn))
	if _, err := os.Stat(filepath.Join(root, "hosts", hostA.nqn)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("RemoveHost left the host: %v", err)
	}
}
