package inventory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command/commandtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
)

const (
	ours    = "nqn.2026-11.io.nvmeof-csi:sn-a:"
	foreign = "nqn.2014-08.org.example:"
	// dmOurs is the name prefix of a dm-thin pool's stack.
	dmOurs = "nvmeof-sn-a-"
)

// fakeDM is the kernel's device-mapper: a few devices, listed by prefix in no particular order.
type fakeDM struct {
	names []string
	err   error
	calls int
}

func (f *fakeDM) List(prefix string) ([]dm.Device, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	var out []dm.Device
	for _, n := range f.names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, dm.Device{Name: n})
		}
	}
	return out, nil
}

// dmDevices are a dm-thin pool's stack with one thin device, another pool's (whose name
// extends ours), and an LVM volume.
var dmDevices = []string{dmOurs + "vol-1", "nvmeof-sn-ab-pool", dmOurs + "pool", "vg0-root", dmOurs + "pool_tdata", dmOurs + "pool_tmeta"}

// host is a fake host: a thin pool with one volume and one linear LV besides it, an nvmet
// subsystem of ours and a foreign one, a controller of each, and mounts in and out of the
// kubelet's directories.
type host struct {
	pool      *lvm.Pool
	dm        *fakeDM
	fs        *nvmettest.FS
	sysfs     string
	mountinfo string
}

// lvsReport is `lvs --reportformat json` of a volume group with a thin pool, a thin volume
// and a linear LV.
const lvsReport = `{"report": [{"lv": [
  {"lv_name":"pool", "vg_name":"nvmeof", "lv_size":"1061158912", "pool_lv":"", "segtype":"thin-pool", "lv_attr":"twi-aotz--"},
  {"lv_name":"pvc-1", "vg_name":"nvmeof", "lv_size":"104857600", "pool_lv":"pool", "segtype":"thin", "lv_attr":"Vwi-a-tz--"},
  {"lv_name":"thick", "vg_name":"nvmeof", "lv_size":"8388608", "pool_lv":"", "segtype":"linear", "lv_attr":"-wi-a-----"}
]}]}`

const mountinfo = `22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 259:0 / /var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount rw,relatime shared:5 - ext4 /dev/nvme0n1 rw
31 22 259:0 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount rw,relatime shared:5 - ext4 /dev/nvme0n1 rw
32 22 0:5 /nvme0n1 /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/p2 rw shared:2 - devtmpfs udev rw
33 22 0:40 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~projected/token rw shared:6 - tmpfs tmpfs rw
34 22 0:41 / /var/lib/kubelet-other/x rw shared:7 - tmpfs tmpfs rw
35 22 0:42 / /var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount rw shared:8 - tmpfs tmpfs rw
`

func newHost(t *testing.T) host {
	t.Helper()
	ctx := context.Background()
	f := commandtest.New()
	f.On("lvm", "lvs").Return(lvsReport)
	h := host{pool: &lvm.Pool{VG: "nvmeof", ThinPool: "pool", Runner: f}, dm: &fakeDM{names: dmDevices},
		fs: nvmettest.New(), sysfs: t.TempDir()}

	h.fs.AddDevice("/dev/nvmeof/pvc-1")
	for nqn, uuid := range map[string]string{
		ours + "pvc-1":   "6f1d2a8e-3b4c-4d5e-8f90-a1b2c3d4e5f6",
		foreign + "disk": "7f1d2a8e-3b4c-4d5e-8f90-a1b2c3d4e5f6",
	} {
		tg := &nvmet.Target{Prefix: nqn, FS: h.fs}
		s := nvmet.Subsystem{NQN: nqn, Namespace: nvmet.Namespace{DevicePath: "/dev/nvmeof/pvc-1", UUID: uuid}}
		if err := tg.EnsureSubsystem(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	for name, nqn := range map[string]string{"nvme0": ours + "pvc-1", "nvme1": foreign + "disk"} {
		dir := filepath.Join(h.sysfs, "class", "nvme", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for attr, v := range map[string]string{"subsysnqn": nqn, "transport": "tcp", "state": "live",
			"address": "traddr=192.0.2.1,trsvcid=4420"} {
			if err := os.WriteFile(filepath.Join(dir, attr), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	h.mountinfo = filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(h.mountinfo, []byte(mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h host) scope(prefix string, dirs ...string) Scope {
	return Scope{Pool: h.pool, DMPrefix: dmOurs, DM: h.dm, NQNPrefix: prefix, NvmetFS: h.fs,
		Initiator: &nvme.Initiator{SysfsRoot: h.sysfs}, MountDirs: dirs, MountInfoPath: h.mountinfo}
}

func TestTakeListsWhatIsInScope(t *testing.T) {
	h := newHost(t)
	got, err := Take(context.Background(), h.scope(ours, "/var/lib/kubelet/plugins/kubernetes.io/csi"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"LV pvc-1 (thin)", "LV thick (linear)",
		"device-mapper device " + dmOurs + "pool", "device-mapper device " + dmOurs + "pool_tdata",
		"device-mapper device " + dmOurs + "pool_tmeta", "device-mapper device " + dmOurs + "vol-1",
		"nvmet subsystem " + ours + "pvc-1",
		"NVMe controller nvme0 of " + ours + "pvc-1 (live)",
		"mount /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/p2",
		"mount /var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
		"mount /var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
	}
	if items := got.Items(); !slices.Equal(items, want) {
		t.Errorf("Items =\n%s\nwant\n%s", strings.Join(items, "\n"), strings.Join(want, "\n"))
	}
	if got.Empty() {
		t.Error("Empty = true")
	}
	if ns := got.Subsystems[0].Namespace; ns.DevicePath != "/dev/nvmeof/pvc-1" {
		t.Errorf("subsystem read back with namespace %+v", ns)
	}
}

func TestTakeWithoutPrefixCountsForeignObjectsToo(t *testing.T) {
	h := newHost(t)
	got, err := Take(context.Background(), h.scope(""))
	if err != nil {
		t.Fatal(err)
	}
	var subs, ctrls []string
	for _, s := range got.Subsystems {
		subs = append(subs, s.NQN)
	}
	for _, c := range got.Controllers {
		ctrls = append(ctrls, c.Name)
	}
	if want := []string{foreign + "disk", ours + "pvc-1"}; !slices.Equal(subs, want) {
		t.Errorf("subsystems %v, want %v", subs, want)
	}
	if want := []string{"nvme0", "nvme1"}; !slices.Equal(ctrls, want) {
		t.Errorf("controllers %v, want %v", ctrls, want)
	}
	if got.Mounts != nil {
		t.Errorf("no MountDirs, but mounts %v", got.Mounts)
	}
}

func TestTakeOfAnEmptyHost(t *testing.T) {
	f := commandtest.New()
	f.On("lvm", "lvs").Return(`{"report": [{"lv": [{"lv_name":"pool", "segtype":"thin-pool"}]}]}`)
	mi := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mi, []byte(strings.SplitAfter(mountinfo, "\n")[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Scope{Pool: &lvm.Pool{VG: "nvmeof", ThinPool: "pool", Runner: f}, DMPrefix: dmOurs, DM: &fakeDM{names: []string{"vg0-root"}},
		NvmetRoot: filepath.Join(t.TempDir(), "no-configfs"), Initiator: &nvme.Initiator{SysfsRoot: t.TempDir()},
		MountDirs: []string{"/var/lib/kubelet"}, MountInfoPath: mi}
	got, err := Take(context.Background(), s)
	if err != nil || !got.Empty() || len(got.Items()) != 0 {
		t.Errorf("Take = %+v, %v; want nothing", got, err)
	}
}

func TestTakeReportsWhatItCouldNotRead(t *testing.T) {
	h := newHost(t)
	f := commandtest.New()
	f.On("lvm", "lvs").Return("not json")
	h.pool.Runner = f
	h.dm.err = errors.New("no device-mapper")
	h.mountinfo = filepath.Join(t.TempDir(), "missing")
	got, err := Take(context.Background(), h.scope(ours, "/var/lib/kubelet"))
	for _, want := range []string{"LVs of volume group nvmeof", "device-mapper devices named " + dmOurs + "*", "mounts"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one naming %q", err, want)
		}
	}
	if len(got.Subsystems) != 1 || len(got.Controllers) != 1 {
		t.Errorf("the readable parts are missing: %+v", got)
	}
}

func TestTakeWithoutDMPrefixListsNoDeviceMapperDevices(t *testing.T) {
	h := newHost(t)
	s := h.scope(ours)
	s.DMPrefix = ""
	got, err := Take(context.Background(), s)
	if err != nil || got.DMDevices != nil || h.dm.calls != 0 {
		t.Errorf("DMDevices %v, %v after %d List calls; want none asked for", got.DMDevices, err, h.dm.calls)
	}
}

func TestMountsUnder(t *testing.T) {
	h := newHost(t)
	tests := []struct {
		dirs []string
		want []string
	}{
		{[]string{"/var/lib/kubelet/pods/*/volumes/kubernetes.io~csi"},
			[]string{"/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount"}},
		// A directory is a whole path element: /var/lib/kubelet is not a prefix of
		// /var/lib/kubelet-other. Deepest first, so that unmounting in order works.
		{[]string{"/var/lib/kubelet/pods", "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/"},
			[]string{
				"/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/p2",
				"/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount",
				"/var/lib/kubelet/pods/p1/volumes/kubernetes.io~projected/token",
			}},
		{[]string{"/var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount"},
			[]string{ // mounted twice: listed twice
				"/var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
				"/var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
			}},
		{[]string{"/"}, []string{ // everything, longest path first
			"/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/p2",
			"/var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
			"/var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
			"/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount",
			"/var/lib/kubelet/pods/p1/volumes/kubernetes.io~projected/token",
			"/var/lib/kubelet-other/x",
			"/",
		}},
		{[]string{"/srv"}, nil},
	}
	for _, tt := range tests {
		got, err := MountsUnder(h.mountinfo, tt.dirs...)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("MountsUnder(%q) =\n%s, %v\nwant\n%s", tt.dirs, strings.Join(got, "\n"), err, strings.Join(tt.want, "\n"))
		}
	}
	if _, err := MountsUnder(h.mountinfo, "/var/[lib"); err == nil {
		t.Error("a malformed pattern is no error")
	}
}
