package nvmet_test

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

func TestAllowAndDisallowHost(t *testing.T) {
	tg, f := newTarget(t)
	vol := volume("vol-1")
	vol.Hosts = nil
	if err := tg.AllowHost(ctx, vol.NQN, hostA); !errors.Is(err, nvmet.ErrNotFound) {
		t.Fatalf("AllowHost on a missing subsystem: %v", err)
	}
	must(t, tg.DisallowHost(ctx, vol.NQN, hostA)) // absent subsystem: nothing to do
	must(t, tg.EnsureSubsystem(ctx, vol))
	for range 2 {
		must(t, tg.AllowHost(ctx, vol.NQN, hostA))
		must(t, tg.AllowHost(ctx, vol.NQN, hostB))
	}
	got, err := tg.Get(ctx, vol.NQN)
	must(t, err)
	if !slices.Equal(got.Hosts, []string{hostA, hostB}) {
		t.Errorf("hosts %v", got.Hosts)
	}
	for range 2 {
		must(t, tg.DisallowHost(ctx, vol.NQN, hostA))
	}
	if exists(t, f, "hosts", hostA) || exists(t, f, "subsystems", vol.NQN, "allowed_hosts", hostA) {
		t.Error("hostA still allowed or its object not collected")
	}
	if err := tg.AllowHost(ctx, foreign, hostA); !errors.Is(err, nvmet.ErrForeign) {
		t.Errorf("AllowHost on a foreign subsystem: %v", err)
	}
	if err := tg.AllowHost(ctx, vol.NQN, "nqn.bad"); !errors.Is(err, nvmet.ErrInvalidNQN) {
		t.Errorf("AllowHost with a bad host NQN: %v", err)
	}
}

func TestDisallowHostFindsAnEntryUnderAnotherName(t *testing.T) {
	tg, f := newTarget(t)
	vol := volume("vol-1")
	vol.Hosts = nil
	must(t, tg.EnsureSubsystem(ctx, vol))
	must(t, f.Mkdir(p("hosts", hostA)))
	must(t, f.Symlink(p("hosts", hostA), p("subsystems", vol.NQN, "allowed_hosts", "by-hand")))
	got, err := tg.Get(ctx, vol.NQN)
	must(t, err)
	if !slices.Equal(got.Hosts, []string{hostA}) {
		t.Fatalf("hosts %v: the entry's target names the host", got.Hosts)
	}
	must(t, tg.AllowHost(ctx, vol.NQN, hostA))
	must(t, tg.DisallowHost(ctx, vol.NQN, hostA))
	if got := listed(t, f, "subsystems", vol.NQN, "allowed_hosts"); len(got) != 0 {
		t.Errorf("allowed_hosts %v", got)
	}
}

func TestEnsureAndRemoveHost(t *testing.T) {
	tg, f := newTarget(t)
	h := nvmet.Host{NQN: hostA, DHCHAPKey: "DHHC-1:00:a2V5:", DHCHAPCtrlKey: "DHHC-1:00:Y3RybA==:", DHCHAPHash: "hmac(sha512)"}
	for range 2 {
		must(t, tg.EnsureHost(ctx, h))
	}
	for attr, want := range map[string]string{
		"dhchap_key": h.DHCHAPKey, "dhchap_ctrl_key": h.DHCHAPCtrlKey, "dhchap_hash": "hmac(sha512)", "dhchap_dhgroup": "null",
	} {
		if got := read(t, f, "hosts", hostA, attr); got != want {
			t.Errorf("%s = %q, want %q", attr, got, want)
		}
	}
	must(t, tg.EnsureSubsystem(ctx, volume("vol-1")))
	if err := tg.RemoveHost(ctx, hostA); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("RemoveHost of an allowed host: %v, want EBUSY", err)
	}
	must(t, tg.RemoveSubsystem(ctx, prefix+"vol-1"))
	if !exists(t, f, "hosts", hostA) {
		t.Fatal("a keyed host was collected")
	}
	must(t, tg.RemoveHost(ctx, hostA))
	must(t, tg.RemoveHost(ctx, hostA))
	if exists(t, f, "hosts", hostA) {
		t.Error("host still there")
	}
}
