package agent

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/grpcserver"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
)

// Serve answers the agent API on cfg.Listen until ctx ends: plaintext on a unix socket, mTLS
// on TCP (a client certificate signed by cfg.TLS.CA is required). It shares the listener,
// interceptor chain and graceful stop of the CSI endpoints.
func Serve(ctx context.Context, cfg Config, srv agentapi.AgentServer, extra ...grpc.ServerOption) error {
	opts := extra
	if strings.HasPrefix(cfg.Listen, "tcp://") {
		tlsCfg, err := mtls.Server(cfg.TLS)
		if err != nil {
			return fmt.Errorf("a tcp listener needs mTLS: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	} else if !strings.HasPrefix(cfg.Listen, "unix://") {
		return fmt.Errorf("listen %q: want unix:// or tcp://", cfg.Listen)
	}
	lis, err := grpcserver.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	return grpcserver.ServeListener(ctx, lis, func(g *grpc.Server) { agentapi.RegisterAgentServer(g, srv) }, opts...)
}
