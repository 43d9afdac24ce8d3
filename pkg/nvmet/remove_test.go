package nvmet_test

import (
	"errors"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
)

func TestRemoveSubsystem(t *testing.T) {
	vol := volume("vol-1")
	tests := []struct {
		name    string
		before  func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS)
		nqn     string
		wantErr error
		check   func(t *testing.T, f *nvmettest.FS)
	}{{
		name:   "removes port links, hosts, the namespace and the subsystem",
		before: ensure(vol),
		nqn:    vol.NQN,
		check: func(t *testing.T, f *nvmettest.FS) {
			for _, dir := range [][]string{{"subsystems"}, {"hosts"}, {"ports", "1", "subsystems"}, {"ports", "2", "subsystems"}} {
				if got := listed(t, f, dir...); len(got) != 0 {
					t.Errorf("%v still has %v", dir, got)
				}
			}
		},
	}, {
		name: "is a no-op for an absent subsystem",
		nqn:  vol.NQN,
	}, {
		name: "succeeds the second time",
		before: func(t *testing.T, tg *nvmet.Target, _ *nvmettest.FS) {
			must(t, tg.EnsureSubsystem(ctx, vol))
			must(t, tg.RemoveSubsystem(ctx, vol.NQN))
		},
		nqn: vol.NQN,
	}, {
		name:   "keeps hosts and ports other subsystems use",
		before: ensure(vol, volume("vol-2")),
		nqn:    vol.NQN,
		check: func(t *testing.T, f *nvmettest.FS) {
			if !exists(t, f, "hosts", hostA) || !exists(t, f, "ports", "1", "subsystems", prefix+"vol-2") {
				t.Error("vol-2 lost its host or its port link")
			}
		},
	}, {
		name: "refuses a foreign subsystem and leaves it alone",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			createForeign(t, f)
			snapshot := dump(t, f)
			t.Cleanup(func() {
				if got := dump(t, f); got != snapshot {
					t.Errorf("configfs changed:\n%s\nwas:\n%s", got, snapshot)
				}
			})
		},
		nqn:     foreign,
		wantErr: nvmet.ErrForeign,
	}, {
		name: "leaves a foreign subsystem that shares hosts and ports alone",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			createForeign(t, f)
			must(t, tg.EnsureSubsystem(ctx, vol))
			snapshot := dump(t, f, "subsystems", foreign)
			t.Cleanup(func() {
				if got := dump(t, f, "subsystems", foreign); got != snapshot {
					t.Errorf("foreign subsystem changed:\n%s\nwas:\n%s", got, snapshot)
				}
				if !exists(t, f, "hosts", hostA) || !exists(t, f, "ports", "2", "subsystems", foreign) {
					t.Error("the foreign subsystem lost its host or its port link")
				}
			})
		},
		nqn: vol.NQN,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, f := newTarget(t)
			if tc.before != nil {
				tc.before(t, tg, f)
			}
			err := tg.RemoveSubsystem(ctx, tc.nqn)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("RemoveSubsystem: %v, want %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
			if err == nil && exists(t, f, "subsystems", tc.nqn) {
				t.Error("subsystem still there")
			}
		})
	}
}

func TestRemoveSubsystemFinishesAfterAnInterruptedRemoval(t *testing.T) {
	tg, f := newTarget(t)
	vol := volume("vol-1")
	must(t, tg.EnsureSubsystem(ctx, vol))
	f.SetHook(func(op, path string) error {
		if op == "rmdir" {
			return errors.New("interrupted")
		}
		return nil
	})
	if err := tg.RemoveSubsystem(ctx, vol.NQN); err == nil {
		t.Fatal("RemoveSubsystem succeeded despite the failing rmdir")
	}
	f.SetHook(nil)
	must(t, tg.RemoveSubsystem(ctx, vol.NQN))
	if got := listed(t, f, "subsystems"); len(got) != 0 {
		t.Errorf("subsystems left: %v", got)
	}
}
