// Command nvmeof-demo is `make demo`: it walks the lifecycle a user of nvmeof-csi cares about —
// a "production" volume full of data, a consistent snapshot, dev environments cloned from it,
// staged and mounted, their data verified — against the real kernel, through the real CSI gRPC
// surface, and compares it with copying the same volume the slow way.
//
// On a host with /dev/nvme-fabrics and nvmet's configfs it runs there (as root). Anywhere else
// it boots the project's test VM (internal/vmtest: the real kernel in qemu, the host root visible
// read-only under a writable overlay) and runs itself inside with --inside.
//
// Inside, it creates a thin pool on loop devices (dm-thin driven in-process by the agent, or
// LVM), runs a storage-node agent and `nvmeof-csi --mode=all` in-process, and drives the CSI
// API as the external-provisioner, -attacher, -snapshotter and kubelet would. It ends with a
// table: clones against the full copy, the storage engine's figures against their goals, and
// where one environment's time goes. Everything it creates is torn down at the end, also when
// a step fails, and the end proves that nothing is left.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// options are the demo's flags.
type options struct {
	inside  bool
	forceVM bool
	workDir string

	backend     string
	volumeSize  byteSize
	datasetSize byteSize
	poolSize    byteSize
	clones      int
	transport   string
	portals     string
	port        int

	timeout    time.Duration
	vmMemory   int
	vmCPUs     int
	vmScratch  int
	keepOnFail bool
}

// usage opens --help.
const usage = `Usage: nvmeof-demo [flags]   (make demo [DEMO_FLAGS='flags'])

The driver doing its job, end to end, through the real CSI API against the real kernel (in a
qemu VM unless this host has NVMe-oF): a production volume holding a database, a consistent
snapshot, dev environments cloned from it, staged and mounted in parallel, clones of a 1 GiB
and a 64 GiB volume timed against each other, and a full block copy to compare. The closing
table has clone against copy times, the storage engine's figures against their goals
(reported, never asserted), and where one environment's time goes. Everything is torn down
and the end proves nothing is left. About 8 minutes with the defaults on 2 cores under TCG
emulation; CI's short run (--clones 4 --dataset-size 64Mi --volume-size 2Gi) about 2 minutes.

Flags:
`

func parseFlags(args []string) (options, error) {
	o := options{volumeSize: 8 << 30, datasetSize: 256 << 20, poolSize: 40 << 30}
	fs := flag.NewFlagSet("nvmeof-demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s", usage)
		fs.PrintDefaults()
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.BoolVar(&o.inside, "inside", false, "run the demo in this kernel now (what the VM runs; needs root, nvmet and nvme-fabrics)")
	fs.BoolVar(&o.forceVM, "vm", false, "boot the VM even when this host could run the demo directly")
	fs.StringVar(&o.workDir, "work-dir", "", "where the pool's files, sockets, kubelet-like directories and demo.log go\n"+
		"(default: the VM's scratch disk, or /var/tmp/nvmeof-demo on a host)")
	fs.StringVar(&o.backend, "backend", backendDMThin, "the agent's pool: dmthin (the kernel's dm-thin, driven in-process) or lvm (an LVM thin pool)")
	fs.Var(&o.volumeSize, "volume-size", "size of the production volume (and of every clone); the size step\nalways clones a 1 GiB and a 64 GiB volume besides (thin: they cost what is written)")
	fs.Var(&o.datasetSize, "dataset-size", "amount of generated data in the production volume")
	fs.Var(&o.poolSize, "pool-size", "size of the thin pool's data: a sparse file (dmthin: plus a metadata file of 1/256 of it, at least 256 MiB)")
	fs.IntVar(&o.clones, "clones", 16, "dev environments cloned in parallel")
	fs.StringVar(&o.transport, "transport", "tcp", "NVMe-oF transport: tcp or rdma (Soft-RoCE in the VM)")
	fs.StringVar(&o.portals, "portals", "", "the two portal addresses, comma-separated\n(default: the VM's "+
		vmtest.PortalA+","+vmtest.PortalB+", or 127.0.0.1,127.0.0.2 on a host)")
	fs.IntVar(&o.port, "port", 4420, "portal service port")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound of the whole demo (the VM gets 3 minutes more to boot)")
	fs.IntVar(&o.vmMemory, "vm-memory", 4096, "VM memory in MiB")
	fs.IntVar(&o.vmCPUs, "vm-cpus", 2, "VM CPUs")
	fs.IntVar(&o.vmScratch, "vm-scratch", 64, "VM scratch disk in GiB (sparse)")
	fs.BoolVar(&o.keepOnFail, "keep-on-failure", false, "on failure, leave everything in place for inspection instead of cleaning up")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *showVersion {
		fmt.Println(version.String("nvmeof-demo"))
		os.Exit(0)
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.clones < 1 || o.clones > 64:
		return o, fmt.Errorf("--clones %d: want 1 to 64", o.clones)
	case o.backend != backendDMThin && o.backend != backendLVM:
		return o, fmt.Errorf("--backend %q: want %s or %s", o.backend, backendDMThin, backendLVM)
	case o.transport != "tcp" && o.transport != "rdma":
		return o, fmt.Errorf("--transport %q: want tcp or rdma", o.transport)
	case o.datasetSize < 16<<20 || int64(o.datasetSize) > int64(o.volumeSize)/2:
		return o, fmt.Errorf("--dataset-size %s: want at least 16Mi and at most half the volume", o.datasetSize)
	case int64(o.poolSize) < 2*int64(o.volumeSize)+int64(o.datasetSize)+(2<<30):
		return o, fmt.Errorf("--pool-size %s: want room for the production volume, its full copy and the clones' changes", o.poolSize)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-demo:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { // a second Ctrl-C kills at once; the first one lets the demo clean up
		<-ctx.Done()
		stop()
	}()
	if o.inside || (!o.forceVM && nvmeofKernel()) {
		os.Exit(runDemo(ctx, o))
	}
	os.Exit(runInVM(ctx, o))
}

// nvmeofKernel reports whether this kernel can run the demo directly: an NVMe-oF initiator
// and the kernel target's configfs.
func nvmeofKernel() bool {
	for _, p := range []string{"/dev/nvme-fabrics", "/sys/kernel/config/nvmet"} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// runInVM boots the test VM and runs this very binary in it with --inside, streaming its
// output; the exit code is the demo's.
func runInVM(ctx context.Context, o options) int {
	cfg, err := vmtest.Self(append(os.Args[1:], "--inside"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-demo:", err)
		return 1
	}
	cfg.Timeout = o.timeout + 3*time.Minute
	cfg.MemoryMiB, cfg.CPUs, cfg.ScratchGiB = o.vmMemory, o.vmCPUs, o.vmScratch
	fmt.Printf("No NVMe-oF in this kernel (/dev/nvme-fabrics, nvmet configfs): booting the real kernel in qemu\n"+
		"(%d MiB, %d CPUs, %d GiB sparse scratch disk) and running the demo inside.\n", o.vmMemory, o.vmCPUs, o.vmScratch)
	start := time.Now()
	code, err := vmtest.Run(ctx, cfg)
	if err != nil && code == 0 && time.Since(start) < time.Minute && ctx.Err() == nil {
		// A VM that ends within seconds without a result did not get to run the demo (seen
		// once under TCG: no console output, no exit code). A fresh VM is cheap: try again.
		fmt.Printf("nvmeof-demo: the VM ended without running the demo (%v); booting it once more\n", firstLine(err))
		code, err = vmtest.Run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-demo: the VM failed:", err)
		if code == 0 {
			code = 1
		}
	}
	fmt.Printf("nvmeof-demo: %s in all, VM boot included; exit code %d\n", time.Since(start).Round(time.Second), code)
	return code
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
