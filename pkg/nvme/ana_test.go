package nvme

import "testing"

func TestANAStateReadsEachControllersPaths(t *testing.T) {
	in := &Initiator{SysfsRoot: loadTree(t, "multipath")}
	for ctrl, want := range map[string]string{"nvme0": "optimized", "nvme1": "non-optimized", "nvme9": ""} {
		got, err := in.ANAState(ctrl)
		if err != nil || got != want {
			t.Errorf("ANAState(%s) = %q, %v; want %q", ctrl, got, err, want)
		}
	}
	if _, err := in.ANAState("../etc"); err == nil {
		t.Error("ANAState(../etc) succeeded; want an error for a name that is not a controller's")
	}
}
