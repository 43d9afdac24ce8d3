package lvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPollDevice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lv")
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = os.WriteFile(path, nil, 0o600)
	}()
	if err := pollDevice(context.Background(), path, 5*time.Second); err != nil {
		t.Errorf("pollDevice = %v", err)
	}
	err := pollDevice(context.Background(), filepath.Join(dir, "never"), 60*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("pollDevice(never) = %v", err)
	}
}

func TestDefaultWaitForDeviceIsUsed(t *testing.T) {
	p := &Pool{VG: "vg", ThinPool: "pool"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.waitDevice(ctx, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, context.Canceled) {
		t.Errorf("waitDevice = %v", err)
	}
}
