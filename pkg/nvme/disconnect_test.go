package nvme

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeKernel implements Initiator.writeAttr over a fake sysfs tree, deleting a controller's
// class entry when its delete_controller is written, as the kernel does.
type fakeKernel struct {
	root    string
	ignore  bool  // accept writes to delete_controller but keep the controller
	err     error // fail every write with this
	vanish  bool  // the controller disappears before the write lands: ENOENT
	mu      sync.Mutex
	written []string // attribute paths written, relative to root
}

func (k *fakeKernel) write(path, value string) error {
	rel, _ := filepath.Rel(k.root, path)
	k.mu.Lock()
	k.written = append(k.written, rel+"="+value)
	k.mu.Unlock()
	if k.err != nil {
		return &os.PathError{Op: "write", Path: path, Err: k.err}
	}
	if filepath.Base(path) == "delete_controller" && !k.ignore {
		if err := os.Remove(filepath.Dir(path)); err != nil || !k.vanish { // the class/nvme/<ctrl> symlink
			return err
		}
		return &os.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	}
	return nil
}

func TestDisconnectDeletesEveryPathAndWaitsUntilGone(t *testing.T) {
	root := loadTree(t, "multipath")
	k := &fakeKernel{root: root}
	in := &Initiator{SysfsRoot: root, PollInterval: time.Millisecond, writeAttr: k.write}
	if err := in.Disconnect(context.Background(), testNQN1); err != nil {
		t.Fatal(err)
	}
	want := []string{"class/nvme/nvme0/delete_controller=1", "class/nvme/nvme1/delete_controller=1"}
	if strings.Join(k.written, " ") != strings.Join(want, " ") {
		t.Errorf("wrote %v, want %v", k.written, want)
	}
	left, _ := in.Controllers("")
	if len(left) != 1 || left[0].Name != "nvme2" {
		t.Errorf("left %+v, want only nvme2 of the other subsystem", left)
	}
	// Idempotent: nothing left to do.
	k.written = nil
	if err := in.Disconnect(context.Background(), testNQN1); err != nil || len(k.written) != 0 {
		t.Errorf("second Disconnect = %v after writing %v; want nil and no writes", err, k.written)
	}
}

func TestDisconnectReportsControllersThatStay(t *testing.T) {
	root := loadTree(t, "multipath")
	in := &Initiator{SysfsRoot: root, PollInterval: time.Millisecond, writeAttr: (&fakeKernel{root: root, ignore: true}).write}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := in.Disconnect(ctx, testNQN1)
	if !errors.Is(err, ErrStillConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Disconnect error = %v, want ErrStillConnected and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "nvme0, nvme1") {
		t.Errorf("error %q should name the controllers left", err)
	}
}

func TestDisconnectReportsFailedDeletesAtOnce(t *testing.T) {
	root := loadTree(t, "multipath")
	in := &Initiator{SysfsRoot: root, PollInterval: time.Millisecond, writeAttr: (&fakeKernel{root: root, err: syscall.EACCES}).write}
	err := in.Disconnect(context.Background(), testNQN1) // no deadline: must not wait
	if !errors.Is(err, ErrStillConnected) || !errors.Is(err, syscall.EACCES) {
		t.Fatalf("Disconnect error = %v, want ErrStillConnected and EACCES", err)
	}
}

func TestDisconnectIgnoresControllersAlreadyGone(t *testing.T) {
	root := loadTree(t, "multipath")
	k := &fakeKernel{root: root, vanish: true}
	in := &Initiator{SysfsRoot: root, PollInterval: time.Millisecond, writeAttr: k.write}
	if err := in.Disconnect(context.Background(), testNQN1); err != nil {
		t.Fatalf("Disconnect = %v, want nil", err)
	}
	if len(k.written) != 2 {
		t.Errorf("wrote %v, want both delete_controller attributes", k.written)
	}
}

func TestRescanAsksEveryControllerOfTheNamespace(t *testing.T) {
	for _, tc := range []struct {
		tree, dev string
		want      []string
	}{
		{"multipath", "/dev/nvme0n1", []string{"nvme0", "nvme1"}},
		{"multipath", "/dev/nvme1n1", []string{"nvme2"}},
		{"nomultipath", "/dev/nvme1n1", []string{"nvme1"}},
	} {
		t.Run(tc.tree+" "+tc.dev, func(t *testing.T) {
			root := loadTree(t, tc.tree)
			if err := (&Initiator{SysfsRoot: root}).Rescan(tc.dev); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range []string{"nvme0", "nvme1", "nvme2"} {
				if raw, err := os.ReadFile(filepath.Join(root, "class/nvme", c, "rescan_controller")); err == nil && string(raw) == "1" {
					got = append(got, c)
				}
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("rescanned %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRescanOfAMissingDevice(t *testing.T) {
	in := &Initiator{SysfsRoot: loadTree(t, "multipath")}
	if err := in.Rescan("/dev/nvme7n1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rescan(missing) = %v, want ErrNotFound", err)
	}
	if err := in.Rescan("/dev/nvme0c0n1"); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("Rescan(path device) = %v, want ErrWrongDevice", err)
	}
}

func TestDeleteControllersDeletesOnlyTheNamedOnes(t *testing.T) {
	root := loadTree(t, "multipath")
	k := &fakeKernel{root: root}
	in := &Initiator{SysfsRoot: root, PollInterval: time.Millisecond, writeAttr: k.write}
	if err := in.DeleteControllers(context.Background(), testNQN1, []string{"nvme1", "nvme2"}); err != nil {
		t.Fatal(err)
	}
	// nvme2 belongs to another subsystem: left alone.
	if strings.Join(k.written, " ") != "class/nvme/nvme1/delete_controller=1" {
		t.Errorf("wrote %v, want only nvme1's delete_controller", k.written)
	}
	left, _ := in.Controllers("")
	if len(left) != 2 || left[0].Name != "nvme0" || left[1].Name != "nvme2" {
		t.Errorf("left %+v, want nvme0 and nvme2", left)
	}
	k.written = nil
	if err := in.DeleteControllers(context.Background(), testNQN1, nil); err != nil || len(k.written) != 0 {
		t.Errorf("DeleteControllers of no name = %v after writing %v", err, k.written)
	}
}

func TestRescanSubsystemAsksEveryLiveController(t *testing.T) {
	root := loadTree(t, "multipath")
	k := &fakeKernel{root: root}
	in := &Initiator{SysfsRoot: root, PollInterval: time.Millisecond, writeAttr: k.write}
	if err := in.RescanSubsystem(testNQN1); err != nil {
		t.Fatal(err)
	}
	ctrls, _ := in.Controllers(testNQN1)
	var want []string
	for _, c := range ctrls {
		if c.State == "live" {
			want = append(want, "class/nvme/"+c.Name+"/rescan_controller=1")
		}
	}
	if len(want) == 0 || strings.Join(k.written, " ") != strings.Join(want, " ") {
		t.Errorf("wrote %v, want %v", k.written, want)
	}
	if err := in.RescanSubsystem("nqn.2014-08.org.example:none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RescanSubsystem of a subsystem without controllers = %v, want ErrNotFound", err)
	}
}
