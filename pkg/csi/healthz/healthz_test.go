package healthz

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/identity"
)

// prober answers Probe with ready, or err, or blocks until the call's context ends.
type prober struct {
	ready *wrapperspb.BoolValue
	err   error
	block bool
}

func (p prober) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if p.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if p.err != nil {
		return nil, p.err
	}
	return &csi.ProbeResponse{Ready: p.ready}, nil
}

func TestHandler(t *testing.T) {
	for _, tc := range []struct {
		name     string
		probe    Prober
		method   string
		path     string
		wantCode int
		wantBody string
	}{
		{"ready", prober{ready: wrapperspb.Bool(true)}, http.MethodGet, Path, http.StatusOK, "ok"},
		{"ready unset means ready (CSI spec)", prober{}, http.MethodGet, Path, http.StatusOK, "ok"},
		{"HEAD as GET", prober{ready: wrapperspb.Bool(true)}, http.MethodHead, Path, http.StatusOK, ""},
		{"not ready", prober{ready: wrapperspb.Bool(false)}, http.MethodGet, Path, http.StatusServiceUnavailable, "not ready"},
		{"Probe fails", prober{err: errors.New("agent unreachable")}, http.MethodGet, Path, http.StatusServiceUnavailable, "agent unreachable"},
		{"Probe times out", prober{block: true}, http.MethodGet, Path, http.StatusServiceUnavailable, "deadline exceeded"},
		{"other methods", prober{ready: wrapperspb.Bool(true)}, http.MethodPost, Path, http.StatusMethodNotAllowed, ""},
		{"other paths", prober{ready: wrapperspb.Bool(true)}, http.MethodGet, "/metrics", http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(tc.probe, 50*time.Millisecond).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Errorf("status %d, want %d (body %q)", rec.Code, tc.wantCode, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body %q, want it to contain %q", rec.Body.String(), tc.wantBody)
			}
		})
	}
}

// The identity service as it is wired: node-only mode is always ready, a failing readiness
// check is 503.
func TestHandlerAsksTheIdentityService(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts identity.Options
		want int
	}{
		{"node mode", identity.Options{}, http.StatusOK},
		{"controller with no agent answering", identity.Options{Controller: true, Ready: func(context.Context) error {
			return errors.New("no storage node answers")
		}}, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(identity.New(tc.opts), time.Second).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

// Serve on a real listener answers until its context ends, then returns nil and closes the
// listener.
func TestServeListenerStopsWithItsContext(t *testing.T) {
	before := runtime.NumGoroutine()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- ServeListener(ctx, l, prober{ready: wrapperspb.Bool(false)}, time.Second) }()

	client := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + l.Addr().String() + Path
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not ready") {
		t.Errorf("GET %s = %d %q, want 503 not ready", url, resp.StatusCode, body)
	}
	client.CloseIdleConnections()

	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("ServeListener = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return after cancel")
	}
	if _, err := client.Get(url); err == nil {
		t.Error("still serving after ServeListener returned")
	}
	// Nothing of ServeListener's outlives it.
	client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after ServeListener returned, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeReportsAnAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Serve(ctx, l.Addr().String(), prober{}, time.Second); err == nil {
		t.Error("Serve on a taken address returned nil")
	}
}
