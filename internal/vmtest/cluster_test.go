package vmtest

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type addIn struct{ A, B int }

var (
	addStep  = NewStep("test-add", func(s *Step, in addIn) int { return in.A + in.B })
	failStep = NewStep("test-fail", func(s *Step, in string) int {
		s.Errorf("first: %s", in)
		s.Fatalf("second")
		panic("not reached")
	})
	panicStep   = NewStep("test-panic", func(s *Step, _ struct{}) int { panic("boom") })
	cleanupStep = NewStep("test-cleanup", func(s *Step, _ struct{}) int {
		s.Cleanup(func() { cleanupRan <- s.Name() })
		return 0
	})
	slowStep = NewStep("test-slow", func(s *Step, d time.Duration) string {
		select {
		case <-time.After(d):
			return "slept"
		case <-s.Context().Done():
			s.Fatal("deadline")
		}
		return ""
	})
	cleanupRan = make(chan string, 1)
)

// pipeMachine serves steps on one end of a socket pair and returns a running Machine using the
// other: the control channel without a VM.
func pipeMachine(t *testing.T) (*Machine, chan error) {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	var log bytes.Buffer
	served := make(chan error, 1)
	go func() { served <- serveCtl(guestEnd, "m1", &syncWriter{w: &log}) }()
	ctl := newCtlClient(hostEnd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ctl.waitHello(ctx); err != nil {
		t.Fatal(err)
	}
	m := &Machine{cfg: MachineConfig{Name: "m1"}, run: &qemuRun{ctl: ctl}}
	return m, served
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func TestStepsRunConcurrentlyAndReportFailures(t *testing.T) {
	m, served := pipeMachine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A slow step does not hold up a quick one.
	slow := make(chan string, 1)
	go func() {
		out, err := slowStep.Call(ctx, m, 300*time.Millisecond)
		if err != nil {
			t.Error(err)
		}
		slow <- out
	}()
	if got := addStep.Run(t, m, addIn{A: 2, B: 3}); got != 5 {
		t.Errorf("test-add = %d, want 5", got)
	}
	if got := <-slow; got != "slept" {
		t.Errorf("test-slow = %q", got)
	}

	_, err := failStep.Call(ctx, m, "x")
	if err == nil || !strings.Contains(err.Error(), "first: x") || !strings.Contains(err.Error(), "second") {
		t.Errorf("a failing step gave %v; want both its messages", err)
	}
	if _, err := panicStep.Call(ctx, m, struct{}{}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("a panicking step gave %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := slowStep.Call(short, m, time.Minute); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("a step past its deadline gave %v", err)
	}
	if _, err := m.call(ctx, "no-such-step", nil); err == nil {
		t.Error("an unknown step gave no error")
	}

	cleanupStep.Run(t, m, struct{}{})
	select {
	case name := <-cleanupRan:
		t.Fatalf("cleanup of %s ran before the session ended", name)
	default:
	}
	if _, err := m.run.ctl.call(ctx, shutdownStep, nil); err != nil {
		t.Fatal(err)
	}
	if got := <-cleanupRan; got != "m1/test-cleanup" {
		t.Errorf("cleanup ran for %q", got)
	}
	if err := <-served; err != nil {
		t.Errorf("serveCtl: %v", err)
	}
}

func TestStepCallFailsWhenTheGuestGoesAway(t *testing.T) {
	hostEnd, guestEnd := net.Pipe()
	ctl := newCtlClient(hostEnd)
	m := &Machine{cfg: MachineConfig{Name: "m1"}, run: &qemuRun{ctl: ctl}}
	errc := make(chan error, 1)
	go func() {
		_, err := addStep.Call(context.Background(), m, addIn{})
		errc <- err
	}()
	// Read the request, then vanish as a killed VM does.
	buf := make([]byte, 512)
	if _, err := guestEnd.Read(buf); err != nil {
		t.Fatal(err)
	}
	guestEnd.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a step whose guest vanished succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a step whose guest vanished is still waiting")
	}
	if _, err := addStep.Call(context.Background(), m, addIn{}); err == nil {
		t.Error("a step on a closed channel succeeded")
	}
}

func TestHubForwardsBetweenPeersUntilCut(t *testing.T) {
	dir, err := os.MkdirTemp("", "hub-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	h, err := newHub(filepath.Join(dir, "hub.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	var peers []*net.UnixConn
	for _, name := range []string{"a.sock", "b.sock", "c.sock"} {
		path := filepath.Join(dir, name)
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		h.addPeer(path)
		peers = append(peers, conn)
	}
	hubAddr := &net.UnixAddr{Name: filepath.Join(dir, "hub.sock"), Net: "unixgram"}
	send := func(from int, msg string) {
		t.Helper()
		if _, err := peers[from].WriteToUnix([]byte(msg), hubAddr); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(to int) (string, error) {
		buf := make([]byte, maxFrame)
		_ = peers[to].SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := peers[to].Read(buf)
		return string(buf[:n]), err
	}

	send(0, "hello")
	for _, to := range []int{1, 2} {
		if got, err := recv(to); err != nil || got != "hello" {
			t.Errorf("peer %d got %q, %v", to, got, err)
		}
	}
	if _, err := recv(0); err == nil {
		t.Error("a frame came back to its sender")
	}

	h.setCut(1, 0, true)
	send(0, "cut")
	if got, err := recv(1); err == nil {
		t.Errorf("across a cut link peer 1 got %q", got)
	}
	if got, err := recv(2); err != nil || got != "cut" {
		t.Errorf("peer 2, not cut off, got %q, %v", got, err)
	}
	send(1, "back")
	if got, err := recv(0); err == nil {
		t.Errorf("across a cut link peer 0 got %q", got)
	}
	h.setCut(0, 1, false)
	send(1, "healed")
	if got, err := recv(0); err != nil || got != "healed" {
		t.Errorf("after healing peer 0 got %q, %v", got, err)
	}

	// A peer that is down (its socket gone) costs a dropped frame, not the hub.
	peers[2].Close()
	os.Remove(filepath.Join(dir, "c.sock"))
	send(0, "still")
	if got, err := recv(1); err != nil || got != "still" {
		t.Errorf("with a peer down, peer 1 got %q, %v", got, err)
	}
	if h.dropped.Load() == 0 {
		t.Error("no frame counted as dropped")
	}
}

func TestPrefixWriterPrefixesWholeLines(t *testing.T) {
	var buf bytes.Buffer
	w := &prefixWriter{w: &buf, prefix: "s| "}
	for _, part := range []string{"one\r\ntw", "o\nthr", "ee\n"} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := buf.String(), "s| one\ns| two\ns| three\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStepIsATestingTB(t *testing.T) {
	var tb testing.TB = &Step{}
	if tb.Skipped() {
		t.Error("a step reports skipped")
	}
}

func TestMachineQemuArgs(t *testing.T) {
	c := &Cluster{k: kernel{vmlinuz: "/k/vmlinuz"}, accel: "tcg", initrd: "/w/initrd", hubPath: "/w/hub.sock"}
	m := &Machine{c: c, index: 1, dir: "/w/storage", netSock: "/w/storage/net.sock", cfg: MachineConfig{
		Name: "storage", MemoryMiB: 2048, CPUs: 1, Disks: []Disk{{Name: "meta"}, {Name: "data"}},
	}}
	args := strings.Join(m.qemuArgs("/w/share", "/w/scratch.img", "/w/ctl.sock", "/w/console.log"), " ")
	for _, want := range []string{
		"-nic none",
		"-netdev dgram,id=link,local.type=unix,local.path=/w/storage/net.sock,remote.type=unix,remote.path=/w/hub.sock",
		"mac=52:54:00:c0:02:02",
		"-device virtserialport,chardev=ctl,name=" + ctlPortName,
		"file=/w/storage/disk-meta.img,format=raw,if=none,id=disk-meta,cache=none",
		"virtio-blk-pci,drive=disk-meta,serial=meta",
		"file=/w/storage/disk-data.img,format=raw,if=none,id=disk-data,cache=none",
		"virtio-blk-pci,drive=scratch,serial=scratch",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu arguments lack %q:\n%s", want, args)
		}
	}
	if strings.Count(args, "-netdev ") != 1 || strings.Count(args, "-nic ") != 1 {
		t.Errorf("a machine must have one network device, to the hub only:\n%s", args)
	}
	if got := linkAddr(m.index); got != "192.0.2.2" {
		t.Errorf("machine 1's address is %s", got)
	}
}
