package lvm

import "testing"

func TestDeviceFilter(t *testing.T) {
	tests := []struct {
		name    string
		devices []string
		want    string
	}{
		{"no devices, no filter", nil, ""},
		{"one device", []string{"/dev/loop0"},
			`devices { global_filter = [ "a|^/dev/loop0$|", "r|.*|" ] }`},
		{"each device accepted, in order", []string{"/dev/nvme0n1", "/dev/loop1"},
			`devices { global_filter = [ "a|^/dev/nvme0n1$|", "a|^/dev/loop1$|", "r|.*|" ] }`},
		// Metacharacters are escaped for the regular expression, and the escaping backslash
		// for the lvm.conf string: LVM reads "\\." as the regex \. (a literal dot).
		{"regex metacharacters are literal", []string{"/dev/disk/by-id/a.b+c(1)[x]|y"},
			`devices { global_filter = [ "a|^/dev/disk/by-id/a\\.b\\+c\\(1\\)\\[x\\]\\|y$|", "r|.*|" ] }`},
		{"a double quote cannot end the string", []string{`/dev/a"b`},
			`devices { global_filter = [ "a|^/dev/a\"b$|", "r|.*|" ] }`},
	}
	for _, tt := range tests {
		if got := DeviceFilter(tt.devices...); got != tt.want {
			t.Errorf("%s: DeviceFilter(%q) =\n%s\nwant\n%s", tt.name, tt.devices, got, tt.want)
		}
	}
}
