package nvme

import (
	"strings"
	"testing"
)

// The fabrics device's reply and sysfs attributes are the kernel's words; parsing them never
// panics, and what parseConnectReply accepts is a controller name.

func FuzzParseConnectReply(f *testing.F) {
	f.Add("instance=3,cntlid=1\n")
	f.Add("instance=-1")
	f.Add("instance=99999999999999999999")
	f.Fuzz(func(t *testing.T, reply string) {
		name, err := parseConnectReply(reply)
		if err != nil {
			return
		}
		if !strings.HasPrefix(name, "nvme") || strings.Trim(name[len("nvme"):], "0123456789") != "" || len(name) == len("nvme") {
			t.Fatalf("parseConnectReply(%q) = %q", reply, name)
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	f.Add("traddr=192.0.2.1,trsvcid=4420,src_addr=192.0.2.1\n")
	f.Add("traddr=fd00::1,trsvcid=4421")
	f.Add("=,==,a")
	f.Fuzz(func(t *testing.T, s string) {
		for k := range parseAddress(s) {
			if strings.Contains(k, ",") {
				t.Fatalf("parseAddress(%q) key %q", s, k)
			}
		}
	})
}
