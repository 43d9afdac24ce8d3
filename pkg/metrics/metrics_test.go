package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/internal/grpctest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics/metricstest"
)

type identity struct {
	csi.UnimplementedIdentityServer
	fail bool
}

func (i *identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if i.fail {
		return nil, status.Error(codes.FailedPrecondition, "not ready")
	}
	return &csi.ProbeResponse{}, nil
}

// Every CSI call is timed under the sidecars' metric name and labels, and /metrics serves it.
func TestCSIOperationsAreTimedAndServed(t *testing.T) {
	reg := metrics.NewRegistry()
	id := &identity{}
	c := csi.NewIdentityClient(grpctest.Serve(t, func(s *grpc.Server) { csi.RegisterIdentityServer(s, id) }, metrics.CSIOperations(reg, "nvmeof.csi.io")))
	ctx := context.Background()
	for range 3 {
		if _, err := c.Probe(ctx, &csi.ProbeRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	id.fail = true
	_, _ = c.Probe(ctx, &csi.ProbeRequest{})
	ok := `csi_plugin_operations_seconds_count{driver_name="nvmeof.csi.io",method_name="/csi.v1.Identity/Probe",grpc_status_code="OK"}`
	failed := `csi_plugin_operations_seconds_count{driver_name="nvmeof.csi.io",method_name="/csi.v1.Identity/Probe",grpc_status_code="FailedPrecondition"}`
	if metricstest.Value(t, reg, ok) != 3 || metricstest.Value(t, reg, failed) != 1 {
		t.Fatalf("OK %v, FailedPrecondition %v; want 3 and 1", metricstest.Value(t, reg, ok), metricstest.Value(t, reg, failed))
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- metrics.ServeListener(sctx, l, reg) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "csi_plugin_operations_seconds_bucket") || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("GET /metrics: %d\n%.400s", resp.StatusCode, body)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the metrics server did not stop with its context")
	}
}
