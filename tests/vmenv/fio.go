package vmenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// StartFioVerify starts fio writing 4 KiB blocks at random over the first 64 MiB of each
// file (one job per file, O_DIRECT, queue depth 8) for runtime, verifying every block it
// wrote (crc32c, fatal on the first mismatch). The returned wait waits for fio (bounded by
// runtime plus five minutes), fails the test unless every job ended with err=0, and returns
// fio's write and error lines.
func StartFioVerify(t testing.TB, ctx context.Context, runtime time.Duration, files ...string) (wait func() string) {
	t.Helper()
	args := []string{"--rw=randwrite", "--bs=4k", "--size=64M", "--ioengine=libaio", "--iodepth=8", "--direct=1",
		"--verify=crc32c", "--verify_backlog=512", "--verify_fatal=1", "--time_based", fmt.Sprintf("--runtime=%d", int(runtime.Seconds()))}
	for i, f := range files {
		args = append(args, fmt.Sprintf("--name=job%d", i), "--filename="+f)
	}
	fctx, cancel := context.WithTimeout(ctx, runtime+5*time.Minute)
	fio := exec.CommandContext(fctx, "fio", args...)
	fio.Env = append(os.Environ(), "LC_ALL=C")
	var out strings.Builder
	fio.Stdout, fio.Stderr = &out, &out
	if err := fio.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fio.Wait() }()
	t.Cleanup(cancel)
	return func() string {
		t.Helper()
		err := <-done
		cancel()
		if err != nil {
			t.Fatalf("fio: %v\n%s", err, out.String())
		}
		if strings.Count(out.String(), "err= 0") != len(files) {
			t.Fatalf("fio reported errors:\n%s", out.String())
		}
		var keep []string
		for _, l := range strings.Split(out.String(), "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "write: IOPS=") || strings.HasPrefix(l, "read: IOPS=") || strings.Contains(l, "err=") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, " | ")
	}
}
