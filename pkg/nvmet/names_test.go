package nvmet_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

func TestValidateNQN(t *testing.T) {
	long := "nqn.2026-11.io.nvmeof-csi:" + strings.Repeat("x", nvmet.MaxNQNLength)
	tests := []struct {
		nqn string
		ok  bool
	}{
		{"nqn.2026-11.io.nvmeof-csi:pvc-3f1c", true},
		{"nqn.2014-08.org.nvmexpress:uuid:6f1d2a8e-3b4c-4d5e-8f90-a1b2c3d4e5f6", true},
		{"nqn.2026-11.io.nvmeof-csi:ünïcode", true},
		{long[:nvmet.MaxNQNLength], true},
		{long[:nvmet.MaxNQNLength+1], false},
		{"", false},
		{"iqn.2026-11.io.example:x", false},
		{"nqn.26-11.io.example:x", false},
		{"nqn.2026-11io.example:x", false},
		{"nqn.2026-11.", false},
		{"nqn.2026-11.io.example:a/b", false},
		{"nqn.2026-11.io.example:a b", false},
		{"nqn.2026-11.io.example:a\n", false},
		{"nqn.2026-11.io.example:\xff", false},
		{"nqn.2014-08.org.nvmexpress.discovery", false},
	}
	for _, tc := range tests {
		err := nvmet.ValidateNQN(tc.nqn)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, nvmet.ErrInvalidNQN)) {
			t.Errorf("ValidateNQN(%q) = %v, want ok=%v", tc.nqn, err, tc.ok)
		}
	}
}
