package vmtest

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed init.sh
var initScript []byte

//go:embed stage2.sh
var stage2Script []byte

// DefaultCacheDir is where hack/install-deps.sh unpacks the guest kernel.
const DefaultCacheDir = "/var/cache/nvmeof-csi"

// guestScratchDir is where the guest mounts the scratch disk.
const guestScratchDir = "/var/lib/nvmeof-scratch"

// initramfsModules are the modules stage 1 needs before the host root is reachable; everything
// else is loaded by stage 2 from the host's copy of the module tree.
var initramfsModules = []string{"9pnet_virtio", "9p", "overlay"}

// Config describes one VM run.
type Config struct {
	// CacheDir holds kernel/vmlinuz and kernel/lib/modules (NVMEOF_VM_CACHE, else
	// DefaultCacheDir).
	CacheDir string
	// Binary is run in the guest with Args, in directory Dir (a host path, seen in the guest
	// through the overlay of the host root) and with Env added to its environment.
	Binary string
	Args   []string
	Dir    string
	Env    []string
	// MemoryMiB, CPUs and ScratchGiB size the guest; zero picks 3072, 2 and 64.
	MemoryMiB  int
	CPUs       int
	ScratchGiB int
	// Timeout bounds the whole run, boot included.
	Timeout time.Duration
	// Stdout receives the test binary's output as it is produced.
	Stdout io.Writer
}

// Run boots the VM, runs the binary and returns its exit code. An error means the VM failed
// (no kernel, no boot, no result) and carries the tail of the guest's kernel log.
func Run(ctx context.Context, cfg Config) (int, error) {
	if cfg.CacheDir == "" {
		cfg.CacheDir = os.Getenv("NVMEOF_VM_CACHE")
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 3072
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.ScratchGiB == 0 {
		cfg.ScratchGiB = 64
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}

	k, err := findKernel(cfg.CacheDir)
	if err != nil {
		return 0, err
	}
	code, silent, err := runOnce(ctx, cfg, k)
	if silent {
		// Seen once in many boots under TCG: qemu exits at once, the guest having printed
		// nothing. A VM that really cannot boot fails the second time too.
		fmt.Fprintf(cfg.Stdout, "vmtest: %v\nvmtest: the VM stopped early with no output; booting it again\n", err)
		code, _, err = runOnce(ctx, cfg, k)
	}
	return code, err
}

// runOnce boots one VM. silent reports a run that ended within a minute with no result and
// no test output: nothing ran, so booting again is safe.
func runOnce(ctx context.Context, cfg Config, k kernel) (code int, silent bool, err error) {
	work, err := os.MkdirTemp("", "nvmeof-vm-")
	if err != nil {
		return 0, false, err
	}
	keep := os.Getenv("NVMEOF_VM_KEEP") != ""
	defer func() {
		if !keep {
			_ = os.RemoveAll(work) // best effort: a temporary directory
		}
	}()
	share := filepath.Join(work, "share")
	if err := prepareShare(share, k, cfg); err != nil {
		return 0, false, err
	}
	initrd := filepath.Join(work, "initramfs.cpio")
	if err := buildInitramfs(initrd, k); err != nil {
		return 0, false, fmt.Errorf("building the initramfs: %w", err)
	}
	scratch := filepath.Join(work, "scratch.img")
	if err := makeScratch(ctx, scratch, cfg.ScratchGiB); err != nil {
		return 0, false, err
	}

	accel := chooseAccel(ctx, cfg.CacheDir, k)
	console := filepath.Join(work, "console.log")
	args := qemuArgs(k, accel, cfg, initrd, share, scratch, console)

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	out := &crlfWriter{w: cfg.Stdout}
	cmd.Stdout = out
	var qemuErr bytes.Buffer
	cmd.Stderr = &qemuErr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(start).Round(100 * time.Millisecond)

	raw, readErr := os.ReadFile(filepath.Join(share, "exitcode"))
	if readErr != nil {
		why := "the VM stopped without a result"
		if ctx.Err() != nil {
			why = fmt.Sprintf("the VM did not finish within %s", cfg.Timeout)
		} else if runErr != nil {
			why = fmt.Sprintf("qemu failed: %v", runErr)
		}
		early := out.n == 0 && ctx.Err() == nil && elapsed < time.Minute
		return 0, early, fmt.Errorf("%s (accel %s, %s)\nqemu: %s\n--- guest console (tail) ---\n%s",
			why, accel, elapsed, strings.TrimSpace(qemuErr.String()), tail(console, 60))
	}
	code, err = strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, false, fmt.Errorf("unreadable exit code %q", raw)
	}
	if code == 125 {
		return code, false, fmt.Errorf("the VM could not prepare the test environment\n--- guest console (tail) ---\n%s", tail(console, 60))
	}
	if code != 0 {
		fmt.Fprintf(cfg.Stdout, "--- guest kernel log (tail) ---\n%s\n", tail(filepath.Join(share, "dmesg"), 60))
	}
	fmt.Fprintf(cfg.Stdout, "vmtest: guest exited %d after %s (accel %s, kernel %s)\n", code, elapsed, accel, k.version)
	return code, false, nil
}

// kernel is an unpacked guest kernel.
type kernel struct {
	version string
	vmlinuz string
	modules string // lib/modules/<version>
}

func findKernel(cache string) (kernel, error) {
	dir := filepath.Join(cache, "kernel")
	raw, err := os.ReadFile(filepath.Join(dir, "ready"))
	if err != nil {
		return kernel{}, fmt.Errorf("no guest kernel in %s (run hack/install-deps.sh): %w", dir, err)
	}
	v := strings.TrimSpace(string(raw))
	k := kernel{
		version: v,
		vmlinuz: filepath.Join(dir, "vmlinuz"),
		modules: filepath.Join(dir, "lib", "modules", v),
	}
	for _, p := range []string{k.vmlinuz, filepath.Join(k.modules, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return kernel{}, fmt.Errorf("incomplete guest kernel in %s (run hack/install-deps.sh): %w", dir, err)
		}
	}
	return k, nil
}

func prepareShare(share string, k kernel, cfg Config) error {
	if err := os.MkdirAll(share, 0o755); err != nil {
		return err
	}
	if err := copyFile(cfg.Binary, filepath.Join(share, "test.bin"), 0o755); err != nil {
		return fmt.Errorf("copying the test binary: %w", err)
	}
	env := append([]string{guestEnv + "=1", "NVMEOF_VM_SCRATCH=" + guestScratchDir}, cfg.Env...)
	files := map[string]string{
		"stage2.sh":   string(stage2Script),
		"kver":        k.version,
		"moddir":      k.modules,
		"workdir":     cfg.Dir,
		"scratch-dir": guestScratchDir,
		"portal-a":    PortalA,
		"portal-b":    PortalB,
		"args":        nulJoin(cfg.Args),
		"env":         nulJoin(env),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(share, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func nulJoin(items []string) string {
	var b strings.Builder
	for _, s := range items {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

func buildInitramfs(path string, k kernel) error {
	mods, err := moduleClosure(filepath.Join(k.modules, "modules.dep"), initramfsModules)
	if err != nil {
		return err
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is needed (run hack/install-deps.sh): %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &cpioWriter{w: f}
	for _, d := range []string{"bin", "mod", "dev", "proc", "sys"} {
		w.Dir(d)
	}
	w.File("bin/busybox", 0o755, busybox)
	w.Symlink("bin/sh", "busybox")
	w.File("init", 0o755, initScript)
	var list []string
	for _, rel := range mods {
		data, err := os.ReadFile(filepath.Join(k.modules, rel))
		if err != nil {
			return err
		}
		name := filepath.Base(rel)
		w.File("mod/"+name, 0o644, data)
		list = append(list, name)
	}
	w.File("modules.list", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// moduleClosure returns the module files (relative to the module tree) needed to load the named
// modules, dependencies first, read from modules.dep.
func moduleClosure(depFile string, names []string) ([]string, error) {
	raw, err := os.ReadFile(depFile)
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[moduleName(mod)] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(mod string) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		for _, d := range deps[mod] {
			visit(d)
		}
		order = append(order, mod)
	}
	for _, n := range names {
		mod, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("module %s not in %s", n, depFile)
		}
		visit(mod)
	}
	return order, nil
}

// moduleName turns kernel/fs/9p/9p.ko into 9p, with dashes folded to underscores.
func moduleName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, ".xz")
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// makeScratch creates a sparse ext4 image: a real, large block device for the guest.
func makeScratch(ctx context.Context, path string, gib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(gib) << 30); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 on the scratch image: %v: %s", err, out)
	}
	return nil
}

func qemuArgs(k kernel, accel string, cfg Config, initrd, share, scratch, console string) []string {
	args := baseQemuArgs(k, accel, cfg.MemoryMiB, cfg.CPUs, initrd, share, console)
	return append(args, "-drive", "file="+scratch+",format=raw,if=virtio,cache=unsafe,discard=unmap")
}

// baseQemuArgs is what every test VM has: the kernel and initramfs, no network to the outside,
// the kernel log on ttyS0 (a file), the test binary's output on ttyS1 (qemu's stdout), the host
// root (read-only) and the share over virtio-9p.
func baseQemuArgs(k kernel, accel string, memoryMiB, cpus int, initrd, share, console string) []string {
	args := []string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-display", "none", "-monitor", "none", "-nic", "none",
		"-m", strconv.Itoa(memoryMiB), "-smp", strconv.Itoa(cpus),
		"-kernel", k.vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off random.trust_cpu=on 8250.nr_uarts=2",
		"-chardev", "file,id=console,path=" + console, "-serial", "chardev:console",
		"-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out",
		"-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
		"-fsdev", "local,id=vmshare,path=" + share + ",security_model=none",
		"-device", "virtio-9p-pci,fsdev=vmshare,mount_tag=vmshare",
	}
	if accel == "kvm" {
		return append(args, "-accel", "kvm", "-cpu", "host")
	}
	return append(args, "-accel", "tcg,thread=multi", "-cpu", "max")
}

// chooseAccel picks KVM only when it demonstrably works: NVMEOF_VM_ACCEL forces a choice;
// otherwise a probe boot is run once per machine and its verdict cached.
func chooseAccel(ctx context.Context, cache string, k kernel) string {
	switch a := os.Getenv("NVMEOF_VM_ACCEL"); a {
	case "kvm", "tcg":
		return a
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	verdictFile := filepath.Join(cache, "kernel", "accel-"+k.version)
	if raw, err := os.ReadFile(verdictFile); err == nil {
		return strings.TrimSpace(string(raw))
	}
	verdict := "tcg"
	if probeKVM(ctx, k) {
		verdict = "kvm"
	}
	_ = os.WriteFile(verdictFile, []byte(verdict+"\n"), 0o644)
	return verdict
}

// probeKVM boots the kernel under KVM with no root: a working KVM reaches the "no root" panic
// within seconds; a broken one errors out or hangs until the timeout.
func probeKVM(ctx context.Context, k kernel) bool {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-nic", "none",
		"-accel", "kvm", "-cpu", "host", "-m", "512", "-kernel", k.vmlinuz,
		"-append", "console=ttyS0 panic=-1", "-serial", "stdio").CombinedOutput()
	return ctx.Err() == nil && bytes.Contains(out, []byte("Kernel panic"))
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tail returns the last n lines of a file, or a note that it is missing.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%s: %v)", filepath.Base(path), err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crlfWriter drops carriage returns a serial line may add, and counts what passed.
type crlfWriter struct {
	w io.Writer
	n int
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\r"), nil)); err != nil {
		return 0, err
	}
	return len(p), nil
}
