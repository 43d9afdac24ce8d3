// Command nvmeof-agent runs on a storage node: it carves volumes out of an LVM thin pool and
// exports them with the kernel NVMe target, behind an mTLS gRPC API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// options are the agent's command-line settings.
type options struct {
	configPath string
}

func main() {
	klog.InitFlags(nil)
	var opts options
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.StringVar(&opts.configPath, "config", "/etc/nvmeof-agent/config.yaml", "agent configuration file")
	flag.Parse()

	if *showVersion {
		fmt.Println(version.String("nvmeof-agent"))
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		klog.ErrorS(err, "nvmeof-agent failed")
		klog.Flush()
		os.Exit(1)
	}
}

func run(ctx context.Context, opts options) error {
	cfg, err := agent.LoadConfig(opts.configPath)
	if err != nil {
		return err
	}
	return agent.Run(ctx, cfg)
}
