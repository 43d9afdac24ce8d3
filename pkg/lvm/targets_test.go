package lvm

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command/commandtest"
)

const allTargets = "snapshot-merge   v1.5.0\nsnapshot-origin  v1.9.0\nsnapshot         v1.16.0\nthin-pool        v1.23.0\nthin             v1.23.0\nlinear           v1.4.0\n"

func TestCheckTargetsPassesWhenLoaded(t *testing.T) {
	f := commandtest.New()
	f.On("dmsetup", "targets").Return(allTargets)
	if err := CheckTargets(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

// withModprobe makes CheckTargets see (or not see) a modprobe.
func withModprobe(t *testing.T, present bool) {
	old := lookPath
	t.Cleanup(func() { lookPath = old })
	lookPath = func(string) (string, error) {
		if present {
			return "/sbin/modprobe", nil
		}
		return "", exec.ErrNotFound
	}
}

func TestCheckTargetsNamesWhatIsMissing(t *testing.T) {
	for _, modprobe := range []bool{false, true} {
		withModprobe(t, modprobe)
		f := commandtest.New()
		f.On("dmsetup", "targets").Return("thin-pool v1.23.0\nthin v1.23.0\nlinear v1.4.0\n")
		// modprobe loads nothing (a kernel without the module): the target stays missing.
		f.On("modprobe").Return("")
		err := CheckTargets(context.Background(), f)
		if err == nil || !strings.Contains(err.Error(), "snapshot") || !strings.Contains(err.Error(), "dm-snapshot") {
			t.Fatalf("modprobe %v: err = %v, want one naming the snapshot target and dm-snapshot", modprobe, err)
		}
		if ran := len(f.Calls()) > 1; ran != modprobe {
			t.Errorf("modprobe %v: calls %v", modprobe, f.Calls())
		}
	}
}

func TestCheckTargetsLoadsModulesWhenItCan(t *testing.T) {
	withModprobe(t, true)
	f := commandtest.New()
	f.On("dmsetup", "targets").Once().Return("linear v1.4.0\n")
	f.On("modprobe", "-a", "dm-thin-pool", "dm-snapshot").Once().Return("")
	f.On("dmsetup", "targets").Once().Return(allTargets)
	if err := CheckTargets(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}
