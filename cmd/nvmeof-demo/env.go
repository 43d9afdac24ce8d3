package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
)

// Names of what the demo creates. The storage node's name makes the agent's NQN prefix, so
// the demo only ever touches nvmet subsystems under that prefix; the two nvmet port IDs are
// its own.
const (
	storageNode = "demo-storage"
	workerNode  = "demo-worker"
	vgName      = "nvmeofdemo"
	thinPool    = "pool"
)

var portIDs = []uint16{4241, 4242}

// env is the demo's storage node and worker: a thin pool on loop devices, an agent and the
// CSI plugin (all-in-one), running in this process, with their logs in one file.
type env struct {
	o       options
	dir     string
	logPath string
	// loop is the LVM backend's loop device; metaLoop and dataLoop are the dm-thin pool's.
	loop, metaLoop, dataLoop string
	prefix                   string
	endpoint                 string
	servers                  []*server // the plugin first, then the agent
	stages                   *stageLog // the node's "Staged …" log lines, by volume ID
}

func newEnv(o options) (*env, error) {
	dir := o.workDir
	if dir == "" {
		dir = "/var/tmp/nvmeof-demo"
		if s := vmtest.ScratchDir(); s != "" {
			dir = filepath.Join(s, "nvmeof-demo")
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if dir == "/" {
		return nil, errors.New("--work-dir must not be /")
	}
	if o.portals == "" {
		o.portals = "127.0.0.1,127.0.0.2"
		if vmtest.InGuest() {
			o.portals = vmtest.PortalA + "," + vmtest.PortalB
		}
	}
	cfg := agent.Config{NodeName: storageNode}
	return &env{
		o: o, dir: dir,
		logPath:  filepath.Join(dir, "demo.log"),
		prefix:   cfg.NQNPrefix(),
		endpoint: "unix://" + filepath.Join(dir, "csi.sock"),
	}, nil
}

func (e *env) path(elem ...string) string { return filepath.Join(append([]string{e.dir}, elem...)...) }

// logToFile sends klog (the agent's and the plugin's logs) and gRPC's own log to demo.log;
// the stage log sees klog's lines on their way.
func (e *env) logToFile() error {
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{
		"logtostderr": "false", "alsologtostderr": "false", "one_output": "true", "stderrthreshold": "FATAL", "v": "2",
	} {
		if err := fs.Set(k, v); err != nil {
			return err
		}
	}
	e.stages = newStageLog()
	klog.SetOutput(io.MultiWriter(f, e.stages))
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(f, f, f))
	return nil
}

// logTail returns the last n lines of demo.log.
func (e *env) logTail(n int) string {
	klog.Flush()
	raw, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startAgent runs the storage-node agent in this process, with a portal of the chosen
// transport on each portal address, serving its API on a unix socket.
func (e *env) startAgent() error {
	cfg := agent.Config{NodeName: storageNode, Pool: e.poolConfig(), Listen: "unix://" + e.path("agent.sock")}
	if e.o.backend == backendLVM {
		cfg.LVMConfig = "devices { " + noDevicesFile + " }"
	}
	for i, addr := range strings.Split(e.o.portals, ",") {
		if i >= len(portIDs) {
			return fmt.Errorf("--portals %q: at most %d addresses", e.o.portals, len(portIDs))
		}
		cfg.Portals = append(cfg.Portals, agent.PortalConfig{ID: portIDs[i], Transport: e.o.transport, Address: strings.TrimSpace(addr), Port: e.o.port})
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := klog.Background().WithName("agent")
	e.goRun("agent", func(ctx context.Context) error { return agent.Run(klog.NewContext(ctx, logger), cfg) })
	return nil
}

// startPlugin runs `nvmeof-csi --mode=all` in this process on a unix socket. The worker's NVMe
// host identity lives in the work directory, so the host's /etc/nvme is never touched.
func (e *env) startPlugin() error {
	nodes := e.path("storage-nodes.yaml")
	cfg := fmt.Sprintf("storageNodes:\n- name: %s\n  address: unix://%s\n", storageNode, e.path("agent.sock"))
	if err := os.WriteFile(nodes, []byte(cfg), 0o644); err != nil {
		return err
	}
	o := plugin.Options{
		Mode:         plugin.ModeAll,
		Endpoint:     e.endpoint,
		StorageNodes: nodes,
		AgentTimeout: 5 * time.Minute,
		ProbeTimeout: 10 * time.Second,
		NodeName:     workerNode,
		IdentityDir:  e.path("etc-nvme"),
		StateDir:     e.path("plugin-state"),
	}
	logger := klog.Background().WithName("nvmeof-csi")
	e.goRun("nvmeof-csi", func(ctx context.Context) error { return plugin.Run(klog.NewContext(ctx, logger), o) })
	return nil
}

// server is an in-process server goroutine.
type server struct {
	name   string
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// goRun runs a server until stop is called.
func (e *env) goRun(name string, serve func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- serve(ctx) }()
	e.servers = append([]*server{s}, e.servers...) // stopped in reverse order
}

// exited returns the error of a server that stopped by itself (e.g. the agent could not
// listen on a portal), or nil while all run.
func (e *env) exited() error {
	for _, s := range e.servers {
		if !s.ended {
			select {
			case s.err = <-s.done:
				s.ended = true
			default:
				continue
			}
		}
		return fmt.Errorf("%s stopped: %v", s.name, s.err)
	}
	return nil
}

// stop stops the plugin, then the agent, waiting at most 30 s for each.
func (e *env) stop() error {
	var errs []error
	for _, s := range e.servers {
		s.cancel()
		if !s.ended {
			select {
			case s.err = <-s.done:
				s.ended = true
			case <-time.After(30 * time.Second):
				errs = append(errs, fmt.Errorf("%s did not stop within 30s", s.name))
				continue
			}
		}
		if s.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, s.err))
		}
	}
	e.servers = nil
	return errors.Join(errs...)
}

// run runs a command (LC_ALL=C, at most 2 minutes) and returns its standard output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := bounded{}.Run(ctx, name, args...)
	return string(out), err
}

// bounded is the demo's command.Runner: command.Exec, each command for at most 2 minutes.
type bounded struct{}

func (bounded) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return command.Exec{}.Run(ctx, name, args...)
}

// lvmFilter is an lvm --config that only lets lvm see dev, and keeps it out of a host's LVM
// devices file (a host running the demo directly keeps its LVM configuration as it was).
func lvmFilter(dev string) string {
	return lvm.DeviceFilter(dev) + " devices { " + noDevicesFile + " }"
}

const noDevicesFile = "use_devicesfile = 0"
