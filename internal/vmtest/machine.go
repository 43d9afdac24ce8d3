package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A Cluster is several test VMs ("machines"), each its own kernel, on a private network between
// their qemu processes (see hub), that one test on the host drives: it boots them, runs steps in
// them (NewStep), cuts and heals the links between them, and cuts a machine's power. A test
// package of such tests opts in with
//
//	func TestMain(m *testing.M) { vmtest.ClusterMain(m) }
//
// Its tests then run on the host; the same binary serves steps in each guest.
//
// Machine i (in the order of Cluster.Add) has the address 192.0.2.<i+1>/24 on its eth0 (MTU
// 9000), a Soft-RoCE device rxe0 on it, the host root and scratch disk as in a single test VM,
// and its own disks.
//
// A machine's disks are host files kept for the life of the cluster, across power cuts and
// boots, attached with cache=none. That mode opens the file with O_DIRECT, so qemu keeps no
// copy of guest data in the host's page cache, and presents a disk with a volatile write cache:
// the guest kernel sends FLUSH and FUA as it would to a real disk, and qemu turns each into an
// fdatasync of the file. Killing qemu (PowerCut) loses exactly what the guest had not yet
// written to its disk: its page cache, dm-thin's uncommitted in-core metadata, requests still
// in qemu. It cannot lose a write the guest saw completed but had not flushed, since the host
// kernel, still running, keeps what qemu wrote: a PowerCut is the power cut of a server whose
// disks have power-loss protection. directsync (O_DIRECT|O_DSYNC) would keep the same promise
// but present a write-through disk, so the guest would stop sending flushes and the stack's
// flush path would go untested; writeback and unsafe would leave guest data in the host's page
// cache, which is the same for a qemu kill but makes the disks' state depend on the host.
type Cluster struct {
	dir    string
	k      kernel
	accel  string
	initrd string
	binary string
	wd     string
	env    []string
	hub    *hub
	// hubPath is the hub's socket.
	hubPath string
	out     io.Writer

	mu       sync.Mutex
	machines []*Machine
}

// MachineConfig describes one machine of a Cluster.
type MachineConfig struct {
	// Name names the machine in output and errors ("storage", "worker"): lowercase letters,
	// digits and '-'.
	Name string
	// MemoryMiB, CPUs and ScratchGiB size the guest; zero picks 2048, 1 and 16.
	MemoryMiB, CPUs, ScratchGiB int
	// Disks are the machine's persistent disks (see Cluster).
	Disks []Disk
	// BootTimeout bounds each boot until the guest serves steps; zero means 5 minutes.
	BootTimeout time.Duration
}

// Disk is a persistent disk of a machine: a sparse host file of Size bytes. In the guest,
// DiskDevice(Name) is its block device.
type Disk struct {
	Name string // at most 20 bytes: it is the disk's serial number
	Size int64
}

const machineEnv = "NVMEOF_VM_MACHINE"

// linkAddr is machine i's address on the private network.
func linkAddr(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }

// NewCluster prepares a cluster whose machines run this test binary; the machines are shut
// down, and the cluster's files removed, when the test ends. A missing kernel fails the test.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	cache := os.Getenv("NVMEOF_VM_CACHE")
	if cache == "" {
		cache = DefaultCacheDir
	}
	k, err := findKernel(cache)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Short paths: unix socket names are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "nvmeof-cl-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: dir, k: k, binary: bin, wd: wd, env: forwardedEnv(os.Environ()), out: os.Stdout}
	t.Cleanup(func() {
		c.shutdownAll(t)
		if c.hub != nil {
			t.Logf("vmtest: the private network forwarded %d frames and dropped %d", c.hub.forwarded.Load(), c.hub.dropped.Load())
			_ = c.hub.close()
		}
		if os.Getenv("NVMEOF_VM_KEEP") == "" {
			_ = os.RemoveAll(dir) // best effort: a temporary directory
		}
	})
	c.initrd = filepath.Join(dir, "initramfs.cpio")
	if err := buildInitramfs(c.initrd, k); err != nil {
		t.Fatalf("building the initramfs: %v", err)
	}
	c.accel = chooseAccel(context.Background(), cache, k)
	c.hubPath = filepath.Join(dir, "hub.sock")
	if c.hub, err = newHub(c.hubPath); err != nil {
		t.Fatal(err)
	}
	return c
}

// Add adds a machine (not booted yet), creating its disks.
func (c *Cluster) Add(t testing.TB, cfg MachineConfig) *Machine {
	t.Helper()
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 2048
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.ScratchGiB == 0 {
		cfg.ScratchGiB = 16
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 5 * time.Minute
	}
	dir := filepath.Join(c.dir, cfg.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &Machine{c: c, cfg: cfg, dir: dir, netSock: filepath.Join(dir, "net.sock")}
	for _, d := range cfg.Disks {
		if len(d.Name) > 20 || d.Name == "scratch" {
			t.Fatalf("disk name %q: at most 20 bytes, not \"scratch\"", d.Name)
		}
		f, err := os.OpenFile(m.DiskFile(d.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Truncate(d.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	m.index = c.hub.addPeer(m.netSock)
	c.machines = append(c.machines, m)
	c.mu.Unlock()
	return m
}

// Boot boots the machines at the same time and waits until each serves steps; any failure
// fails the test.
func (c *Cluster) Boot(t testing.TB, ms ...*Machine) {
	t.Helper()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.boot() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Logf("vmtest: %s serves steps %s after qemu started (accel %s)", m.Name(), m.LastBoot().Round(100*time.Millisecond), c.accel)
	}
}

// Cut cuts the link between a and b (both directions); Heal restores it.
func (c *Cluster) Cut(a, b *Machine) { c.hub.setCut(a.index, b.index, true) }

// Heal restores the link between a and b.
func (c *Cluster) Heal(a, b *Machine) { c.hub.setCut(a.index, b.index, false) }

func (c *Cluster) shutdownAll(t testing.TB) {
	c.mu.Lock()
	ms := append([]*Machine(nil), c.machines...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			if err := m.shutdown(); err != nil {
				t.Errorf("%s: %v", m.Name(), err)
			}
		})
	}
	wg.Wait()
	for _, m := range ms {
		if m.boots > 0 {
			t.Logf("vmtest: %s: %d boot(s), qemu peak RSS %d MiB", m.Name(), m.boots, m.PeakRSS()>>20)
		}
	}
}

// Machine is one VM of a Cluster.
type Machine struct {
	c       *Cluster
	cfg     MachineConfig
	dir     string
	netSock string
	index   int

	mu       sync.Mutex
	run      *qemuRun
	boots    int
	lastBoot time.Duration
	peakRSS  int64
}

// qemuRun is one boot of a machine.
type qemuRun struct {
	cmd    *exec.Cmd
	kill   context.CancelFunc // SIGKILLs qemu
	ctl    *ctlClient
	exited chan struct{} // closed when qemu has exited
	stderr bytes.Buffer
}

// Name is the machine's name.
func (m *Machine) Name() string { return m.cfg.Name }

// Addr is the machine's address on the private network.
func (m *Machine) Addr() string { return linkAddr(m.index) }

// DiskFile is the host file behind the named disk.
func (m *Machine) DiskFile(name string) string { return filepath.Join(m.dir, "disk-"+name+".img") }

// LastBoot is how long the last boot took, from starting qemu to the guest serving steps.
func (m *Machine) LastBoot() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastBoot
}

// PeakRSS is the largest resident set of the machine's qemu processes so far, in bytes.
func (m *Machine) PeakRSS() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peakRSS
}

// Boot boots the machine (again, after a PowerCut or Shutdown) on the same disks and waits
// until it serves steps; a failure fails the test.
func (m *Machine) Boot(t testing.TB) {
	t.Helper()
	if err := m.boot(); err != nil {
		t.Fatal(err)
	}
	t.Logf("vmtest: %s serves steps %s after qemu started", m.Name(), m.LastBoot().Round(100*time.Millisecond))
}

// PowerCut kills the machine's qemu (SIGKILL) and waits until it is gone: whatever the guest
// had not written to its disks is lost (see Cluster). It returns when the process has exited.
func (m *Machine) PowerCut(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	r := m.run
	m.run = nil
	m.mu.Unlock()
	if r == nil {
		t.Fatalf("%s: PowerCut of a machine that is not running", m.Name())
	}
	m.sampleRSS(r)
	r.kill()
	select {
	case <-r.exited:
	case <-time.After(time.Minute):
		t.Fatalf("%s: qemu still runs a minute after SIGKILL", m.Name())
	}
}

// Shutdown ends the guest session (its steps' cleanups run) and powers the machine off.
func (m *Machine) Shutdown(t testing.TB) {
	t.Helper()
	if err := m.shutdown(); err != nil {
		t.Fatal(err)
	}
}

func (m *Machine) shutdown() error {
	m.mu.Lock()
	r := m.run
	m.run = nil
	m.mu.Unlock()
	if r == nil {
		return nil
	}
	m.sampleRSS(r)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	_, err := r.ctl.call(ctx, shutdownStep, nil)
	cancel()
	m.sampleRSS(r)
	if err != nil {
		err = fmt.Errorf("orderly shutdown: %w", err)
	}
	select {
	case <-r.exited:
	case <-time.After(time.Minute):
		r.kill()
		<-r.exited
		err = errors.Join(err, errors.New("the guest did not power off within a minute of its session's end; killed"))
	}
	return err
}

// sampleRSS records the qemu process's peak resident set (VmHWM) while it still exists.
func (m *Machine) sampleRSS(r *qemuRun) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				m.mu.Lock()
				m.peakRSS = max(m.peakRSS, kib<<10)
				m.mu.Unlock()
			}
		}
	}
}

// call runs a step in the machine's current boot.
func (m *Machine) call(ctx context.Context, step string, arg json.RawMessage) (json.RawMessage, error) {
	m.mu.Lock()
	r := m.run
	m.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("%s: step %s: the machine is not running", m.Name(), step)
	}
	res, err := r.ctl.call(ctx, step, arg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name(), err)
	}
	return res, nil
}

// boot starts qemu and waits for the guest's hello. A qemu that stops at once with no output
// (seen rarely under TCG, see Run) is started once more.
func (m *Machine) boot() error {
	m.mu.Lock()
	running := m.run != nil
	m.mu.Unlock()
	if running {
		return fmt.Errorf("%s: Boot of a running machine", m.Name())
	}
	err := m.bootOnce()
	var early *earlyExit
	if errors.As(err, &early) {
		fmt.Fprintf(m.c.out, "vmtest: %s: %v; booting it again\n", m.Name(), err)
		err = m.bootOnce()
	}
	return err
}

type earlyExit struct{ err error }

func (e *earlyExit) Error() string { return e.err.Error() }

func (m *Machine) bootOnce() error {
	c := m.c
	m.mu.Lock()
	n := m.boots + 1
	m.mu.Unlock()
	share := filepath.Join(m.dir, "share")
	scratch := filepath.Join(m.dir, "scratch.img")
	ctlSock := filepath.Join(m.dir, "ctl.sock")
	console := filepath.Join(m.dir, fmt.Sprintf("console-%d.log", n))
	for _, p := range []string{share, scratch, ctlSock, m.netSock} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	cfg := Config{
		Binary: c.binary, Dir: c.wd, MemoryMiB: m.cfg.MemoryMiB, CPUs: m.cfg.CPUs,
		Env: append([]string{machineEnv + "=" + m.cfg.Name}, c.env...),
	}
	if err := prepareShare(share, c.k, cfg); err != nil {
		return err
	}
	for name, content := range map[string]string{"machine-name": m.cfg.Name, "machine-addr": m.Addr() + "/24"} {
		if err := os.WriteFile(filepath.Join(share, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := makeScratch(ctx, scratch, m.cfg.ScratchGiB); err != nil {
		return err
	}

	args := m.qemuArgs(share, scratch, ctlSock, console)

	r := &qemuRun{exited: make(chan struct{})}
	out := &prefixWriter{w: c.out, prefix: m.cfg.Name + "| "}
	// The machine's lifetime is the cluster's business (PowerCut, Shutdown), not a deadline's.
	qctx, kill := context.WithCancel(context.Background())
	r.kill = kill
	r.cmd = exec.CommandContext(qctx, "qemu-system-x86_64", args...)
	r.cmd.Stdout = out
	r.cmd.Stderr = &r.stderr
	start := time.Now()
	if err := r.cmd.Start(); err != nil {
		kill()
		return fmt.Errorf("%s: starting qemu: %w", m.Name(), err)
	}
	go func() {
		_ = r.cmd.Wait() // its exit is what matters, not its status
		kill()
		close(r.exited)
	}()
	fail := func(err error) error {
		kill()
		<-r.exited
		err = fmt.Errorf("%s: %w (accel %s, %s)\nqemu: %s\n--- guest console (tail) ---\n%s",
			m.Name(), err, c.accel, time.Since(start).Round(100*time.Millisecond),
			strings.TrimSpace(r.stderr.String()), tail(console, 80))
		if out.total() == 0 && time.Since(start) < time.Minute {
			return &earlyExit{err: err}
		}
		return err
	}

	conn, err := dialCtl(ctlSock, r.exited)
	if err != nil {
		return fail(err)
	}
	r.ctl = newCtlClient(conn)
	bctx, bcancel := context.WithTimeout(context.Background(), m.cfg.BootTimeout)
	defer bcancel()
	go func() {
		select {
		case <-r.exited:
			bcancel()
		case <-bctx.Done():
		}
	}()
	if err := r.ctl.waitHello(bctx); err != nil {
		select {
		case <-r.exited:
			return fail(errors.New("qemu stopped before the guest served steps"))
		default:
		}
		return fail(fmt.Errorf("the guest did not serve steps within %s: %w", m.cfg.BootTimeout, err))
	}
	m.mu.Lock()
	m.run = r
	m.boots = n
	m.lastBoot = time.Since(start)
	m.mu.Unlock()
	go func() {
		// Keep the peak resident set up to date while the machine runs.
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-r.exited:
				_ = conn.Close()
				return
			case <-tick.C:
				m.sampleRSS(r)
			}
		}
	}()
	return nil
}

// dialCtl connects to qemu's control socket once qemu has created it (within 30 s).
func dialCtl(path string, exited <-chan struct{}) (net.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connecting to qemu's control socket: %w", err)
		}
		select {
		case <-exited:
			return nil, errors.New("qemu stopped before its control socket was up")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// prefixWriter writes each line with a prefix (the machine's name), dropping carriage returns;
// lines of several machines interleave whole.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
	n      int
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += len(b)
	p.buf = append(p.buf, bytes.ReplaceAll(b, []byte("\r"), nil)...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := append([]byte(p.prefix), p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
		if _, err := p.w.Write(line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (p *prefixWriter) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// qemuArgs is the command line of one boot: a test VM (baseQemuArgs) with a fresh scratch disk,
// the control channel's virtio-serial port, its port on the cluster's private network, and its
// persistent disks (see Cluster for cache=none), each found in the guest by its serial.
func (m *Machine) qemuArgs(share, scratch, ctlSock, console string) []string {
	c := m.c
	args := baseQemuArgs(c.k, c.accel, m.cfg.MemoryMiB, m.cfg.CPUs, c.initrd, share, console)
	args = append(args,
		"-drive", "file="+scratch+",format=raw,if=none,id=scratch,cache=unsafe,discard=unmap",
		"-device", "virtio-blk-pci,drive=scratch,serial=scratch",
		"-chardev", "socket,id=ctl,path="+ctlSock+",server=on,wait=off",
		"-device", "virtio-serial-pci",
		"-device", "virtserialport,chardev=ctl,name="+ctlPortName,
		"-netdev", "dgram,id=link,local.type=unix,local.path="+m.netSock+",remote.type=unix,remote.path="+c.hubPath,
		"-device", fmt.Sprintf("virtio-net-pci,netdev=link,mac=52:54:00:c0:02:%02x", m.index+1),
	)
	for _, d := range m.cfg.Disks {
		// See Cluster for cache=none.
		args = append(args,
			"-drive", "file="+m.DiskFile(d.Name)+",format=raw,if=none,id=disk-"+d.Name+",cache=none",
			"-device", "virtio-blk-pci,drive=disk-"+d.Name+",serial="+d.Name)
	}
	return args
}
