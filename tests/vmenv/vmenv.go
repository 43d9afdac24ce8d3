// Package vmenv builds the storage side of VM tests: loop devices and thin pools on the
// scratch disk, device-mapper listings and cleanup, and real agent processes. Agents run as
// the test binary itself re-executed in agent mode (the same code path as cmd/nvmeof-agent
// after flag parsing), so a test can SIGKILL and restart one. It also holds the few helpers
// several VM test packages share (commands, contexts, sysfs attributes, module reloads,
// DH-HMAC-CHAP secrets). Only for tests that run inside the VM (see internal/vmtest).
package vmenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
)

const agentConfigEnv = "NVMEOF_TEST_AGENT_CONFIG"

// MaybeRunAgent must be called first in TestMain: when this process was started by StartAgent
// it runs the agent and exits; otherwise it returns.
func MaybeRunAgent() {
	path := os.Getenv(agentConfigEnv)
	if path == "" {
		return
	}
	klog.InitFlags(nil)
	flag.Parse()
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg); err != nil {
		klog.ErrorS(err, "agent failed")
		klog.Flush()
		os.Exit(1)
	}
	os.Exit(0)
}

// Context returns a context that ends after d or with the test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Run runs a command (LC_ALL=C, bounded) and fails the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := command.Exec{}.Run(Context(t, 2*time.Minute), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// Loop attaches a loop device to a fresh sparse file of size (as truncate(1) reads it: "64M",
// "2G") named name+".img" on the scratch disk. When the test ends the device is detached (a
// failure fails the test) and the file removed. It returns the device.
func Loop(t testing.TB, name, size string) string {
	t.Helper()
	img := filepath.Join(vmtest.ScratchDir(), name+".img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	Run(t, "truncate", "-s", size, img)
	dev := Run(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() {
		if _, err := RunE("losetup", "--detach", dev); err != nil {
			t.Error(err)
		}
		os.Remove(img)
	})
	return dev
}

// GrowLoop grows the file behind the loop device dev to size (as truncate(1) reads it) and
// has the device take the new size (losetup --set-capacity).
func GrowLoop(t testing.TB, dev, size string) {
	t.Helper()
	file := ReadAttr(t, filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	Run(t, "truncate", "-s", size, file)
	Run(t, "losetup", "--set-capacity", dev)
}

// ThinPool creates a volume group vg on a Loop of the given size, with a thin pool named
// "pool" over 90% of it; both go when the test ends. It returns the loop device.
func ThinPool(t testing.TB, vg string, size string) string {
	t.Helper()
	loop := Loop(t, vg, size)
	t.Cleanup(func() {
		// A test that failed half-way may leave LVs open or active.
		if _, err := RunE("vgremove", "--config", lvm.DeviceFilter(loop), "-f", vg); err != nil {
			t.Log(err)
		}
	})
	if err := lvm.CreatePool(Context(t, 2*time.Minute), command.Exec{}, vg, "pool", []string{loop}, 90); err != nil {
		t.Fatal(err)
	}
	return loop
}

// DMThinDevices makes the two devices of a dm-thin pool: Loops of the given sizes (e.g. "1G",
// "16G") named name+"-meta" and name+"-data". When the test ends, every device-mapper device
// whose name starts with name+"-" (the pool's stack, as pkg/pool/dmthin names it) is removed
// (RemoveDMDevices), then the loop devices. It returns the metadata and data devices.
func DMThinDevices(t testing.TB, name, metaSize, dataSize string) (meta, data string) {
	t.Helper()
	meta, data = Loop(t, name+"-meta", metaSize), Loop(t, name+"-data", dataSize)
	t.Cleanup(func() { RemoveDMDevices(t, name+"-") })
	return meta, data
}

// DMDevices returns the state of each device-mapper device whose name starts with prefix, in
// name order; an error fails the test.
func DMDevices(t testing.TB, prefix string) []dm.DeviceInfo {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	devs, err := c.List(prefix)
	if err != nil {
		t.Fatal(err)
	}
	infos := make([]dm.DeviceInfo, len(devs))
	for i, d := range devs {
		if infos[i], err = c.Info(d.Name); err != nil {
			t.Fatal(err)
		}
	}
	return infos
}

// RemoveDMDevices removes every device-mapper device whose name starts with prefix, those
// stacked on others first (thin devices, then pools, then their sub-devices), retrying while
// some are still busy, for at most a minute.
func RemoveDMDevices(t testing.TB, prefix string) {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		devs, err := c.List(prefix)
		if err != nil || len(devs) == 0 {
			if err != nil {
				t.Error(err)
			}
			return
		}
		// A device that others are stacked on is busy until they are gone; each round
		// removes what it can.
		for _, d := range devs {
			_, _ = c.Resume(d.Name) // a device a crashed process left suspended
			_ = c.Remove(d.Name)
		}
		if time.Now().After(deadline) {
			t.Errorf("device-mapper devices %v could not be removed", devs)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Agent is a real agent process.
type Agent struct {
	ConfigPath string
	cmd        *exec.Cmd
	log        *os.File
}

// StartAgent writes config (agent YAML) to a file and starts an agent with it; it is stopped
// when the test ends, and its log is shown if the test failed.
func StartAgent(t testing.TB, config string) *Agent {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return StartAgentFile(t, path)
}

// StartAgentFile starts an agent with an existing configuration file.
func StartAgentFile(t testing.TB, path string) *Agent {
	t.Helper()
	return startAgent(t, path, 2)
}

// StartAgentVerbose is StartAgent logging at klog verbosity v (4 and above: every request
// and response).
func StartAgentVerbose(t testing.TB, v int, config string) *Agent {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return startAgent(t, path, v)
}

func startAgent(t testing.TB, path string, v int) *Agent {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.CreateTemp(t.TempDir(), "agent-*.log")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{ConfigPath: path, log: log}
	a.cmd = exec.Command(self, fmt.Sprintf("-v=%d", v))
	a.cmd.Env = append(os.Environ(), agentConfigEnv+"="+path)
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop(syscall.SIGTERM)
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			t.Logf("agent %s log (%s):\n%s", path, a.cmd.ProcessState, out)
		}
		log.Close()
	})
	return a
}

// Log returns what the agent has logged so far.
func (a *Agent) Log() string {
	out, _ := os.ReadFile(a.log.Name())
	return string(out)
}

// Stop signals the agent and waits for it to exit.
func (a *Agent) Stop(sig syscall.Signal) {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(sig)
	a.cmd.Wait()
}

// Client connects to an agent without waiting for it; nil creds means plaintext.
func Client(t testing.TB, target string, creds credentials.TransportCredentials) agentapi.AgentClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentapi.NewAgentClient(conn)
}

// Dial connects to an agent and waits (up to a minute) until it answers Info.
func Dial(t testing.TB, target string, creds credentials.TransportCredentials) agentapi.AgentClient {
	t.Helper()
	c := Client(t, target, creds)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Info(ctx, &agentapi.InfoRequest{})
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent at %s does not answer: %v", target, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// MTLS returns client credentials from files, verifying the server as serverName.
func MTLS(t testing.TB, f mtls.Files, serverName string) credentials.TransportCredentials {
	cfg, err := mtls.Client(f, serverName)
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(cfg)
}

// RunE runs a command (LC_ALL=C, bounded by two minutes) and returns its trimmed output, or
// an error carrying its output.
func RunE(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// NewUUID returns a random (version 4) UUID.
func NewUUID(t testing.TB) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ReadAttr reads a sysfs or configfs attribute without its newline; an error fails the test.
func ReadAttr(t testing.TB, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// ReloadNVMe reloads the NVMe host and target modules with nvme_core's multipath parameter set
// to mp ("Y" or "N"). Everything that uses them must be gone.
func ReloadNVMe(t testing.TB, mp string) {
	t.Helper()
	Run(t, "modprobe", "-r", "nvmet_rdma", "nvmet_tcp", "nvme_rdma", "nvme_tcp", "nvme_fabrics", "nvmet", "nvme_core")
	Run(t, "modprobe", "nvme_core", "multipath="+mp)
	Run(t, "modprobe", "-a", "nvmet", "nvmet_tcp", "nvmet_rdma", "nvme_tcp", "nvme_rdma")
	for _, p := range []string{"/dev/nvme-fabrics", "/sys/kernel/config/nvmet/ports"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("after reloading the NVMe modules: %v", err)
		}
	}
	if got := ReadAttr(t, "/sys/module/nvme_core/parameters/multipath"); got != mp {
		t.Fatalf("nvme_core multipath = %s, want %s", got, mp)
	}
}

// DHCHAPSecret returns a random DH-HMAC-CHAP secret in its transport form: "DHHC-1:00:" +
// base64(32-byte key + its CRC-32, little endian) + ":" (NVMe base spec 8.13.5.8).
func DHCHAPSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32, 36)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	key = binary.LittleEndian.AppendUint32(key, crc32.ChecksumIEEE(key))
	return "DHHC-1:00:" + base64.StdEncoding.EncodeToString(key) + ":"
}

// CutNVMeTCP drops, with an nftables table of its own, the NVMe/TCP traffic to and from port
// on each address (both directions, so neither side sees the other), as a network failure
// would. The returned restore deletes the table; it runs at the end of the test too, and
// running it twice is harmless.
func CutNVMeTCP(t testing.TB, table string, port int, addrs ...string) (restore func()) {
	t.Helper()
	rules := []string{
		"add table inet " + table,
		"add chain inet " + table + " out { type filter hook output priority 0 ; policy accept ; }",
	}
	for _, addr := range addrs {
		rules = append(rules,
			fmt.Sprintf("add rule inet %s out ip daddr %s tcp dport %d drop", table, addr, port),
			fmt.Sprintf("add rule inet %s out ip saddr %s tcp sport %d drop", table, addr, port))
	}
	for _, r := range rules {
		Run(t, "nft", strings.Fields(r)...)
	}
	done := false
	restore = func() {
		if !done {
			done = true
			Run(t, "nft", "delete", "table", "inet", table)
		}
	}
	t.Cleanup(restore)
	return restore
}
