// Command nvmeof-csi is the CSI plugin of nvmeof-csi: the controller service talks to the
// storage-node agents, the node service connects NVMe-oF paths and mounts volumes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// options are the command-line settings of the plugin.
type options struct {
	mode     string
	endpoint string
}

func main() {
	var opts options
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.StringVar(&opts.mode, "mode", "all", "which CSI services to serve: controller, node or all")
	flag.StringVar(&opts.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint")
	flag.Parse()

	if *showVersion {
		fmt.Println(version.String("nvmeof-csi"))
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-csi:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, opts options) error {
	switch opts.mode {
	case "controller", "node", "all":
	default:
		return fmt.Errorf("--mode=%q: want controller, node or all", opts.mode)
	}
	return errors.New("the CSI services are not implemented in this build yet")
}
