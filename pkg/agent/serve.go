package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
)

// Serve answers the agent API on cfg.Listen until ctx ends: plaintext on a unix socket, mTLS
// on TCP (a client certificate signed by cfg.TLS.CA is required). opts add interceptors.
func Serve(ctx context.Context, cfg Config, srv agentapi.AgentServer, opts ...grpc.ServerOption) error {
	lis, creds, err := listen(cfg)
	if err != nil {
		return err
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	g := grpc.NewServer(opts...)
	agentapi.RegisterAgentServer(g, srv)
	go func() {
		<-ctx.Done()
		g.GracefulStop()
	}()
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func listen(cfg Config) (net.Listener, credentials.TransportCredentials, error) {
	if path, ok := strings.CutPrefix(cfg.Listen, "unix://"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, nil, err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("removing stale socket: %w", err)
		}
		lis, err := net.Listen("unix", path)
		if err != nil {
			return nil, nil, err
		}
		return lis, nil, os.Chmod(path, 0o600)
	}
	addr, ok := strings.CutPrefix(cfg.Listen, "tcp://")
	if !ok {
		return nil, nil, fmt.Errorf("listen %q: want unix:// or tcp://", cfg.Listen)
	}
	tlsCfg, err := mtls.Server(cfg.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("tcp listener needs mTLS: %w", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	return lis, credentials.NewTLS(tlsCfg), nil
}
