package mtls_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls/mtlstest"
)

// handshake runs a TLS handshake over a pipe and returns the server's and client's errors.
func handshake(t *testing.T, server, client *tls.Config) (error, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srvErr := make(chan error, 1)
	go func() {
		c := tls.Server(a, server)
		srvErr <- c.Handshake()
		c.Close()
	}()
	c := tls.Client(b, client)
	cliErr := c.Handshake()
	if cliErr == nil {
		// TLS 1.3 reports a rejected client certificate on the first read.
		_, cliErr = c.Read(make([]byte, 1))
		if cliErr != nil && strings.Contains(cliErr.Error(), "EOF") {
			cliErr = nil
		}
	}
	c.Close()
	return <-srvErr, cliErr
}

func TestMutualTLSAcceptsOnlyClientsOfTheCA(t *testing.T) {
	ca := mtlstest.NewCA(t, "ops")
	srv, err := mtls.Server(ca.Issue(t, "agent.example"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := mtls.Client(ca.Issue(t, "controller"), "agent.example")
	if err != nil {
		t.Fatal(err)
	}
	if s, c := handshake(t, srv, good); s != nil || c != nil {
		t.Fatalf("client of the CA refused: server %v, client %v", s, c)
	}

	rogue := mtlstest.NewCA(t, "rogue")
	bad, err := mtls.Client(rogue.Issue(t, "intruder"), "agent.example")
	if err != nil {
		t.Fatal(err)
	}
	bad.RootCAs = good.RootCAs // it trusts the server; only its own certificate is foreign
	if s, _ := handshake(t, srv, bad); s == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}

	none := good.Clone()
	none.Certificates = nil
	if s, _ := handshake(t, srv, none); s == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestFilesMustBeComplete(t *testing.T) {
	if _, err := mtls.Server(mtls.Files{Cert: "x"}); err == nil {
		t.Fatal("incomplete files accepted")
	}
}
