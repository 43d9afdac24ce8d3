//go:build vm

package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

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
	ctx := vmenv.Context(t, time.Minute)
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
