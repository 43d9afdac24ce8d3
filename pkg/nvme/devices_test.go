package nvme

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNamespaceDevices(t *testing.T) {
	for _, tc := range []struct {
		name, tree, uuid string
		visible, hidden  []string
	}{
		{"multipath: the head, and each path hidden", "multipath", testUUID1, []string{"nvme0n1"}, []string{"nvme0c0n1", "nvme0c1n1"}},
		{"UUID compared case-insensitively", "multipath", strings.ToUpper(testUUID1), []string{"nvme0n1"}, []string{"nvme0c0n1", "nvme0c1n1"}},
		{"UUID from wwid when there is no uuid attribute", "multipath", testUUID2, []string{"nvme1n1"}, []string{"nvme1c2n1"}},
		{"no multipath: each controller's own device", "nomultipath", testUUID1, []string{"nvme0n1", "nvme1n1"}, nil},
		{"no such namespace", "nomultipath", testUUID2, nil, nil},
		{"no NVMe at all", "", testUUID1, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Initiator{SysfsRoot: t.TempDir()}
			if tc.tree != "" {
				in.SysfsRoot = loadTree(t, tc.tree)
			}
			visible, hidden, err := in.NamespaceDevices(tc.uuid)
			if err != nil || !slices.Equal(visible, tc.visible) || !slices.Equal(hidden, tc.hidden) {
				t.Errorf("NamespaceDevices = %v, %v, %v; want %v, %v", visible, hidden, err, tc.visible, tc.hidden)
			}
		})
	}
	if _, _, err := (&Initiator{}).NamespaceDevices("not-a-uuid"); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("a malformed UUID: %v, want ErrInvalidOption", err)
	}
}
