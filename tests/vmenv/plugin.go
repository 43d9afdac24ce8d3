package vmenv

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
)

// StartPlugin runs the CSI plugin in this process with o until the test ends (an empty
// Endpoint becomes a socket in a temporary directory) and returns a connection to it. The
// test fails if the plugin ends with an error.
func StartPlugin(t testing.TB, o plugin.Options) *grpc.ClientConn {
	t.Helper()
	if o.Endpoint == "" {
		o.Endpoint = "unix://" + filepath.Join(t.TempDir(), "csi.sock")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- plugin.Run(klog.NewContext(ctx, klog.Background()), o) }()
	conn, err := grpc.NewClient(o.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("plugin: %v", err)
		}
	})
	return conn
}
