package grpcserver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// panicky is an identity service whose Probe panics.
type panicky struct {
	csi.UnimplementedIdentityServer
}

func (panicky) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: "test.csi.io", VendorVersion: "v0"}, nil
}

func (panicky) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	panic("boom")
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]Endpoint{
		"unix:///csi/csi.sock":  {"unix", "/csi/csi.sock"},
		"unix:///a/../csi.sock": {"unix", "/csi.sock"},
		"tcp://127.0.0.1:10000": {"tcp", "127.0.0.1:10000"},
		"tcp://[::1]:10000":     {"tcp", "[::1]:10000"},
	} {
		got, err := ParseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/csi/csi.sock", "unix://relative.sock", "tcp://nohost", "http://x:1"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
}

// serve starts Serve on endpoint and returns a client connection and a stop function that
// cancels the context and returns Serve's result.
func serve(t *testing.T, endpoint string) (*grpc.ClientConn, func() error) {
	t.Helper()
	l, err := Listen(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		result <- ServeListener(ctx, l, func(s *grpc.Server) { csi.RegisterIdentityServer(s, panicky{}) })
	}()
	target := "passthrough:///" + l.Addr().String()
	if l.Addr().Network() == "unix" {
		target = "unix://" + l.Addr().String()
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var once bool
	stop := func() error {
		if once {
			return nil
		}
		once = true
		cancel()
		return <-result
	}
	t.Cleanup(func() { _ = stop() })
	return conn, stop
}

func TestServeUnixSocketReplacesStaleSocketAndStopsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "csi.sock")
	// A socket file left behind by a crashed run.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()

	conn, stop := serve(t, "unix://"+path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode = %o, want 660", perm)
	}
	resp, err := csi.NewIdentityClient(conn).GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
	if err != nil || resp.GetName() != "test.csi.io" {
		t.Fatalf("GetPluginInfo = %v, %v", resp, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still present after stop: %v", err)
	}
}

func TestListenRefusesToRemoveARegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "csi.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + path); err == nil {
		t.Fatal("Listen removed a regular file")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("regular file gone: %v", err)
	}
}

func TestServeTCPRecoversPanicsAsInternal(t *testing.T) {
	conn, stop := serve(t, "tcp://127.0.0.1:0")
	_, err := csi.NewIdentityClient(conn).Probe(context.Background(), &csi.ProbeRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("Probe of a panicking handler = %v, want Internal", err)
	}
	// The server survived the panic.
	if _, err := csi.NewIdentityClient(conn).GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{}); err != nil {
		t.Fatalf("GetPluginInfo after a panic: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
