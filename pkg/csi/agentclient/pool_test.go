package agentclient

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls/mtlstest"
)

// infoAgent is a tiny agent that only answers Info.
type infoAgent struct {
	agentapi.UnimplementedAgentServer
	name string
}

func (a infoAgent) Info(context.Context, *agentapi.InfoRequest) (*agentapi.InfoResponse, error) {
	return &agentapi.InfoResponse{NodeName: a.name}, nil
}

// startAgent serves infoAgent on l (with TLS when files are given) until the test ends.
func startAgent(t *testing.T, l net.Listener, name string, files mtls.Files) {
	t.Helper()
	var opts []grpc.ServerOption
	if !files.Empty() {
		tc, err := mtls.Server(files)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	srv := grpc.NewServer(opts...)
	agentapi.RegisterAgentServer(srv, infoAgent{name: name})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
}

func info(t *testing.T, p *Pool, name string) (*agentapi.InfoResponse, error) {
	t.Helper()
	c, err := p.Client(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Info(ctx, &agentapi.InfoRequest{})
}

func TestPoolTalksMTLSToAnAgent(t *testing.T) {
	ca := mtlstest.NewCA(t, "operator")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, l, "storage-1", ca.Issue(t, "127.0.0.1"))

	p, err := NewPool(Config{StorageNodes: []StorageNode{{
		Name: "storage-1", Address: l.Addr().String(), TLS: TLS{Files: ca.Issue(t, "controller")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	resp, err := info(t, p, "storage-1")
	if err != nil || resp.GetNodeName() != "storage-1" {
		t.Fatalf("Info over mTLS = %v, %v", resp, err)
	}
	// The connection is cached.
	if len(p.conns) != 1 {
		t.Errorf("%d connections, want 1", len(p.conns))
	}
	if _, err := info(t, p, "storage-1"); err != nil || len(p.conns) != 1 {
		t.Errorf("second Info = %v with %d connections", err, len(p.conns))
	}
}

func TestPoolRefusesAnAgentFromAnotherCA(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, l, "storage-1", mtlstest.NewCA(t, "rogue").Issue(t, "127.0.0.1"))
	p, err := NewPool(Config{StorageNodes: []StorageNode{{
		Name: "storage-1", Address: l.Addr().String(), TLS: TLS{Files: mtlstest.NewCA(t, "operator").Issue(t, "controller")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if _, err := info(t, p, "storage-1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("Info to an agent with a foreign certificate = %v, want Unavailable", err)
	}
}

func TestPoolPlaintextUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, l, "local", mtls.Files{})
	p, err := NewPool(Config{StorageNodes: []StorageNode{{Name: "local", Address: "unix://" + path}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if resp, err := info(t, p, "local"); err != nil || resp.GetNodeName() != "local" {
		t.Fatalf("Info over a unix socket = %v, %v", resp, err)
	}
}

func TestPoolErrors(t *testing.T) {
	if _, err := NewPool(Config{StorageNodes: []StorageNode{{Name: "s1", Address: "10.0.0.1:9500"}}}); err == nil {
		t.Error("NewPool accepted TCP without TLS")
	}
	missing := mtls.Files{Cert: "/nonexistent/c", Key: "/nonexistent/k", CA: "/nonexistent/ca"}
	if _, err := NewPool(Config{StorageNodes: []StorageNode{{Name: "s1", Address: "10.0.0.1:9500", TLS: TLS{Files: missing}}}}); err == nil {
		t.Error("NewPool accepted unreadable certificates")
	}
	p, err := NewPool(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client("nope"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Client(nope) = %v, want ErrUnknownNode", err)
	}
}

// hangingAgent answers Info only when its caller gives up.
type hangingAgent struct {
	agentapi.UnimplementedAgentServer
}

func (hangingAgent) Info(ctx context.Context, _ *agentapi.InfoRequest) (*agentapi.InfoResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCallTimeoutBoundsEveryCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	agentapi.RegisterAgentServer(srv, hangingAgent{})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	p, err := NewPool(Config{StorageNodes: []StorageNode{{Name: "hung", Address: "unix://" + path}}}, CallTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	c, err := p.Client("hung")
	if err != nil {
		t.Fatal(err)
	}
	// The caller's own context has no deadline: the pool's bound must end the call.
	done := make(chan error, 1)
	go func() {
		_, err := c.Info(context.Background(), &agentapi.InfoRequest{})
		done <- err
	}()
	select {
	case err := <-done:
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Info of a hung agent = %v, want DeadlineExceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a call to a hung agent was not bounded by CallTimeout")
	}
}
