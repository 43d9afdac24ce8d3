//go:build vm

package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmtest"
)

const gib = int64(1) << 30

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// thinPool creates a volume group on a sparse loop file of the scratch disk with a thin pool
// named "pool", removes both when the test ends, and returns the loop device.
func thinPool(t testing.TB, vg string, size string) string {
	t.Helper()
	img := filepath.Join(vmtest.ScratchDir(), vg+".img")
	run(t, "truncate", "-s", size, img)
	loop := run(t, "losetup", "-f", "--show", img)
	t.Cleanup(func() {
		filter := fmt.Sprintf(`devices { global_filter = [ "a|^%s$|", "r|.*|" ] }`, loop)
		exec.Command("vgremove", "--config", filter, "-f", vg).Run()
		exec.Command("losetup", "-d", loop).Run()
		os.Remove(img)
	})
	if err := lvm.CreatePool(ctxFor(t, 2*time.Minute), command.Exec{}, vg, "pool", []string{loop}, 90); err != nil {
		t.Fatal(err)
	}
	return loop
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := command.Exec{}.Run(ctxFor(t, 2*time.Minute), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// agentProc is a real agent process: this test binary re-executed in agent mode.
type agentProc struct {
	cfgPath string
	cmd     *exec.Cmd
	log     *os.File
}

func writeAgentConfig(t testing.TB, body string) string {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startAgent(t testing.TB, cfgPath string) *agentProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.CreateTemp(t.TempDir(), "agent-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cfgPath: cfgPath, log: log}
	p.cmd = exec.Command(self, "-v=2")
	p.cmd.Env = append(os.Environ(), agentConfigEnv+"="+cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			out, _ := os.ReadFile(p.log.Name())
			t.Logf("agent log (%s):\n%s", p.cmd.ProcessState, out)
		}
		p.log.Close()
	})
	return p
}

func (p *agentProc) stop(sig syscall.Signal) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(sig)
	p.cmd.Wait()
}

// dial connects to an agent and waits until it answers Info.
func dial(t testing.TB, target string, creds credentials.TransportCredentials) agentapi.AgentClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := agentapi.NewAgentClient(conn)
	deadline := time.Now().Add(60 * time.Second)
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

func mtlsCreds(t testing.TB, f mtls.Files, server string) credentials.TransportCredentials {
	cfg, err := mtls.Client(f, server)
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(cfg)
}

func newHost(t testing.TB) nvme.Identity {
	id, err := nvme.LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// connect connects a host to a published volume over every portal and returns its device.
func connect(t testing.TB, in *nvme.Initiator, h nvme.Identity, pub *agentapi.PublishVolumeResponse) string {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	for _, p := range pub.Portals {
		_, err := in.Connect(ctx, nvme.ConnectOptions{
			Transport: "tcp", Address: p.Address, ServiceID: p.ServiceId,
			SubsysNQN: pub.SubsystemNqn, HostNQN: h.HostNQN, HostID: h.HostID,
			CtrlLossTmo: 120, ReconnectDelay: 1,
		})
		if err != nil {
			t.Fatalf("connect %s via %s: %v", pub.SubsystemNqn, p.Address, err)
		}
	}
	t.Cleanup(func() { in.Disconnect(context.Background(), pub.SubsystemNqn) })
	dev, err := in.WaitNamespace(ctx, pub.SubsystemNqn, pub.NamespaceUuid, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func pattern(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeAt writes data at offset with O_DIRECT|O_SYNC, so it really crosses the fabric.
func writeAt(t testing.TB, dev string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT|syscall.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := aligned(t, len(data))
	copy(buf, data)
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatalf("write %s: %v", dev, err)
	}
}

// readAt reads n bytes at offset with O_DIRECT (no page cache).
func readAt(dev string, off int64, n int) ([]byte, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	defer syscall.Munmap(buf)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("read %s: %w", dev, err)
	}
	return bytes.Clone(buf), nil
}

func mustRead(t testing.TB, dev string, off int64, n int) []byte {
	t.Helper()
	b, err := readAt(dev, off, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// aligned returns a page-aligned buffer, as O_DIRECT needs.
func aligned(t testing.TB, n int) []byte {
	buf, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(buf) })
	return buf
}

// agentClient connects without waiting for the agent to answer.
func agentClient(t testing.TB, target string, creds credentials.TransportCredentials) agentapi.AgentClient {
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

// runErr runs a command (LC_ALL=C, bounded by ctx) and returns its error instead of failing.
func runErr(ctx context.Context, name string, args ...string) ([]byte, error) {
	return command.Exec{}.Run(ctx, name, args...)
}
