package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls/mtlstest"
)

// infoOver calls Info. Only the first, accepted call waits for the server; the refused ones
// come after it, so they cannot pass merely because the server was not up yet.
func infoOver(t *testing.T, target string, creds credentials.TransportCredentials, wait bool) error {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = agentapi.NewAgentClient(conn).Info(ctx, &agentapi.InfoRequest{}, grpc.WaitForReady(wait))
	return err
}

func TestServeRequiresClientCertificatesOnTCP(t *testing.T) {
	e := newEnv(t)
	ca := mtlstest.NewCA(t, "ops")
	cfg := testConfig()
	cfg.Listen = "tcp://127.0.0.1:39517"
	cfg.TLS = ca.Issue(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, e.srv) }()
	t.Cleanup(func() { cancel(); <-done })

	good, err := mtls.Client(ca.Issue(t, "controller"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := infoOver(t, "127.0.0.1:39517", credentials.NewTLS(good), true); err != nil {
		t.Fatalf("client of the CA refused: %v", err)
	}
	rogue, _ := mtls.Client(mtlstest.NewCA(t, "rogue").Issue(t, "x"), "127.0.0.1")
	rogue.RootCAs = good.RootCAs
	if err := infoOver(t, "127.0.0.1:39517", credentials.NewTLS(rogue), false); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	noCert := good.Clone()
	noCert.Certificates = nil
	if err := infoOver(t, "127.0.0.1:39517", credentials.NewTLS(noCert), false); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	if err := infoOver(t, "127.0.0.1:39517", insecure.NewCredentials(), false); err == nil {
		t.Fatal("a plaintext client was accepted")
	}
}

func TestServeRefusesTCPWithoutTLS(t *testing.T) {
	cfg := testConfig()
	cfg.Listen = "tcp://127.0.0.1:0"
	if err := Serve(context.Background(), cfg, New(cfg, nil, nil)); err == nil {
		t.Fatal("served plaintext on TCP")
	}
}

func TestServeOnUnixSocket(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cfg.Listen = "unix://" + sock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, e.srv) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := infoOver(t, "unix://"+sock, insecure.NewCredentials(), true); err != nil {
		t.Fatal(err)
	}
}
