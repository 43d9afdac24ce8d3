package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

var requestSeq atomic.Uint64

// Interceptors are the agent API's server options: a request-scoped logger, every failure
// logged, and panics turned into Internal errors instead of a crashed agent.
func Interceptors() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(logCalls)}
}

func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	logger := klog.FromContext(ctx).WithValues("method", info.FullMethod, "request", requestSeq.Add(1))
	ctx = klog.NewContext(ctx, logger)
	defer func() {
		if r := recover(); r != nil {
			logger.Error(nil, "Panic", "value", r, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, fmt.Sprintf("internal error: %v", r))
		}
		if err != nil {
			logger.Error(err, "Call failed")
		} else {
			logger.V(4).Info("Call succeeded")
		}
	}()
	logger.V(4).Info("Call", "req", req)
	return handler(ctx, req)
}
