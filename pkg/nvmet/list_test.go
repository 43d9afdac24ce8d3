package nvmet_test

import (
	"errors"
	"reflect"
	"syscall"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

func TestList(t *testing.T) {
	tg, f := newTarget(t)
	if got, err := tg.List(ctx); err != nil || got != nil {
		t.Fatalf("List of nothing: %v, %v", got, err)
	}
	createForeign(t, f)
	b := volume("vol-b")
	b.Namespace = nvmet.Namespace{DevicePath: devB, UUID: "11111111-2222-4333-8444-555555555555", ANAGroupID: 3}
	b.Ports = []uint16{2}
	b.Hosts = []string{hostC, hostB}
	b.Serial = "SN-B"
	b.Model = "nvmeof-csi volume"
	a := volume("vol-a")
	must(t, tg.EnsureSubsystem(ctx, b))
	must(t, tg.EnsureSubsystem(ctx, a))
	got, err := tg.List(ctx)
	must(t, err)
	want := []nvmet.Subsystem{normalized(t, a), normalized(t, b)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List:\n got %+v\nwant %+v", got, want)
	}
	nqns, err := tg.NQNs(ctx)
	if err != nil || !reflect.DeepEqual(nqns, []string{a.NQN, b.NQN}) {
		t.Errorf("NQNs = %v, %v; want ours only, sorted: %v", nqns, err, []string{a.NQN, b.NQN})
	}
}

func TestGetAndRevalidateMissingSubsystem(t *testing.T) {
	tg, _ := newTarget(t)
	if _, err := tg.Get(ctx, prefix+"vol-1"); !errors.Is(err, nvmet.ErrNotFound) {
		t.Errorf("Get: %v", err)
	}
	if err := tg.RevalidateNamespace(ctx, prefix+"vol-1", 1); !errors.Is(err, nvmet.ErrNotFound) {
		t.Errorf("RevalidateNamespace: %v", err)
	}
	if _, err := tg.Get(ctx, foreign); !errors.Is(err, nvmet.ErrForeign) {
		t.Errorf("Get foreign: %v", err)
	}
}

func TestRevalidateNamespace(t *testing.T) {
	tg, f := newTarget(t)
	vol := volume("vol-1")
	must(t, tg.EnsureSubsystem(ctx, vol))
	must(t, tg.RevalidateNamespace(ctx, vol.NQN, 1))
	write(t, f, "0", "subsystems", vol.NQN, "namespaces", "1", "enable")
	if err := tg.RevalidateNamespace(ctx, vol.NQN, 1); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("RevalidateNamespace of a disabled namespace: %v, want EINVAL", err)
	}
}

func TestTargetRefusesAMissingPrefix(t *testing.T) {
	_, f := newTarget(t)
	for _, pfx := range []string{"", "io.nvmeof-csi:"} {
		tg := &nvmet.Target{Prefix: pfx, FS: f}
		if _, err := tg.List(ctx); !errors.Is(err, nvmet.ErrInvalid) {
			t.Errorf("List with prefix %q: %v", pfx, err)
		}
		if err := tg.EnsureSubsystem(ctx, volume("vol-1")); !errors.Is(err, nvmet.ErrInvalid) {
			t.Errorf("EnsureSubsystem with prefix %q: %v", pfx, err)
		}
	}
}
