package thin

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseDevReadsTheKernelsMajorMinor(t *testing.T) {
	if d, err := parseDev("253:17"); err != nil || d != unix.Mkdev(253, 17) {
		t.Fatalf("parseDev = %d, %v", d, err)
	}
	for _, bad := range []string{"", "253", "253:", ":1", "/dev/loop0", "a:b", "1:2:3", "-1:2", "99999999999:0"} {
		if _, err := parseDev(bad); err == nil {
			t.Errorf("parseDev(%q) accepted", bad)
		}
	}
}
