package registration

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/registration/registrationapi"
)

const (
	driver   = "nvmeof.csi.io"
	endpoint = "/var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock"
	// The methods the kubelet calls, spelled out: the wire contract, not our generated names.
	getInfoMethod = "/pluginregistration.Registration/GetInfo"
	notifyMethod  = "/pluginregistration.Registration/NotifyRegistrationStatus"
	// bound is how long anything in these tests may take.
	bound = 10 * time.Second
)

// registrationDir is a short directory for sockets (a unix socket path has at most 107 bytes,
// which t.TempDir under a long test name can exceed).
func registrationDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "reg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// running is a Serve in progress.
type running struct {
	cancel context.CancelFunc
	result chan error
}

// start runs Serve in the background; stop (also at cleanup) ends it.
func start(t *testing.T, o Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, result: make(chan error, 1)}
	go func() { r.result <- Serve(ctx, o) }()
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

// stop cancels Serve and returns its result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// wait returns Serve's result; it must come within bound.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.result:
		r.result <- err // for stop at cleanup
		return err
	case <-time.After(bound):
		t.Fatal("Serve did not return")
		return nil
	}
}

// kubelet is a fake kubelet's connection to a registration socket.
type kubelet struct{ conn *grpc.ClientConn }

// dialKubelet waits until the socket accepts connections (a stale socket refuses them) and
// connects as the kubelet does.
func dialKubelet(t *testing.T, socket string) *kubelet {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		c, err := net.Dial("unix", socket)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration socket %s never accepted a connection: %v", socket, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &kubelet{conn: conn}
}

func (k *kubelet) getInfo(t *testing.T) *registrationapi.PluginInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	info := &registrationapi.PluginInfo{}
	if err := k.conn.Invoke(ctx, getInfoMethod, &registrationapi.InfoRequest{}, info); err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	return info
}

func (k *kubelet) notify(t *testing.T, registered bool, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	req := &registrationapi.RegistrationStatus{PluginRegistered: registered, Error: msg}
	if err := k.conn.Invoke(ctx, notifyMethod, req, &registrationapi.RegistrationStatusResponse{}); err != nil {
		t.Fatalf("NotifyRegistrationStatus: %v", err)
	}
}

func assertGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Serve returned (%v)", path, err)
	}
}

func TestSocketPathIsTheRegistrarName(t *testing.T) {
	if got, want := SocketPath("/registration", driver), "/registration/nvmeof.csi.io-reg.sock"; got != want {
		t.Errorf("SocketPath = %s, want %s", got, want)
	}
}

func TestGetInfoAnswersWhatTheKubeletNeeds(t *testing.T) {
	dir := registrationDir(t)
	start(t, Options{Dir: dir, DriverName: driver, Endpoint: endpoint})
	info := dialKubelet(t, SocketPath(dir, driver)).getInfo(t)
	if info.GetType() != "CSIPlugin" {
		t.Errorf("type = %q, want CSIPlugin", info.GetType())
	}
	if info.GetName() != driver {
		t.Errorf("name = %q, want %s", info.GetName(), driver)
	}
	if info.GetEndpoint() != endpoint {
		t.Errorf("endpoint = %q, want %s", info.GetEndpoint(), endpoint)
	}
	if !slices.Equal(info.GetSupportedVersions(), []string{"1.0.0"}) {
		t.Errorf("supported versions = %q, want [1.0.0]", info.GetSupportedVersions())
	}
}

func TestSuccessfulRegistrationKeepsServingUntilCancelled(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := registrationDir(t)
	r := start(t, Options{Dir: dir, DriverName: driver, Endpoint: endpoint})
	socket := SocketPath(dir, driver)
	k := dialKubelet(t, socket)
	k.getInfo(t)
	k.notify(t, true, "")

	select {
	case err := <-r.result:
		t.Fatalf("Serve returned %v after a successful registration", err)
	case <-time.After(200 * time.Millisecond):
	}
	k.getInfo(t) // still answering

	if err := r.stop(t); err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	assertGone(t, socket)

	// Nothing of Serve's outlives it (the fake kubelet's connection is closed first).
	_ = k.conn.Close()
	deadline := time.Now().Add(bound)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Serve returned, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailedRegistrationEndsServeWithTheKubeletsError(t *testing.T) {
	dir := registrationDir(t)
	r := start(t, Options{Dir: dir, DriverName: driver, Endpoint: endpoint})
	socket := SocketPath(dir, driver)
	k := dialKubelet(t, socket)
	k.getInfo(t)
	k.notify(t, false, "driver name nvmeof.csi.io already registered")

	err := r.wait(t)
	if !errors.Is(err, ErrRegistrationFailed) || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("Serve = %v, want ErrRegistrationFailed with the kubelet's message", err)
	}
	assertGone(t, socket)
}

func TestStaleSocketIsReplaced(t *testing.T) {
	dir := registrationDir(t)
	socket := SocketPath(dir, driver)
	// A socket file nobody listens on, as a killed plugin leaves it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	_ = l.Close()
	if _, err := net.Dial("unix", socket); err == nil {
		t.Fatal("the stale socket accepts connections")
	}

	r := start(t, Options{Dir: dir, DriverName: driver, Endpoint: endpoint})
	if got := dialKubelet(t, socket).getInfo(t).GetName(); got != driver {
		t.Errorf("GetInfo name = %q", got)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	assertGone(t, socket)
}

func TestServeRefusesWhatItMustNotTouch(t *testing.T) {
	t.Run("a file that is not a socket at the socket path is left alone", func(t *testing.T) {
		dir := registrationDir(t)
		socket := SocketPath(dir, driver)
		if err := os.WriteFile(socket, []byte("not ours"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Serve(context.Background(), Options{Dir: dir, DriverName: driver, Endpoint: endpoint}); err == nil {
			t.Fatal("Serve replaced a regular file")
		}
		if b, err := os.ReadFile(socket); err != nil || string(b) != "not ours" {
			t.Errorf("the file was touched: %q, %v", b, err)
		}
	})
	t.Run("a missing registration directory is not created", func(t *testing.T) {
		dir := filepath.Join(registrationDir(t), "plugins_registry")
		if err := Serve(context.Background(), Options{Dir: dir, DriverName: driver, Endpoint: endpoint}); err == nil {
			t.Fatal("Serve accepted a missing registration directory")
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Serve created %s (%v)", dir, err)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"complete", Options{Dir: "/registration", DriverName: driver, Endpoint: endpoint}, true},
		{"no directory", Options{DriverName: driver, Endpoint: endpoint}, false},
		{"no driver name", Options{Dir: "/registration", Endpoint: endpoint}, false},
		{"no endpoint", Options{Dir: "/registration", DriverName: driver}, false},
		{"relative endpoint", Options{Dir: "/registration", DriverName: driver, Endpoint: "csi.sock"}, false},
		{"endpoint URL instead of a path", Options{Dir: "/registration", DriverName: driver, Endpoint: "unix://" + endpoint}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
