// Package grpctest serves gRPC services in memory for unit tests, through the same server
// (pkg/grpcserver: its interceptors, panic recovery and call bound) that the binaries run, so
// that a test sees what a remote caller would: status codes, not Go errors.
package grpctest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/grpcserver"
)

// Serve registers services on a new server (with opts added, e.g. metrics interceptors)
// listening in memory, and returns a client connection to it; both are closed when the test
// ends.
func Serve(t testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	srv := grpcserver.NewGRPCServer(opts...)
	register(srv)
	go func() { _ = srv.Serve(l) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return conn
}

// Call binds a client method to a request, for tables of calls: Call(c.CreateVolume, ctx,
// req)() makes the call and returns its error.
func Call[Req, Resp any](m func(context.Context, Req, ...grpc.CallOption) (Resp, error), ctx context.Context, req Req) func() error {
	return func() error {
		_, err := m(ctx, req)
		return err
	}
}

// Case is one call of a table and the code it must get. It is an unnamed struct type, so
// that tables in other packages may list cases without field names.
type Case = struct {
	Name string
	Call func() error
	Code codes.Code
}

// Run runs each case as a subtest and fails it unless the call's status code is the case's.
func Run(t *testing.T, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			err := c.Call()
			if got := status.Code(err); got != c.Code {
				t.Errorf("code %v (%v), want %v", got, err, c.Code)
			}
		})
	}
}
