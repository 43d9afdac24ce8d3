// Package healthz serves the plugin's liveness endpoint in-process: GET /healthz asks the CSI
// identity service's Probe, as the livenessprobe sidecar does over the CSI socket. It is for
// clusters where that sidecar is unavailable; the production manifests use the sidecar.
package healthz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
)

// Path is the liveness endpoint.
const Path = "/healthz"

// Bounds of the HTTP server. A probe answers within its own timeout; writing may take that
// long plus a margin.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
	writeMargin       = 5 * time.Second
	// shutdownTimeout bounds how long in-flight probes may finish after ctx ends.
	shutdownTimeout = 5 * time.Second
)

// Prober is the part of the CSI identity service the endpoint asks.
type Prober interface {
	Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error)
}

// Handler answers GET (and HEAD) /healthz: 200 "ok" when probe reports ready within timeout
// (0: agentclient.DefaultProbeTimeout), 503 with the reason otherwise (an error from Probe, its
// timeout, or "not ready"; the identity service logs why it is not ready).
func Handler(probe Prober, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		timeout = agentclient.DefaultProbeTimeout
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		logger := klog.FromContext(r.Context())
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := check(ctx, probe); err != nil {
			logger.Error(err, "Health check failed")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err.Error())
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func check(ctx context.Context, probe Prober) error {
	resp, err := probe.Probe(ctx, &csi.ProbeRequest{})
	switch {
	case err != nil:
		return fmt.Errorf("probe failed: %w", err)
	case resp.GetReady() != nil && !resp.GetReady().GetValue():
		// An unset ready field means ready (CSI spec).
		return errors.New("not ready (the plugin's log says why)")
	}
	return nil
}

// Serve listens on address (host:port; ":9818" for every interface) and serves Handler(probe,
// timeout) until ctx ends; then in-flight requests get a few seconds to finish. It returns nil
// after a stop caused by ctx, or the error that ended serving.
func Serve(ctx context.Context, address string, probe Prober, timeout time.Duration) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	return ServeListener(ctx, l, probe, timeout)
}

// ServeListener is Serve on an open listener (closed when serving ends).
func ServeListener(ctx context.Context, l net.Listener, probe Prober, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = agentclient.DefaultProbeTimeout
	}
	logger := klog.FromContext(ctx)
	srv := &http.Server{
		Handler:           Handler(probe, timeout),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      timeout + writeMargin,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// Probes are bounded by their own timeout; shutdown waits for them rather than cutting them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	stopped := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancelShutdown()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			logger.Info("In-flight health checks did not finish in time; closing", "err", err)
			_ = srv.Close()
		}
	}()

	logger.Info("Serving health checks", "address", l.Addr().String(), "path", Path)
	err := srv.Serve(l)
	stoppedByCtx := ctx.Err() != nil
	cancel()
	<-stopped
	if stoppedByCtx && errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("healthz: %w", err)
}
