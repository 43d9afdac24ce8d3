package identity

import (
	"context"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

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
		{true, map[string]bool{"CONTROLLER_SERVICE": true, "VOLUME_ACCESSIBILITY_CONSTRAINTS": true, "GROUP_CONTROLLER_SERVICE": true, "SNAPSHOT_METADATA_SERVICE": true, "ONLINE": true}},
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

func TestProbeAnswersReadinessWithoutAnError(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want bool
	}{
		{name: "node-only mode is always ready", opts: Options{}, want: true},
		{name: "a passing check is ready", opts: Options{Controller: true, Ready: func(context.Context) error { return nil }}, want: true},
		{name: "a failing check is not ready", opts: Options{Controller: true, Ready: func(context.Context) error { return errors.New("no agent") }}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
