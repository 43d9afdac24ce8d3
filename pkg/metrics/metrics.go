// Package metrics serves Prometheus metrics for the project's processes: one registry per
// process (with the Go runtime and process collectors), an HTTP endpoint answering GET
// /metrics, and a gRPC interceptor that times every call a server answers.
//
// The CSI plugin's calls are csi_plugin_operations_seconds{driver_name, method_name,
// grpc_status_code}: the names, labels and buckets of the kubernetes-csi sidecars'
// csi_sidecar_operations_seconds (csi-lib-utils' metrics with the plugin subsystem), so
// dashboards made for the sidecars read the driver's own calls too.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// OperationBuckets are the histogram buckets of operation durations, in seconds: the
// kubernetes-csi sidecars' (csi-lib-utils metrics).
var OperationBuckets = []float64{.1, .25, .5, 1, 2.5, 5, 10, 15, 25, 50, 120, 300, 600}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// shutdownTimeout bounds the HTTP server's graceful stop.
const shutdownTimeout = 5 * time.Second

// Serve answers GET /metrics from reg on addr (host:port) until ctx ends.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ServeListener(ctx, l, reg)
}

// ServeListener is Serve on an open listener (closed when serving ends).
func ServeListener(ctx context.Context, l net.Listener, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	klog.FromContext(ctx).Info("Serving metrics", "address", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// CSIOperations registers csi_plugin_operations_seconds on reg and returns the server option
// that times every call: method_name is the full gRPC method
// ("/csi.v1.Controller/CreateVolume"), grpc_status_code the code's name ("OK", "NotFound").
func CSIOperations(reg prometheus.Registerer, driverName string) grpc.ServerOption {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "csi", Subsystem: "plugin", Name: "operations_seconds",
		Help:    "Container Storage Interface operation duration with gRPC error code status total",
		Buckets: OperationBuckets,
	}, []string{"driver_name", "method_name", "grpc_status_code"})
	reg.MustRegister(h)
	return timed(func(method string, code codes.Code, d time.Duration) {
		h.WithLabelValues(driverName, method, code.String()).Observe(d.Seconds())
	})
}

// AgentOperations registers nvmeof_agent_operation_seconds{operation, result} on reg (the
// agent API's method name, e.g. "CreateVolume", and the gRPC code's name) and returns the
// server option that times every call.
func AgentOperations(reg prometheus.Registerer) grpc.ServerOption {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "nvmeof", Subsystem: "agent", Name: "operation_seconds",
		Help:    "Duration of the agent's API calls, by operation and result (the gRPC code).",
		Buckets: OperationBuckets,
	}, []string{"operation", "result"})
	reg.MustRegister(h)
	return timed(func(method string, code codes.Code, d time.Duration) {
		h.WithLabelValues(shortMethod(method), code.String()).Observe(d.Seconds())
	})
}

func timed(observe func(method string, code codes.Code, d time.Duration)) grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		observe(info.FullMethod, status.Code(err), time.Since(start))
		return resp, err
	})
}

// shortMethod is "CreateVolume" of "/nvmeof.agent.v1.Agent/CreateVolume".
func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}
