package nvmettest

import "testing"

// The same check runs against the kernel in tests/nvmet.
func TestFakeHasKernelSemantics(t *testing.T) {
	f := New()
	f.AddDevice("/dev/loop7")
	if err := CheckSemantics(f, f.Root(), "/dev/loop7", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"subsystems", "ports", "hosts"} {
		if names, err := f.ReadDir(f.Root() + "/" + dir); err != nil || len(names) != 0 {
			t.Errorf("%s after the check: %v, %v", dir, names, err)
		}
	}
}
