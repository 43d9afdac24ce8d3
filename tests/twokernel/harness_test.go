//go:build vm

package twokernel

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
)

// Steps proving the harness itself: a TCP service across the link, and a disk that keeps what
// was written and flushed before a power cut.

// startSink accepts TCP connections on addr and answers each with the number of bytes it read
// (8 bytes, big endian) once the client closes its side; it runs until the session ends.
var startSink = vmtest.NewStep("start-sink", func(s *vmtest.Step, addr string) struct{} {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		s.Fatal(err)
	}
	s.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				var b [8]byte
				for i := range 8 {
					b[i] = byte(n >> (56 - 8*i))
				}
				_, _ = c.Write(b[:])
			}()
		}
	}()
	return struct{}{}
})

type sendIn struct {
	Addr    string
	Bytes   int64
	Timeout time.Duration
}

type sendOut struct {
	Err     string
	Elapsed time.Duration
}

// sendToSink sends Bytes to a sink and checks its count, all within Timeout; a failure is
// reported in Err (the test decides whether it expected one).
var sendToSink = vmtest.NewStep("send-to-sink", func(s *vmtest.Step, in sendIn) sendOut {
	start := time.Now()
	err := func() error {
		c, err := net.DialTimeout("tcp", in.Addr, in.Timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(start.Add(in.Timeout))
		if _, err := io.CopyN(c, rand.Reader, in.Bytes); err != nil {
			return err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		var b [8]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		var n int64
		for _, x := range b {
			n = n<<8 | int64(x)
		}
		if n != in.Bytes {
			return errors.New("the sink counted a different number of bytes")
		}
		return nil
	}()
	out := sendOut{Elapsed: time.Since(start)}
	if err != nil {
		out.Err = err.Error()
	}
	return out
})

type diskIO struct {
	Disk string
	Data []byte
}

// writeDisk writes Data at the start of a disk (O_DIRECT) and flushes it (fsync).
var writeDisk = vmtest.NewStep("write-disk", func(s *vmtest.Step, in diskIO) struct{} {
	dev, err := vmtest.DiskDevice(in.Disk)
	if err != nil {
		s.Fatal(err)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		s.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(in.Data, 0); err != nil {
		s.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		s.Fatal(err)
	}
	return struct{}{}
})

// readDisk reads len(Data) bytes at the start of a disk, bypassing the page cache.
var readDisk = vmtest.NewStep("read-disk", func(s *vmtest.Step, in diskIO) []byte {
	dev, err := vmtest.DiskDevice(in.Disk)
	if err != nil {
		s.Fatal(err)
	}
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		s.Fatal(err)
	}
	defer f.Close()
	buf, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		s.Fatal(err)
	}
	if _, err := f.ReadAt(buf, 0); err != nil {
		s.Fatal(err)
	}
	return bytes.Clone(buf[:len(in.Data)])
})

// runCommand runs a command in the guest and returns its output.
var runCommand = vmtest.NewStep("run-command", func(s *vmtest.Step, argv []string) string {
	out, err := exec.CommandContext(s.Context(), argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		s.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
})

// TestTwoKernelHarness proves the harness: two kernels boot and serve steps; TCP crosses the
// private link; a cut link carries nothing until healed; Soft-RoCE is up on both ends; a disk
// keeps across a power cut what the guest wrote and flushed before it; both machines fit the
// memory budget. It logs boot times, link throughput and memory.
func TestTwoKernelHarness(t *testing.T) {
	tk := newTwoKernel(t)
	sink := tk.storage.Addr() + ":7000"
	startSink.Run(t, tk.storage, sink)

	const size = 32 << 20
	sent := sendToSink.Run(t, tk.worker, sendIn{Addr: sink, Bytes: size, Timeout: 2 * time.Minute})
	if sent.Err != "" {
		t.Fatalf("worker → storage over the private link: %s", sent.Err)
	}
	t.Logf("32 MiB worker → storage over TCP in %s (%.1f MB/s)", sent.Elapsed.Round(time.Millisecond), float64(size)/sent.Elapsed.Seconds()/1e6)

	tk.c.Cut(tk.storage, tk.worker)
	cut := sendToSink.Run(t, tk.worker, sendIn{Addr: sink, Bytes: 1 << 20, Timeout: 5 * time.Second})
	if cut.Err == "" {
		t.Fatal("a TCP transfer crossed a cut link")
	}
	t.Logf("across the cut link: %s", cut.Err)
	tk.c.Heal(tk.storage, tk.worker)
	healed := sendToSink.Run(t, tk.worker, sendIn{Addr: sink, Bytes: 1 << 20, Timeout: time.Minute})
	if healed.Err != "" {
		t.Fatalf("after healing the link: %s", healed.Err)
	}

	for _, m := range []*vmtest.Machine{tk.storage, tk.worker} {
		links := runCommand.Run(t, m, []string{"rdma", "link", "show"})
		if !strings.Contains(links, "rxe0") || !strings.Contains(links, "ACTIVE") || !strings.Contains(links, "eth0") {
			t.Errorf("%s: no active Soft-RoCE device on eth0:\n%s", m.Name(), links)
		}
	}

	marker := make([]byte, 4096)
	if _, err := rand.Read(marker); err != nil {
		t.Fatal(err)
	}
	writeDisk.Run(t, tk.storage, diskIO{Disk: "data", Data: marker})
	tk.storage.PowerCut(t)
	tk.storage.Boot(t)
	got := readDisk.Run(t, tk.storage, diskIO{Disk: "data", Data: marker})
	if !bytes.Equal(got, marker) {
		t.Error("the flushed block did not survive the power cut")
	}
	again := sendToSink.Run(t, tk.worker, sendIn{Addr: sink, Bytes: 1 << 20, Timeout: time.Minute})
	if again.Err == "" {
		t.Error("the sink answered after the storage VM's power cut: its session should be gone")
	}

	rss := tk.storage.PeakRSS() + tk.worker.PeakRSS()
	t.Logf("qemu peak RSS: storage %d MiB, worker %d MiB", tk.storage.PeakRSS()>>20, tk.worker.PeakRSS()>>20)
	if rss > 12<<30 {
		t.Errorf("the two machines take %d MiB; the budget is 12 GiB of this 24 GiB machine", rss>>20)
	}
}
