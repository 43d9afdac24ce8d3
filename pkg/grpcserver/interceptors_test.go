package grpcserver

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// logBuffer collects the lines of a funcr logger.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// capture returns a context whose contextual logger writes to the returned buffer at V(5).
func capture() (context.Context, *logBuffer) {
	b := &logBuffer{}
	logger := funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 5})
	return klog.NewContext(context.Background(), logger), b
}

// chain runs the interceptors around handler the way grpc.ChainUnaryInterceptor does.
func chain(ctx context.Context, req any, handler grpc.UnaryHandler) (any, error) {
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Controller/CreateVolume"}
	ics := Interceptors()
	h := handler
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], h
		h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
	}
	return h(ctx, req)
}

func TestInterceptorsStripSecretsAndCarryARequestLogger(t *testing.T) {
	ctx, logs := capture()
	req := &csi.CreateVolumeRequest{Name: "pvc-1", Secrets: map[string]string{"password": "hunter2"}}
	var handlerLogger bool
	_, err := chain(ctx, req, func(ctx context.Context, req any) (any, error) {
		klog.FromContext(ctx).Info("inside handler")
		handlerLogger = true
		return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: "s/vol-1"}}, nil
	})
	if err != nil || !handlerLogger {
		t.Fatalf("chain = %v", err)
	}
	out := logs.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("secret leaked into the log:\n%s", out)
	}
	for _, want := range []string{"pvc-1", "***stripped***", "s/vol-1", `"method"="/csi.v1.Controller/CreateVolume"`, `"requestID"`, "inside handler"} {
		if !strings.Contains(out, want) {
			t.Errorf("log misses %q:\n%s", want, out)
		}
	}
	// The handler's own line carries the request's method and ID.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "inside handler") && !strings.Contains(line, `"requestID"`) {
			t.Errorf("handler log line lacks the request ID: %s", line)
		}
	}
}

// Every handler runs with a deadline of at most MaxCallTime; an earlier one of the caller's
// is kept.
func TestInterceptorsBoundEveryCall(t *testing.T) {
	deadline := func(ctx context.Context) time.Duration {
		var got time.Duration
		_, _ = chain(ctx, &csi.ProbeRequest{}, func(ctx context.Context, _ any) (any, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatal("handler ran without a deadline")
			}
			got = time.Until(dl)
			return &csi.ProbeResponse{}, nil
		})
		return got
	}
	if d := deadline(context.Background()); d > MaxCallTime || d < MaxCallTime-time.Minute {
		t.Errorf("no caller deadline: handler got %v, want about %v", d, MaxCallTime)
	}
	late, cancel := context.WithTimeout(context.Background(), 10*MaxCallTime)
	defer cancel()
	if d := deadline(late); d > MaxCallTime {
		t.Errorf("a later caller deadline: handler got %v, want at most %v", d, MaxCallTime)
	}
	early, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if d := deadline(early); d > time.Second {
		t.Errorf("an earlier caller deadline: handler got %v, want at most 1s", d)
	}
}

func TestInterceptorsLogErrorsAndRecoverPanics(t *testing.T) {
	for name, tc := range map[string]struct {
		handler  grpc.UnaryHandler
		wantCode codes.Code
		wantLog  string
	}{
		"error is returned and logged": {
			handler:  func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no such volume") },
			wantCode: codes.NotFound,
			wantLog:  "no such volume",
		},
		"panic becomes Internal": {
			handler:  func(context.Context, any) (any, error) { panic("kaboom") },
			wantCode: codes.Internal,
			wantLog:  "kaboom",
		},
		"plain error passes through as Unknown": {
			handler:  func(context.Context, any) (any, error) { return nil, errors.New("plain") },
			wantCode: codes.Unknown,
			wantLog:  "plain",
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, logs := capture()
			resp, err := chain(ctx, &csi.ProbeRequest{}, tc.handler)
			if resp != nil || status.Code(err) != tc.wantCode {
				t.Fatalf("chain = %v, %v; want code %v", resp, err, tc.wantCode)
			}
			out := logs.String()
			if !strings.Contains(out, "Call failed") || !strings.Contains(out, tc.wantLog) {
				t.Errorf("error not logged:\n%s", out)
			}
		})
	}
}

func TestInterceptorsStripTheAgentAPIsKeys(t *testing.T) {
	ctx, logs := capture()
	req := &agentapi.PublishVolumeRequest{VolumeId: "vol-1", HostNqn: "nqn.2014-08.org.example:h",
		DhchapHostKey: "DHHC-1:00:c2VjcmV0LWhvc3Q=:", DhchapCtrlKey: "DHHC-1:00:c2VjcmV0LWN0cmw=:"}
	if _, err := chain(ctx, req, func(context.Context, any) (any, error) { return &agentapi.PublishVolumeResponse{}, nil }); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Contains(out, "c2VjcmV0") {
		t.Errorf("a DH-HMAC-CHAP key leaked into the log:\n%s", out)
	}
	if !strings.Contains(out, "vol-1") || !strings.Contains(out, "***stripped***") {
		t.Errorf("the request is not logged with its keys stripped:\n%s", out)
	}
	if req.DhchapHostKey == "***stripped***" {
		t.Error("logging changed the request the handler gets")
	}
}

// fakeStream is a server stream that receives one request.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
	req *csi.CreateVolumeRequest
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) RecvMsg(m any) error {
	*m.(*csi.CreateVolumeRequest) = csi.CreateVolumeRequest{Name: s.req.Name, Secrets: s.req.Secrets}
	return nil
}

// chainStream runs the stream interceptors around handler the way grpc.ChainStreamInterceptor
// does.
func chainStream(ss grpc.ServerStream, handler grpc.StreamHandler) error {
	info := &grpc.StreamServerInfo{FullMethod: "/csi.v1.SnapshotMetadata/GetMetadataDelta", IsServerStream: true}
	ics := StreamInterceptors()
	h := handler
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], h
		h = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
	}
	return h(nil, ss)
}

func TestStreamInterceptorsLogStripRecover(t *testing.T) {
	ctx, logs := capture()
	ss := &fakeStream{ctx: ctx, req: &csi.CreateVolumeRequest{Name: "snap-1", Secrets: map[string]string{"token": "hunter2"}}}
	var handlerLogger bool
	err := chainStream(ss, func(_ any, ss grpc.ServerStream) error {
		var req csi.CreateVolumeRequest
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		if req.Secrets["token"] != "hunter2" {
			t.Errorf("the handler got %v, want the secrets untouched", req.Secrets)
		}
		klog.FromContext(ss.Context()).Info("handler line")
		handlerLogger = true
		panic("kaboom")
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("a panicking stream handler returned %v, want Internal", err)
	}
	out := logs.String()
	if !handlerLogger || !strings.Contains(out, `"requestID"`) || !strings.Contains(out, "GetMetadataDelta") {
		t.Errorf("the handler's log lines do not carry the method and request ID:\n%s", out)
	}
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "snap-1") {
		t.Errorf("the received request is not logged with its secrets stripped:\n%s", out)
	}
	if !strings.Contains(out, "Stream failed") || !strings.Contains(out, "kaboom") {
		t.Errorf("the panic is not logged as a failed stream:\n%s", out)
	}
}
