package grpcserver

import (
	"path/filepath"
	"testing"
)

// FuzzParseEndpoint: an accepted endpoint is a unix socket at an absolute path or a TCP
// address.
func FuzzParseEndpoint(f *testing.F) {
	f.Add("unix:///csi/csi.sock")
	f.Add("tcp://127.0.0.1:10000")
	f.Add("unix://relative")
	f.Add("udp://x")
	f.Fuzz(func(t *testing.T, endpoint string) {
		ep, err := ParseEndpoint(endpoint)
		if err != nil {
			return
		}
		switch ep.Network {
		case "unix":
			if !filepath.IsAbs(ep.Address) {
				t.Fatalf("ParseEndpoint(%q) = %+v", endpoint, ep)
			}
		case "tcp":
			if ep.Address == "" {
				t.Fatalf("ParseEndpoint(%q) = %+v", endpoint, ep)
			}
		default:
			t.Fatalf("ParseEndpoint(%q) = network %q", endpoint, ep.Network)
		}
	})
}
