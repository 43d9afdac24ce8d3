package nvme

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
)

// fakeFabrics stands in for /dev/nvme-fabrics: it records what is written and answers like
// the kernel.
type fakeFabrics struct {
	reply    string               // read-back after a successful write
	writeErr error                // returned by Write instead of succeeding
	onWrite  func(options string) // runs inside Write, e.g. to change the fake sysfs
	release  chan struct{}        // when non-nil, Write blocks until it is closed

	mu      sync.Mutex
	opened  []string // paths opened
	written []string // option strings written
	closed  int      // files closed
}

func (f *fakeFabrics) open(path string) (io.ReadWriteCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, path)
	return &fakeFabricsFile{f: f}, nil
}

func (f *fakeFabrics) counts() (opened, written, closed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.opened), len(f.written), f.closed
}

type fakeFabricsFile struct {
	f    *fakeFabrics
	read bool
	ok   bool
}

func (c *fakeFabricsFile) Write(p []byte) (int, error) {
	if c.f.release != nil {
		<-c.f.release
	}
	c.f.mu.Lock()
	c.f.written = append(c.f.written, string(p))
	c.f.mu.Unlock()
	if c.f.onWrite != nil {
		c.f.onWrite(string(p))
	}
	if c.f.writeErr != nil {
		return 0, &os.PathError{Op: "write", Path: "/dev/nvme-fabrics", Err: c.f.writeErr}
	}
	c.ok = true
	return len(p), nil
}

func (c *fakeFabricsFile) Read(p []byte) (int, error) {
	if c.read || !c.ok {
		return 0, io.EOF
	}
	c.read = true
	return copy(p, c.f.reply), nil
}

func (c *fakeFabricsFile) Close() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.closed++
	return nil
}

func newTestInitiator(root string, f *fakeFabrics) *Initiator {
	return &Initiator{SysfsRoot: root, FabricsDev: "/fake/nvme-fabrics", PollInterval: time.Millisecond, openFabrics: f.open}
}

// addController adds controller name of subsystem nqn at traddr (tcp, port 4420, the test
// host) to a fake sysfs tree.
func addController(t *testing.T, root, name, nqn, traddr, state string) {
	t.Helper()
	dir := "devices/virtual/nvme-fabrics/ctl/" + name
	for _, line := range []string{
		"class/nvme/" + name + " -> ../../" + dir,
		dir + "/address = traddr=" + traddr + ",trsvcid=4420,src_addr=" + traddr,
		dir + "/cntlid = 1",
		dir + "/delete_controller =",
		dir + "/hostid = " + testHostID,
		dir + "/hostnqn = " + testHostNQN,
		dir + "/state = " + state,
		dir + "/subsysnqn = " + nqn,
		dir + "/transport = tcp",
	} {
		if err := addEntry(root, line); err != nil {
			t.Fatal(err)
		}
	}
}

func setAttr(t *testing.T, root, path, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, path), []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestConnectWritesTheOptionStringAndReturnsTheNewController(t *testing.T) {
	f := &fakeFabrics{reply: "instance=3,cntlid=1\n"}
	in := newTestInitiator(t.TempDir(), f) // no nvme class at all: nothing connected
	opts := baseOptions()
	opts.CtrlLossTmo, opts.NrIOQueues = 30, 2
	ctrl, err := in.Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ctrl != "nvme3" {
		t.Errorf("Connect = %q, want nvme3", ctrl)
	}
	want := "nqn=" + testNQN1 + ",transport=tcp,traddr=192.0.2.1,trsvcid=4420,hostnqn=" + testHostNQN +
		",hostid=" + testHostID + ",ctrl_loss_tmo=30,nr_io_queues=2"
	if len(f.written) != 1 || f.written[0] != want {
		t.Errorf("wrote %q, want one write of %q", f.written, want)
	}
	if len(f.opened) != 1 || f.opened[0] != "/fake/nvme-fabrics" || f.closed != 1 {
		t.Errorf("opened %q and closed %d files, want /fake/nvme-fabrics once", f.opened, f.closed)
	}
}

func TestConnectReusesAMatchingControllerFromSysfs(t *testing.T) {
	rdma := baseOptions()
	rdma.Transport, rdma.SubsysNQN = TransportRDMA, testNQN2
	portalB := baseOptions()
	portalB.Address = "192.0.2.2"
	explicitPort := baseOptions()
	explicitPort.ServiceID = "04420"

	otherHost := baseOptions()
	otherHost.HostNQN, otherHost.HostID = "nqn.2024-01.io.example:other-host", "22222222-2222-4333-8444-555555555555"
	otherPort := baseOptions()
	otherPort.ServiceID = "4421"
	otherTransport := rdma
	otherTransport.Transport = TransportTCP
	otherPortal := rdma
	otherPortal.Address = "192.0.2.2"

	for _, tc := range []struct {
		name      string
		opts      ConnectOptions
		want      string
		wantWrite bool
	}{
		{"same tcp portal", baseOptions(), "nvme0", false},
		{"second tcp portal", portalB, "nvme1", false},
		{"port spelled differently", explicitPort, "nvme0", false},
		{"rdma portal (address without src_addr)", rdma, "nvme2", false},
		{"other host NQN", otherHost, "nvme7", true},
		{"other port", otherPort, "nvme7", true},
		{"other transport", otherTransport, "nvme7", true},
		{"other portal", otherPortal, "nvme7", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeFabrics{reply: "instance=7,cntlid=3\n"}
			in := newTestInitiator(loadTree(t, "multipath"), f)
			ctrl, err := in.Connect(context.Background(), tc.opts)
			if err != nil || ctrl != tc.want {
				t.Fatalf("Connect = %q, %v; want %q", ctrl, err, tc.want)
			}
			if _, written, _ := f.counts(); (written > 0) != tc.wantWrite {
				t.Errorf("wrote %d option strings, want a write: %v", written, tc.wantWrite)
			}
		})
	}
}

func TestConnectMatchesIPv6AddressesByValue(t *testing.T) {
	root := loadTree(t, "multipath")
	setAttr(t, root, "class/nvme/nvme2/address", "traddr=2001:db8::1,trsvcid=4420")
	opts := baseOptions()
	opts.Transport, opts.SubsysNQN, opts.Address = TransportRDMA, testNQN2, "2001:0DB8:0::1"
	f := &fakeFabrics{reply: "instance=9,cntlid=1\n"}
	if ctrl, err := newTestInitiator(root, f).Connect(context.Background(), opts); err != nil || ctrl != "nvme2" {
		t.Fatalf("Connect = %q, %v; want nvme2", ctrl, err)
	}
}

func TestConnectRefusesWhileTheMatchingControllerIsBeingDeleted(t *testing.T) {
	for _, state := range []string{"deleting", "deleting (no IO)", "dead"} {
		t.Run(state, func(t *testing.T) {
			root := loadTree(t, "multipath")
			setAttr(t, root, "class/nvme/nvme0/state", state)
			f := &fakeFabrics{reply: "instance=7,cntlid=3\n"}
			_, err := newTestInitiator(root, f).Connect(context.Background(), baseOptions())
			if !errors.Is(err, ErrStillConnected) {
				t.Fatalf("Connect error = %v, want ErrStillConnected", err)
			}
			if opened, _, _ := f.counts(); opened != 0 {
				t.Errorf("opened the fabrics device %d times, want 0", opened)
			}
		})
	}
}

func TestConnectTreatsEALREADYAsAlreadyConnected(t *testing.T) {
	root := t.TempDir()
	f := &fakeFabrics{writeErr: syscall.EALREADY}
	// A concurrent Connect wins the race: its controller shows up as ours is refused.
	f.onWrite = func(string) { addController(t, root, "nvme4", testNQN1, "192.0.2.1", "connecting") }
	ctrl, err := newTestInitiator(root, f).Connect(context.Background(), baseOptions())
	if err != nil || ctrl != "nvme4" {
		t.Fatalf("Connect = %q, %v; want nvme4", ctrl, err)
	}
}

func TestConnectReportsEALREADYWithoutAControllerInSysfs(t *testing.T) {
	f := &fakeFabrics{writeErr: syscall.EALREADY}
	_, err := newTestInitiator(t.TempDir(), f).Connect(context.Background(), baseOptions())
	if !errors.Is(err, syscall.EALREADY) {
		t.Fatalf("Connect error = %v, want EALREADY", err)
	}
}

func TestConnectPassesKernelErrorsOnWithoutSecrets(t *testing.T) {
	f := &fakeFabrics{writeErr: syscall.ECONNREFUSED}
	opts := baseOptions()
	opts.DHChapSecret = testSecret
	_, err := newTestInitiator(t.TempDir(), f).Connect(context.Background(), opts)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Connect error = %v, want ECONNREFUSED", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "192.0.2.1:4420") || strings.Contains(msg, testSecret[10:30]) {
		t.Errorf("error %q should name the portal and hide the secret", msg)
	}
	if _, _, closed := f.counts(); closed != 1 {
		t.Errorf("closed %d files, want 1", closed)
	}
}

func TestConnectRejectsUnexpectedAnswers(t *testing.T) {
	for _, reply := range []string{
		"",
		"instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s\n", // the option table
		"instance=x,cntlid=1\n",
		"cntlid=1,instance=2\n",
	} {
		f := &fakeFabrics{reply: reply}
		if ctrl, err := newTestInitiator(t.TempDir(), f).Connect(context.Background(), baseOptions()); err == nil {
			t.Errorf("answer %q: Connect = %q, want an error", reply, ctrl)
		}
	}
}

func TestConnectRejectsInvalidOptionsBeforeTouchingTheKernel(t *testing.T) {
	f := &fakeFabrics{reply: "instance=1,cntlid=1\n"}
	opts := baseOptions()
	opts.SubsysNQN += ",hostnqn=nqn.evil"
	_, err := newTestInitiator(t.TempDir(), f).Connect(context.Background(), opts)
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Connect error = %v, want ErrInvalidOption", err)
	}
	if opened, _, _ := f.counts(); opened != 0 {
		t.Errorf("opened the fabrics device %d times, want 0", opened)
	}
}

func TestConnectReturnsWhenTheContextEndsDuringTheWrite(t *testing.T) {
	f := &fakeFabrics{reply: "instance=1,cntlid=1\n", release: make(chan struct{})}
	var locks keylock.Locks
	ctx, release, _ := locks.TryHold(context.Background(), "subsystem")
	ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := newTestInitiator(t.TempDir(), f).Connect(ctx, baseOptions())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect error = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Connect took %s after its context ended", d)
	}
	release()
	if locks.TryLock("subsystem") {
		t.Fatal("the caller's lock was free while the kernel was still handling the connect")
	}
	// The abandoned write completes in the background, the device is closed, and only then
	// is the caller's lock free.
	close(f.release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, written, closed := f.counts(); written == 1 && closed == 1 && locks.TryLock("subsystem") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the abandoned write never finished")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConnectDoesNotStartWithAnEndedContext(t *testing.T) {
	f := &fakeFabrics{reply: "instance=1,cntlid=1\n"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newTestInitiator(t.TempDir(), f).Connect(ctx, baseOptions()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect error = %v, want Canceled", err)
	}
	if opened, _, _ := f.counts(); opened != 0 {
		t.Errorf("opened the fabrics device %d times, want 0", opened)
	}
}
