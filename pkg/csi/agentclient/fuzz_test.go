package agentclient

import "testing"

// FuzzParseConfig: the controller's storage-node file parses to an error or to a
// configuration that passes its own validation again.
func FuzzParseConfig(f *testing.F) {
	f.Add("storageNodes:\n- name: s1\n  address: unix:///run/a.sock\n")
	f.Add("storageNodes:\n- name: s1\n  address: 192.0.2.1:9000\n  tls: {ca: /a, cert: /b, key: /c}\n  topology: {zone: a}\n")
	f.Add("storageNodes:\n- name: s1\n- name: s1\n")
	f.Add("[")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseConfig([]byte(raw))
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted %q, which then fails validation: %v", raw, err)
		}
	})
}
