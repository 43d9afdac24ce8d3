package version

import (
	"strings"
	"testing"
)

func TestStringCarriesInjectedValues(t *testing.T) {
	oldV, oldC, oldD := Version, Commit, BuildDate
	t.Cleanup(func() { Version, Commit, BuildDate = oldV, oldC, oldD })
	Version, Commit, BuildDate = "v1.2.3", "abc123", "2026-11-21T00:00:00Z"

	got := String("nvmeof-csi")
	for _, want := range []string{"nvmeof-csi", "v1.2.3", "abc123", "2026-11-21T00:00:00Z"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, missing %q", got, want)
		}
	}
}
