package yamlstrict

import "testing"

type sample struct {
	ServerName string `json:"serverName"`
	Port       int    `json:"port"`
}

func TestUnmarshal(t *testing.T) {
	var s sample
	if err := Unmarshal([]byte("serverName: a\nport: 1\n"), &s); err != nil || s.ServerName != "a" || s.Port != 1 {
		t.Fatalf("good input: %+v, %v", s, err)
	}
	for name, in := range map[string]string{
		"wrong case": "servername: a\n",
		"unknown":    "serverName: a\nhost: b\n",
		"duplicate":  "port: 1\nport: 2\n",
		"bad yaml":   "serverName: [\n",
		"bad type":   "port: eleven\n",
	} {
		if err := Unmarshal([]byte(in), &sample{}); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
}
