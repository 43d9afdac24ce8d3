// Command nvmeofctl shows and tends what nvmeof-csi holds: the storage nodes and their pools
// (status), the volumes with their PVCs, snapshots, clones, hosts and path states (volumes),
// the NVMe paths of the worker it runs on (paths), and what is left over (orphans, which can
// remove them after a confirmation).
//
// Installed as kubectl-nvmeof anywhere on PATH it is also the kubectl plugin `kubectl nvmeof`.
// It reads the driver's storage-node list and the controller's client certificate from the
// cluster (the usual kubeconfig), then talks to each agent over the same mTLS API the CSI
// controller uses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

const usage = `Usage: %[1]s <command> [flags]

Commands:
  status    storage nodes: reachability, version, pool usage, volumes and exports
  volumes   every volume: ID, PV and PVC, size, snapshots, clones, published hosts, path state
  paths     the NVMe paths (controllers) of nvmeof-csi volumes on this machine (a worker)
  orphans   thin volumes and snapshots no PV or VolumeSnapshotContent references, exports and
            host entries no volume wants, controllers on this machine to no live export;
            --clean removes them after a confirmation
  version   this program's version

Run '%[1]s <command> -h' for the flags of a command.
`

// exitUsage is the exit code of a command line that cannot be run; 1 is a failed command.
const exitUsage = 2

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line (args[0] is the program name) and returns the exit code.
func run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	prog := filepath.Base(args[0])
	if prog == "kubectl-nvmeof" {
		prog = "kubectl nvmeof"
	}
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		fmt.Fprintf(errOut, usage, prog)
		if len(args) < 2 {
			return exitUsage
		}
		return 0
	}
	cmd, rest := args[1], args[2:]
	if cmd == "version" {
		fmt.Fprintln(out, version.String("nvmeofctl"))
		return 0
	}
	c, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(errOut, "%s: unknown command %q\n", prog, cmd)
		fmt.Fprintf(errOut, usage, prog)
		return exitUsage
	}
	fs := flag.NewFlagSet(prog+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(errOut)
	o := &options{}
	o.register(fs, c.local)
	if c.flags != nil {
		c.flags(fs, o)
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(errOut, "%s %s: unexpected argument %q\n", prog, cmd, fs.Arg(0))
		return exitUsage
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(errOut, "%s %s: %v\n", prog, cmd, err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	e := &env{opts: o, in: in, out: out, errOut: errOut}
	defer e.close()
	if err := c.run(ctx, e); err != nil {
		fmt.Fprintf(errOut, "%s %s: %v\n", prog, cmd, err)
		return 1
	}
	return 0
}

// command is one subcommand: its own flags and what it does.
type command struct {
	// local: the command reads this machine's NVMe controllers and needs no storage node
	// (paths).
	local bool
	flags func(fs *flag.FlagSet, o *options)
	run   func(ctx context.Context, e *env) error
}

var commands = map[string]command{
	"status":  {run: runStatus},
	"volumes": {run: runVolumes},
	"paths":   {local: true, run: runPaths},
	"orphans": {run: runOrphans, flags: func(fs *flag.FlagSet, o *options) {
		fs.BoolVar(&o.clean, "clean", false, "remove the removable orphans after showing them and asking for confirmation")
		fs.BoolVar(&o.yes, "yes", false, "with --clean: do not ask (for scripts)")
	}},
}

// options are the flags of every command.
type options struct {
	output      string
	timeout     time.Duration
	kubeconfig  string
	kubeContext string
	namespace   string
	nodesFile   string
	tlsSecret   string
	nodesMap    string
	sysfsRoot   string
	clean, yes  bool
	// local: the command's flags leave out the cluster and the storage nodes.
	local bool
}

func (o *options) register(fs *flag.FlagSet, local bool) {
	fs.StringVar(&o.output, "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound of the whole command")
	fs.StringVar(&o.sysfsRoot, "sysfs", "/sys", "where sysfs is mounted (the worker's NVMe controllers)")
	o.local = local
	if local {
		return
	}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
	fs.StringVar(&o.kubeContext, "context", "", "kubeconfig context (default: the current one)")
	fs.StringVar(&o.namespace, "namespace", "nvmeof-csi", "namespace the driver is installed in")
	fs.StringVar(&o.nodesMap, "storage-nodes-configmap", "nvmeof-csi-storage-nodes", "ConfigMap (key storage-nodes.yaml) listing the storage nodes, as the controller reads it")
	fs.StringVar(&o.tlsSecret, "tls-secret", "nvmeof-csi-controller-tls", "Secret with the client certificate for the agents (tls.crt, tls.key, ca.crt)")
	fs.StringVar(&o.nodesFile, "storage-nodes", "", "read the storage nodes from this file instead (the controller's format, TLS files local); "+
		"without a cluster, volumes are shown without PV or PVC and orphans are not searched")
}

func (o *options) check() error {
	switch o.output {
	case "table", "json", "yaml":
	default:
		return fmt.Errorf("-o %q: want table, json or yaml", o.output)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", o.timeout)
	}
	if o.yes && !o.clean {
		return errors.New("--yes only goes with --clean")
	}
	if !o.local && strings.TrimSpace(o.namespace) == "" {
		return errors.New("--namespace must not be empty")
	}
	return nil
}
