package grpcserver

import (
	"context"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// requestCounter numbers the calls of this process, so the lines of one call can be found.
var requestCounter atomic.Uint64

// MaxCallTime bounds every call a server of this project answers: a caller that set no
// deadline, or a later one, gets this one, so that no handler waits without a bound on a lock,
// the kernel or another process. Work that must outlive its call (a format, an unmount) keeps
// its locks until it ends (pkg/keylock), and a retry finds it in progress.
const MaxCallTime = 5 * time.Minute

// Interceptors returns the unary interceptor chain, outermost first: logging, then panic
// recovery (so that a recovered panic is logged like any other error), then the bound of
// MaxCallTime.
func Interceptors() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{logCalls, recoverPanics, boundCalls}
}

// StreamInterceptors returns the stream interceptor chain, outermost first: logging, then
// panic recovery. Streams (block maps, snapshot metadata) get no MaxCallTime: a long listing
// is bounded by its consumer, which ends the stream by going away, and by the handlers' own
// bounds on the processes they read.
func StreamInterceptors() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{logStreams, recoverStreamPanics}
}

// contextStream is a server stream whose Context is replaced (to carry the call's logger).
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s contextStream) Context() context.Context { return s.ctx }

// logStreams gives each stream the logger logCalls gives a unary call, logs its start at V(4)
// with the first request it receives, and logs every error.
func logStreams(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := strconv.FormatUint(requestCounter.Add(1), 10)
	logger := klog.LoggerWithValues(klog.FromContext(ss.Context()), "method", info.FullMethod, "requestID", id)
	ctx := klog.NewContext(ss.Context(), logger)
	logger.V(4).Info("Stream started")
	err := handler(srv, &loggedStream{contextStream{ss, ctx}, logger})
	if err != nil {
		logger.Error(err, "Stream failed", "code", status.Code(err).String())
		return err
	}
	logger.V(4).Info("Stream ended")
	return nil
}

// loggedStream logs the requests a stream receives at V(4), secrets stripped.
type loggedStream struct {
	contextStream
	logger klog.Logger
}

func (s *loggedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.logger.V(4).Info("Request", "request", loggable(m))
	}
	return err
}

// recoverStreamPanics is recoverPanics for streams.
func recoverStreamPanics(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ss.Context()).Error(nil, "Stream handler panicked", "panic", r, "stack", string(debug.Stack()))
			err = rpcerr.Status(fmt.Errorf("internal error: handler panicked: %v", r))
		}
	}()
	return handler(srv, ss)
}

// logCalls gives each call a contextual logger carrying the method and a request ID (handlers
// get it with klog.FromContext), logs the request and response at V(4) with CSI secrets
// stripped, and logs every error.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := strconv.FormatUint(requestCounter.Add(1), 10)
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "method", info.FullMethod, "requestID", id)
	ctx = klog.NewContext(ctx, logger)

	logger.V(4).Info("Request", "request", loggable(req))
	resp, err := handler(ctx, req)
	if err != nil {
		logger.Error(err, "Call failed", "code", status.Code(err).String())
		return nil, err
	}
	logger.V(4).Info("Response", "response", loggable(resp))
	return resp, nil
}

// boundCalls gives a call MaxCallTime when its caller set no earlier deadline.
func boundCalls(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > MaxCallTime {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, MaxCallTime)
		defer cancel()
	}
	return handler(ctx, req)
}

// recoverPanics turns a panic in a handler into codes.Internal (an error of no class),
// logging the stack.
func recoverPanics(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ctx).Error(nil, "Handler panicked", "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, rpcerr.Status(fmt.Errorf("internal error: handler panicked: %v", r))
		}
	}()
	return handler(ctx, req)
}
