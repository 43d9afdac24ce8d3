//go:build vm

package dm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
)

// TestVersionsAndTargets: the kernel speaks interface 4 and has the targets the thin backend
// needs (the VM loads dm-thin-pool; the library itself loads no module).
func TestVersionsAndTargets(t *testing.T) {
	c := open(t)
	v, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ioctl interface %s", v)
	if v.Major != 4 || !v.AtLeast(dm.Version{Major: 4, Minor: 45}) {
		t.Errorf("interface %s, want 4.45 or newer", v)
	}
	targets, err := c.TargetVersions()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("targets: %v", targets)
	for _, name := range []string{"thin-pool", "thin", "linear", "error"} {
		if _, ok := targets[name]; !ok {
			t.Errorf("no %s target", name)
		}
	}
}

// TestOpenMakesTheControlNode: without /dev/mapper/control (or with a wrong node there),
// Open makes it from sysfs, as it must in a container without udev.
func TestOpenMakesTheControlNode(t *testing.T) {
	var want unix.Stat_t
	if err := unix.Stat(dm.ControlPath, &want); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		break_ func() error
	}{
		{"missing", func() error { return os.Remove(dm.ControlPath) }},
		{"missing with its directory", func() error { return os.RemoveAll(filepath.Dir(dm.ControlPath)) }},
		{"another device", func() error {
			os.Remove(dm.ControlPath)
			return unix.Mknod(dm.ControlPath, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) // /dev/null
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.break_(); err != nil {
				t.Fatal(err)
			}
			c := open(t)
			var st unix.Stat_t
			if err := unix.Stat(dm.ControlPath, &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != want.Rdev {
				t.Errorf("control node mode %o dev %s, want a character device %s", st.Mode, dm.FormatDev(st.Rdev), dm.FormatDev(want.Rdev))
			}
			if _, err := c.Version(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLinearLifecycle walks one device through create, load, resume, info, table, status,
// I/O through its node, reload and remove, and checks the errors of each wrong step.
func TestLinearLifecycle(t *testing.T) {
	c := open(t)
	lo := newLoop(t, "linear", 64)
	removeOnCleanup(t, "dmtest-lin")
	const name, uuid = "dmtest-lin", "NVMEOF-TEST-lin"

	created, err := c.Create(name, uuid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %+v", created)
	if created.Name != name || created.UUID != uuid || created.Major == 0 || created.LiveTable || created.InactiveTable {
		t.Errorf("Create = %+v", created)
	}
	if _, err := c.Create(name, ""); !errors.Is(err, dm.ErrExists) || !errors.Is(err, unix.EBUSY) {
		t.Errorf("Create of an existing name = %v, want ErrExists (EBUSY)", err)
	}
	if _, err := c.Create("dmtest-lin-other", uuid); !errors.Is(err, dm.ErrExists) {
		t.Errorf("Create with a UUID in use = %v, want ErrExists", err)
	}

	half := []dm.Target{{Start: 0, Length: lo.size / 2, Type: "linear", Params: dm.FormatDev(lo.dev) + " 0"}}
	if err := c.Load(name, half, false); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(name); err != nil || !info.InactiveTable || info.LiveTable {
		t.Errorf("Info after Load = %+v, %v; want only an inactive table", info, err)
	}
	info, err := c.Resume(name)
	if err != nil {
		t.Fatal(err)
	}
	if !info.LiveTable || info.InactiveTable || info.Suspended || info.TargetCount != 1 || info.Dev != created.Dev {
		t.Errorf("Resume = %+v", info)
	}
	if table, err := c.Table(name); err != nil || !reflect.DeepEqual(table, half) {
		t.Errorf("Table = %+v, %v; want %+v", table, err, half)
	}
	if st, err := c.Status(name, false); err != nil || len(st) != 1 || st[0].Type != "linear" || st[0].Params != "" {
		t.Errorf("Status = %+v, %v", st, err)
	}

	node, err := dm.EnsureNode(dm.NodeDir, name, info.Dev)
	if err != nil {
		t.Fatal(err)
	}
	data := blocktest.Pattern(1, mib)
	blocktest.Write(t, node, 0, data)
	blocktest.Expect(t, lo.path, 0, data, "the loop device under the linear device")

	// Reload: a second segment, mapped further into the loop device. Load alone changes
	// nothing; Resume swaps it in.
	full := append(half, dm.Target{Start: lo.size / 2, Length: lo.size / 2, Type: "linear", Params: dm.FormatDev(lo.dev) + " 0"})
	if err := c.Load(name, full, false); err != nil {
		t.Fatal(err)
	}
	if table, _ := c.Table(name); len(table) != 1 {
		t.Errorf("the live table changed before Resume: %+v", table)
	}
	if info, err = c.Resume(name); err != nil || info.TargetCount != 2 {
		t.Fatalf("Resume after reload = %+v, %v", info, err)
	}
	blocktest.Expect(t, node, int64(lo.size/2*sectors), data, "the second segment (same loop blocks)")

	// Wrong steps.
	for _, tc := range []struct {
		what string
		err  error
		want error
	}{
		{"Info of a missing device", func() error { _, err := c.Info("dmtest-lin-missing"); return err }(), dm.ErrNotFound},
		{"Remove of a missing device", c.Remove("dmtest-lin-missing"), dm.ErrNotFound},
		{"Load into a missing device", c.Load("dmtest-lin-missing", half, false), dm.ErrNotFound},
		{"Load of an unknown target type", c.Load(name, []dm.Target{{Length: 8, Type: "no-such-target"}}, false), dm.ErrInvalid},
		{"Load of linear onto no device", c.Load(name, []dm.Target{{Length: 8, Type: "linear", Params: "no-such-device 0"}}, false), nil},
		{"Message to linear", func() error { _, err := c.Message(name, 0, "hello"); return err }(), dm.ErrInvalid},
		{"a name with a slash", c.Remove("a/b"), dm.ErrInvalid},
	} {
		t.Logf("%-32s → %s: %v", tc.what, errnoOf(tc.err), tc.err)
		if tc.err == nil {
			t.Errorf("%s: no error", tc.what)
		} else if tc.want != nil && !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
		}
	}

	// A table larger than its device loads; the kernel checks device sizes only when it swaps
	// the table in, and a failed swap leaves the device suspended with its old table.
	tooLong := []dm.Target{{Length: 2 * lo.size, Type: "linear", Params: dm.FormatDev(lo.dev) + " 0"}}
	if err := c.Load(name, tooLong, false); err != nil {
		t.Errorf("Load of a table past its device's end: %v (the kernel used to accept it until Resume)", err)
	}
	_, err = c.Resume(name)
	t.Logf("%-32s → %s: %v", "Resume of that table", errnoOf(err), err)
	if !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("Resume of a table past its device's end = %v, want ErrInvalid", err)
	}
	if info, err := c.Info(name); err != nil || !info.Suspended || info.InactiveTable || info.TargetCount != 2 {
		t.Errorf("after the failed swap: %+v, %v; want suspended, the old table live, no inactive table", info, err)
	}
	if info, err := c.Resume(name); err != nil || info.Suspended {
		t.Errorf("Resume after the failed swap = %+v, %v", info, err)
	}
	blocktest.Expect(t, node, 0, data, "after the failed swap and a resume")

	if err := c.Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(name); !errors.Is(err, dm.ErrNotFound) || !errors.Is(err, unix.ENXIO) {
		t.Errorf("Info after Remove = %v, want ErrNotFound (ENXIO)", err)
	}
	if err := dm.RemoveNode(dm.NodeDir, name); err != nil {
		t.Fatal(err)
	}
}

// TestCreateAndLoadRemovesWhatFailed: a table the kernel refuses leaves no device behind,
// and an existing device of that name is not touched.
func TestCreateAndLoadRemovesWhatFailed(t *testing.T) {
	c := open(t)
	removeOnCleanup(t, "dmtest-cal")
	bad := []dm.Target{{Length: 8, Type: "linear", Params: "not-a-device 0"}}
	if _, err := c.CreateAndLoad("dmtest-cal", "", bad, false); err == nil {
		t.Fatal("CreateAndLoad of a bad table succeeded")
	} else {
		t.Logf("bad table → %s: %v", errnoOf(err), err)
	}
	if _, err := c.Info("dmtest-cal"); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("half-made device left behind: %v", err)
	}
	good := []dm.Target{{Length: 8, Type: "error"}}
	if _, err := c.CreateAndLoad("dmtest-cal", "", good, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAndLoad("dmtest-cal", "", good, false); !errors.Is(err, dm.ErrExists) {
		t.Errorf("CreateAndLoad of an existing name = %v, want ErrExists", err)
	}
	if info, err := c.Info("dmtest-cal"); err != nil || !info.LiveTable {
		t.Errorf("the existing device was touched: %+v, %v", info, err)
	}
}

// TestSuspendHoldsIOUntilResume: I/O issued to a suspended device waits; Resume lets it
// complete.
func TestSuspendHoldsIOUntilResume(t *testing.T) {
	c := open(t)
	lo := newLoop(t, "suspend", 16)
	removeOnCleanup(t, "dmtest-susp")
	info, err := c.CreateAndLoad("dmtest-susp", "", []dm.Target{{Length: lo.size, Type: "linear", Params: dm.FormatDev(lo.dev) + " 0"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	node, err := dm.EnsureNode(dm.NodeDir, "dmtest-susp", info.Dev)
	if err != nil {
		t.Fatal(err)
	}
	data := blocktest.Pattern(2, 4096)
	blocktest.Write(t, node, 0, data)
	fd := openDirect(t, node, unix.O_RDONLY)
	defer unix.Close(fd)

	start := time.Now()
	if err := c.Suspend("dmtest-susp", false); err != nil {
		t.Fatal(err)
	}
	t.Logf("Suspend: %s", timing.Since(start))
	if info, _ := c.Info("dmtest-susp"); !info.Suspended {
		t.Errorf("Info after Suspend = %+v", info)
	}
	if err := c.Suspend("dmtest-susp", true); err != nil {
		t.Errorf("Suspend of a suspended device: %v", err)
	}
	buf := blocktest.Aligned(4096)
	done := make(chan error, 1)
	go func() {
		_, err := unix.Pread(fd, buf, 0)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("read completed on a suspended device (%v)", err)
	case <-time.After(time.Second):
	}
	start = time.Now()
	if _, err := c.Resume("dmtest-susp"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the held read completed %s after Resume", timing.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("read still held 10 s after Resume")
	}
	if string(buf) != string(data) {
		t.Error("the held read returned other data")
	}
	if _, err := c.Resume("dmtest-susp"); err != nil {
		t.Errorf("Resume of a running device: %v", err)
	}
}

// TestRemoveOfAnOpenDeviceIsBusy: the device stays while anyone holds it open.
func TestRemoveOfAnOpenDeviceIsBusy(t *testing.T) {
	c := open(t)
	removeOnCleanup(t, "dmtest-busy")
	info, err := c.CreateAndLoad("dmtest-busy", "", []dm.Target{{Length: 8, Type: "error"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	node, err := dm.EnsureNode(dm.NodeDir, "dmtest-busy", info.Dev)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info("dmtest-busy"); info.OpenCount != 1 {
		t.Errorf("OpenCount = %d, want 1", info.OpenCount)
	}
	err = c.Remove("dmtest-busy")
	t.Logf("Remove of an open device → %s: %v", errnoOf(err), err)
	if !errors.Is(err, dm.ErrBusy) || !errors.Is(err, unix.EBUSY) {
		t.Errorf("Remove of an open device = %v, want ErrBusy (EBUSY)", err)
	}
	f.Close()
	if err := c.Remove("dmtest-busy"); err != nil {
		t.Errorf("Remove after close: %v", err)
	}
}

// TestEnsureNode: made once, kept when right (also as a udev-style symlink), replaced when it
// names another device, and removed.
func TestEnsureNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mapper")
	dev := unix.Mkdev(7, 0)
	check := func(what string, path string, wantDev uint64) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != wantDev || st.Mode&0o777 != 0o600 {
			t.Errorf("%s: mode %o dev %s, want a 0600 block device %s", what, st.Mode, dm.FormatDev(st.Rdev), dm.FormatDev(wantDev))
		}
	}
	path, err := dm.EnsureNode(dir, "vol", dev)
	if err != nil {
		t.Fatal(err)
	}
	check("new node", path, dev)
	var before unix.Stat_t
	unix.Lstat(path, &before)
	if _, err := dm.EnsureNode(dir, "vol", dev); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	unix.Lstat(path, &after)
	if after.Ino != before.Ino {
		t.Error("a correct node was replaced")
	}
	if _, err := dm.EnsureNode(dir, "vol", unix.Mkdev(7, 1)); err != nil {
		t.Fatal(err)
	}
	check("node for another device", path, unix.Mkdev(7, 1))

	os.Remove(path)
	if err := os.Symlink("/dev/loop0", path); err != nil {
		t.Fatal(err)
	}
	if _, err := dm.EnsureNode(dir, "vol", rdev(t, "/dev/loop0")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(path); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("a symlink to the right device was replaced")
	}
	os.WriteFile(path+"2", []byte("a regular file"), 0o644)
	if _, err := dm.EnsureNode(dir, "vol2", dev); err != nil {
		t.Fatal(err)
	}
	check("node over a regular file", path+"2", dev)

	for _, name := range []string{"vol", "vol2", "never-made"} {
		if err := dm.RemoveNode(dir, name); err != nil {
			t.Errorf("RemoveNode(%s): %v", name, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in %s: %v", dir, entries)
	}
	if _, err := dm.EnsureNode(dir, "../escape", dev); !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("EnsureNode with a slash: %v", err)
	}
}

// TestListOf1100Devices: the device list outgrows the first reply buffer many times over; the
// kernel filters by name prefix; every device comes back with its dev_t and UUID. Devices are
// made and removed one at a time, then from 8 goroutines sharing one Control.
func TestListOf1100Devices(t *testing.T) {
	c := open(t)
	const n, serial, prefix = 1100, 100, "dmtest-many-"
	removeOnCleanup(t, prefix)
	want := make(map[string]dm.Device, n)
	var mu sync.Mutex
	create := func(i int) error {
		name := fmt.Sprintf("%s%04d", prefix, i)
		uuid := fmt.Sprintf("NVMEOF-TEST-%032x", i)
		info, err := c.CreateAndLoad(name, uuid, []dm.Target{{Length: 8, Type: "error"}}, false)
		if err != nil {
			return err
		}
		mu.Lock()
		want[name] = dm.Device{Name: name, UUID: uuid, Dev: info.Dev, EventNr: info.EventNr}
		mu.Unlock()
		return nil
	}
	timed(t, "create+load+resume", serial, 1, func(i int) error { return create(i) })
	timed(t, "create+load+resume", n-serial, 8, func(i int) error { return create(serial + i) })

	start := time.Now()
	devs, err := c.List(prefix)
	t.Logf("List(%q) of %d devices: %s (first call, buffer grows)", prefix, len(devs), timing.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	devs, err = c.List(prefix)
	t.Logf("List(%q) again: %s", prefix, timing.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != n {
		t.Errorf("List returned %d devices, want %d", len(devs), n)
	}
	for i, d := range devs {
		if w, ok := want[d.Name]; !ok || d.Dev != w.Dev || d.UUID != w.UUID {
			t.Errorf("List entry %+v, want %+v", d, w)
		}
		if i > 0 && devs[i-1].Name >= d.Name {
			t.Errorf("List not in name order at %d: %s, %s", i, devs[i-1].Name, d.Name)
		}
	}
	if all, err := c.List(""); err != nil || len(all) < n {
		t.Errorf("List(\"\") = %d devices, %v", len(all), err)
	}
	if some, err := c.List(prefix + "100"); err != nil || len(some) != 10 {
		t.Errorf("List(%q) = %d devices, %v; want 10 (%[1]s0 to %[1]s9)", prefix+"100", len(some), err)
	}

	remove := func(i int) error { return c.Remove(devs[i].Name) }
	timed(t, "remove", serial, 1, remove)
	timed(t, "remove", n-serial, 8, func(i int) error { return remove(serial + i) })
	if devs, err := c.List(prefix); err != nil || len(devs) != 0 {
		t.Errorf("after removal List = %d devices, %v", len(devs), err)
	}
}

// timed runs op(0..n-1) on workers goroutines, fails the test on the first error, and logs
// the time per operation.
func timed(t *testing.T, what string, n, workers int, op func(i int) error) {
	t.Helper()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := op(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	d := time.Since(start)
	t.Logf("%-20s %4d devices, %d goroutine(s): %9s, %8s per device", what, n, workers, d.Round(time.Millisecond), timing.Since(start)/time.Duration(n))
}

// TestTableOf1100Targets: Table and Status of one device with 1100 targets, a reply far larger
// than the first buffer.
func TestTableOf1100Targets(t *testing.T) {
	c := open(t)
	lo := newLoop(t, "targets", 16)
	removeOnCleanup(t, "dmtest-targets")
	const n = 1100
	table := make([]dm.Target, n)
	for i := range table {
		table[i] = dm.Target{Start: uint64(i) * 8, Length: 8, Type: "linear", Params: fmt.Sprintf("%s %d", dm.FormatDev(lo.dev), (n-1-i)*8)}
	}
	if _, err := c.CreateAndLoad("dmtest-targets", "", table, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := c.Table("dmtest-targets")
	t.Logf("Table of %d targets: %s", len(got), timing.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, table) {
		t.Errorf("Table differs from the loaded table (%d targets)", len(got))
	}
	st, err := c.Status("dmtest-targets", false)
	if err != nil || len(st) != n {
		t.Errorf("Status = %d targets, %v", len(st), err)
	}
}
