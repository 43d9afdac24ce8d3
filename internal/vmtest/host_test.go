package vmtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRunFailsWithoutKernel(t *testing.T) {
	code, err := Run(context.Background(), Config{CacheDir: t.TempDir(), Binary: "/bin/true"})
	if err == nil {
		t.Fatalf("Run without a kernel returned exit code %d and no error", code)
	}
	if !strings.Contains(err.Error(), "install-deps") {
		t.Errorf("error %q does not say how to get a kernel", err)
	}
}

func TestModuleClosureOrdersDependenciesFirst(t *testing.T) {
	dep := filepath.Join(t.TempDir(), "modules.dep")
	content := `kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/drivers/nvme/target/nvmet-tcp.ko: kernel/drivers/nvme/target/nvmet.ko
kernel/drivers/nvme/target/nvmet.ko:
`
	if err := os.WriteFile(dep, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := moduleClosure(dep, []string{"9pnet_virtio", "9p", "nvmet-tcp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/net/9p/9pnet.ko", "kernel/fs/netfs/netfs.ko", "kernel/net/9p/9pnet_virtio.ko",
		"kernel/fs/9p/9p.ko", "kernel/drivers/nvme/target/nvmet.ko", "kernel/drivers/nvme/target/nvmet-tcp.ko",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("closure = %v, want %v", got, want)
	}
	if _, err := moduleClosure(dep, []string{"nope"}); err == nil {
		t.Error("an unknown module gave no error")
	}
}

func TestCPIOWritesNewcRecords(t *testing.T) {
	var buf bytes.Buffer
	w := &cpioWriter{w: &buf}
	w.Dir("bin")
	w.File("bin/x", 0o755, []byte("hello"))
	w.Symlink("bin/y", "x")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	for _, want := range []string{"070701", "bin/x\x00", "hello", "TRAILER!!!\x00"} {
		if !strings.Contains(out, want) {
			t.Errorf("archive lacks %q", want)
		}
	}
	// The file's header: mode 0100755, size 5, name size 6.
	if !strings.Contains(out, "000081ED") || !strings.Contains(out, "00000005") {
		t.Error("file header lacks mode 0100755 or size 5")
	}
}

func TestGuestArgsDropHostOnlyPaths(t *testing.T) {
	got := guestArgs([]string{"-test.v=true", "-test.testlogfile=/tmp/x/testlog.txt", "-test.timeout=10m0s", "-test.gocoverdir=/tmp/c"})
	want := []string{"-test.v=true", "-test.timeout=10m0s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestArgs = %v, want %v", got, want)
	}
	if d := testTimeout(got); d != 10*time.Minute {
		t.Errorf("testTimeout = %s, want 10m", d)
	}
	if d := testTimeout(nil); d != 30*time.Minute {
		t.Errorf("default testTimeout = %s, want 30m", d)
	}
}

func TestForwardedEnvKeepsOnlyTestSettings(t *testing.T) {
	got := forwardedEnv([]string{"CI=true", "HOME=/root", "NVMEOF_TRANSPORT=rdma", "NVMEOF_VM_CACHE=/x", "PATH=/bin"})
	want := []string{"CI=true", "NVMEOF_TRANSPORT=rdma"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("forwardedEnv = %v, want %v", got, want)
	}
}

func TestCRLFWriterStripsCarriageReturns(t *testing.T) {
	var buf bytes.Buffer
	w := &crlfWriter{w: &buf}
	n, err := w.Write([]byte("PASS\r\nok\r\n"))
	if err != nil || n != 10 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if buf.String() != "PASS\nok\n" {
		t.Errorf("got %q", buf.String())
	}
}
