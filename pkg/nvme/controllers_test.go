package nvme

import (
	"reflect"
	"testing"
)

func TestControllersReadsEveryPathFromSysfs(t *testing.T) {
	in := &Initiator{SysfsRoot: loadTree(t, "multipath")}
	got, err := in.Controllers(testNQN1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Controller{
		{Name: "nvme0", SubsysNQN: testNQN1, Transport: "tcp", Address: "192.0.2.1", ServiceID: "4420", HostNQN: testHostNQN, HostID: testHostID, State: "live"},
		{Name: "nvme1", SubsysNQN: testNQN1, Transport: "tcp", Address: "192.0.2.2", ServiceID: "4420", HostNQN: testHostNQN, HostID: testHostID, State: "live"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Controllers(%s)\n got %+v\nwant %+v", testNQN1, got, want)
	}
	rdma, err := in.Controllers(testNQN2)
	if err != nil || len(rdma) != 1 || rdma[0].Transport != "rdma" || rdma[0].Address != "192.0.2.1" || rdma[0].ServiceID != "4420" {
		t.Errorf("Controllers(%s) = %+v, %v; want nvme2 over rdma to 192.0.2.1:4420", testNQN2, rdma, err)
	}
	all, err := in.Controllers("")
	if err != nil || len(all) != 3 {
		t.Errorf("Controllers(\"\") = %d controllers, %v; want 3", len(all), err)
	}
	none, err := in.Controllers("nqn.2024-01.io.example:absent")
	if err != nil || len(none) != 0 {
		t.Errorf("Controllers(absent) = %+v, %v; want none", none, err)
	}
}

func TestControllersWithoutNVMeLoadedIsEmpty(t *testing.T) {
	got, err := (&Initiator{SysfsRoot: t.TempDir()}).Controllers("")
	if err != nil || len(got) != 0 {
		t.Errorf("Controllers = %+v, %v; want none", got, err)
	}
}

func TestControllersSortsNumerically(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"nvme10", "nvme2", "nvme1"} {
		addController(t, root, n, testNQN1, "192.0.2.1", "live")
	}
	got, err := (&Initiator{SysfsRoot: root}).Controllers(testNQN1)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
	}
	if want := []string{"nvme1", "nvme2", "nvme10"}; !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"traddr=192.0.2.1,trsvcid=4420,src_addr=192.0.2.1\n", map[string]string{"traddr": "192.0.2.1", "trsvcid": "4420", "src_addr": "192.0.2.1"}},
		{"traddr=192.0.2.1,trsvcid=4420", map[string]string{"traddr": "192.0.2.1", "trsvcid": "4420"}},
		{"traddr=fe80::1%nvt0,trsvcid=4420,host_traddr=fe80::2", map[string]string{"traddr": "fe80::1%nvt0", "trsvcid": "4420", "host_traddr": "fe80::2"}},
		{"", map[string]string{}},
	} {
		if got := parseAddress(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseAddress(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMultipathEnabled(t *testing.T) {
	for _, tc := range []struct {
		tree string
		want bool
	}{{"multipath", true}, {"nomultipath", false}} {
		if got := (&Initiator{SysfsRoot: loadTree(t, tc.tree)}).MultipathEnabled(); got != tc.want {
			t.Errorf("%s: MultipathEnabled = %v, want %v", tc.tree, got, tc.want)
		}
	}
	if (&Initiator{SysfsRoot: t.TempDir()}).MultipathEnabled() {
		t.Error("MultipathEnabled without nvme_core = true, want false")
	}
}
