// Command nvmeof-agent runs on a storage node: it carves volumes out of an LVM thin pool and
// exports them with the kernel NVMe target.
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

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()

	if *showVersion {
		fmt.Println(version.String("nvmeof-agent"))
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-agent:", err)
		os.Exit(1)
	}
}

func run(_ context.Context) error {
	return errors.New("the agent service is not implemented in this build yet")
}
