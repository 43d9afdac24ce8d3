// Package grpcserver serves the project's gRPC services (the CSI endpoints and the agent API)
// over a unix socket or a TCP address, with one interceptor chain: a request-scoped contextual
// logger, requests and responses logged with secrets stripped, every error logged, panics turned
// into codes.Internal.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// GracePeriod bounds how long Serve waits for in-flight calls after its context ends before it
// cuts them off.
const GracePeriod = 10 * time.Second

// Endpoint is a parsed CSI endpoint.
type Endpoint struct {
	// Network is "unix" or "tcp".
	Network string
	// Address is the socket path or host:port.
	Address string
}

// ParseEndpoint parses "unix:///path/to/socket" or "tcp://host:port".
func ParseEndpoint(endpoint string) (Endpoint, error) {
	switch {
	case strings.HasPrefix(endpoint, "unix://"):
		path := strings.TrimPrefix(endpoint, "unix://")
		if !filepath.IsAbs(path) {
			return Endpoint{}, fmt.Errorf("endpoint %q: want unix:///absolute/path", endpoint)
		}
		return Endpoint{Network: "unix", Address: filepath.Clean(path)}, nil
	case strings.HasPrefix(endpoint, "tcp://"):
		hostPort := strings.TrimPrefix(endpoint, "tcp://")
		if _, _, err := net.SplitHostPort(hostPort); err != nil {
			return Endpoint{}, fmt.Errorf("endpoint %q: want tcp://host:port: %w", endpoint, err)
		}
		return Endpoint{Network: "tcp", Address: hostPort}, nil
	default:
		return Endpoint{}, fmt.Errorf("endpoint %q: want unix:///path or tcp://host:port", endpoint)
	}
}

// Listen opens the endpoint. A stale unix socket left by an earlier run is removed first (any
// other kind of file at that path is an error: it is not ours to delete), and the new socket is
// made 0660 so only the owner and group (the CSI sidecars) can reach it.
func Listen(endpoint string) (net.Listener, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if ep.Network == "unix" {
		if err := removeStaleSocket(ep.Address); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(ep.Address), 0o750); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen(ep.Network, ep.Address)
	if err != nil {
		return nil, err
	}
	if ep.Network == "unix" {
		if err := os.Chmod(ep.Address, 0o660); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("%s exists and is not a socket; refusing to remove it", path)
	}
	return os.Remove(path)
}

// NewGRPCServer returns a gRPC server with the interceptor chains installed.
func NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(Interceptors()...),
		grpc.ChainStreamInterceptor(StreamInterceptors()...),
	}, opts...)
	return grpc.NewServer(opts...)
}

// Serve listens on endpoint, lets register add the services, and serves until ctx ends, then
// stops gracefully (in-flight calls get GracePeriod to finish). It returns nil after a stop
// caused by ctx, or the error that ended serving.
func Serve(ctx context.Context, endpoint string, register func(*grpc.Server)) error {
	l, err := Listen(endpoint)
	if err != nil {
		return err
	}
	return ServeListener(ctx, l, register)
}

// ServeListener is Serve on an open listener (closed when serving ends); opts are added to the
// server's (e.g. transport credentials).
func ServeListener(ctx context.Context, l net.Listener, register func(*grpc.Server), opts ...grpc.ServerOption) error {
	srv := NewGRPCServer(opts...)
	register(srv)
	logger := klog.FromContext(ctx)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		logger.Info("Stopping the gRPC server", "address", l.Addr().String())
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(GracePeriod):
			logger.Info("In-flight calls did not finish in time; stopping hard", "gracePeriod", GracePeriod)
			srv.Stop()
			<-done
		}
	}()

	logger.Info("Serving gRPC", "network", l.Addr().Network(), "address", l.Addr().String())
	err := srv.Serve(l)
	if ctx.Err() != nil {
		// Stopped because ctx ended: a clean shutdown.
		<-stopped
		return nil
	}
	cancel()
	<-stopped
	return err
}
