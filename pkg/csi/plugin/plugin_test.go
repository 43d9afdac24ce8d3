package plugin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	reg := func(o Options) Options {
		o.RegistrationDir = "/registration"
		o.KubeletRegistrationPath = "/var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock"
		return o
	}
	node := Options{Mode: ModeNode, Endpoint: "unix:///csi/csi.sock"}
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string // "" means valid
	}{
		{"node without the built-in features", node, ""},
		{"unknown mode", Options{Mode: "both"}, "mode"},
		{"registration in node mode", reg(node), ""},
		{"registration in all mode", reg(Options{Mode: ModeAll, Endpoint: "unix:///csi/csi.sock"}), ""},
		{"registration in controller mode", reg(Options{Mode: ModeController, Endpoint: "unix:///csi/csi.sock"}), "--registration-dir"},
		{"registration directory without the path", Options{Mode: ModeNode, Endpoint: "unix:///csi/csi.sock", RegistrationDir: "/registration"}, "--kubelet-registration-path"},
		{"registration path without the directory", Options{Mode: ModeNode, Endpoint: "unix:///csi/csi.sock", KubeletRegistrationPath: "/var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock"}, "--registration-dir"},
		{"registration path that is a URL", Options{Mode: ModeNode, Endpoint: "unix:///csi/csi.sock", RegistrationDir: "/registration", KubeletRegistrationPath: "unix:///var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock"}, "absolute path"},
		{"registration with a TCP endpoint", reg(Options{Mode: ModeNode, Endpoint: "tcp://127.0.0.1:10000"}), "unix sockets only"},
		{"healthz in controller mode", Options{Mode: ModeController, HealthzAddress: ":9808"}, ""},
		{"healthz on a host and port", Options{Mode: ModeNode, HealthzAddress: "127.0.0.1:9818"}, ""},
		{"healthz without a port", Options{Mode: ModeNode, HealthzAddress: "9818"}, "--healthz-address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate = %v, want an error about %s", err, tc.wantErr)
			}
		})
	}
}

func TestRunRejectsRegistrationInControllerModeBeforeAnyIO(t *testing.T) {
	dir := t.TempDir()
	err := Run(context.Background(), Options{
		Mode:                    ModeController,
		Endpoint:                "unix://" + filepath.Join(dir, "csi.sock"),
		StorageNodes:            filepath.Join(dir, "missing.yaml"),
		RegistrationDir:         dir,
		KubeletRegistrationPath: "/var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock",
	})
	if err == nil || !strings.Contains(err.Error(), "registration") {
		t.Fatalf("Run = %v, want the registration error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Run left %v in %s", entries, dir)
	}
}

// A controller whose only agent is unreachable is not ready: the built-in /healthz says 503,
// from the identity service's Probe, bounded by the probe timeout.
func TestRunServesHealthzFromTheIdentityProbe(t *testing.T) {
	dir, err := os.MkdirTemp("", "plugin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	nodes := filepath.Join(dir, "storage-nodes.yaml")
	cfg := "storageNodes:\n- name: s1\n  address: unix://" + filepath.Join(dir, "no-agent.sock") + "\n"
	if err := os.WriteFile(nodes, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddress(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		result <- Run(ctx, Options{
			Mode:           ModeController,
			Endpoint:       "unix://" + filepath.Join(dir, "csi.sock"),
			StorageNodes:   nodes,
			AgentTimeout:   time.Second,
			ProbeTimeout:   200 * time.Millisecond,
			HealthzAddress: addr,
		})
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for resp == nil {
		resp, err = client.Get("http://" + addr + "/healthz")
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("/healthz never answered: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d %q, want 503", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// freeAddress returns a 127.0.0.1 address with a port nobody listened on a moment ago.
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestRunAll(t *testing.T) {
	untilDone := func(ctx context.Context) error { <-ctx.Done(); return nil }
	boom := errors.New("boom")

	t.Run("a failing task stops the others and is the result", func(t *testing.T) {
		stopped := make(chan struct{})
		err := runAll(context.Background(), []task{
			{"server", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }},
			{"registration", func(context.Context) error { return boom }},
		})
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "registration") {
			t.Errorf("runAll = %v, want boom from registration", err)
		}
		select {
		case <-stopped:
		default:
			t.Error("the other task was not stopped and waited for")
		}
	})
	t.Run("a task that stops on its own is an error", func(t *testing.T) {
		err := runAll(context.Background(), []task{
			{"server", untilDone},
			{"healthz", func(context.Context) error { return nil }},
		})
		if err == nil || !strings.Contains(err.Error(), "healthz stopped") {
			t.Errorf("runAll = %v, want healthz stopped", err)
		}
	})
	t.Run("the end of ctx is a clean stop", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := runAll(ctx, []task{{"server", untilDone}, {"healthz", untilDone}}); err != nil {
			t.Errorf("runAll = %v, want nil", err)
		}
	})
}
