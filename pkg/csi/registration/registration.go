// Package registration registers the CSI node plugin with the kubelet, in-process: it serves
// the kubelet's plugin-registration API on a socket in the directory the kubelet watches
// (/var/lib/kubelet/plugins_registry), as the node-driver-registrar sidecar does. It is for
// clusters where that sidecar is unavailable; the production manifests use the sidecar.
package registration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/registration/registrationapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/grpcserver"
)

// What GetInfo reports: a CSI plugin speaking version 1.0.0 of the kubelet's CSI plugin
// protocol (the only one the kubelet knows).
const (
	PluginType       = "CSIPlugin"
	SupportedVersion = "1.0.0"
)

// Options configure the registration service.
type Options struct {
	// Dir is the directory the kubelet watches for registration sockets, as mounted in this
	// container. It must exist: it is the kubelet's, not ours to create.
	Dir string
	// DriverName is the CSI driver name the kubelet registers.
	DriverName string
	// Endpoint is the path of the CSI socket as the kubelet (on the host) sees it, e.g.
	// /var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock.
	Endpoint string
}

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("registration: no registration directory")
	case o.DriverName == "":
		return errors.New("registration: no driver name")
	case !filepath.IsAbs(o.Endpoint):
		return fmt.Errorf("registration: kubelet registration path %q: want the absolute path of the CSI socket on the host, e.g. /var/lib/kubelet/plugins/%s/csi.sock", o.Endpoint, o.DriverName)
	}
	return nil
}

// SocketPath is where the registration socket of driver goes in dir: <dir>/<driver>-reg.sock,
// the name node-driver-registrar uses.
func SocketPath(dir, driver string) string {
	return filepath.Join(dir, driver+"-reg.sock")
}

// ErrRegistrationFailed is returned by Serve when the kubelet reports that it could not
// register the plugin.
var ErrRegistrationFailed = errors.New("the kubelet failed to register the plugin")

// Serve serves the registration service on SocketPath(o.Dir, o.DriverName) until ctx ends
// (then it returns nil) or the kubelet reports a failed registration (then it returns an error
// wrapping ErrRegistrationFailed, so that the process exits and the container restarts to try
// again, as node-driver-registrar does). A stale socket left by an earlier run is replaced;
// the socket is removed when serving ends.
func Serve(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if fi, err := os.Stat(o.Dir); err != nil {
		return fmt.Errorf("registration directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("registration directory %s is not a directory", o.Dir)
	}
	path := SocketPath(o.Dir, o.DriverName)
	// grpcserver.Listen replaces a stale socket and refuses to delete anything else.
	l, err := grpcserver.Listen("unix://" + path)
	if err != nil {
		return fmt.Errorf("registration socket: %w", err)
	}
	defer func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			klog.FromContext(ctx).Error(err, "Could not remove the registration socket", "path", path)
		}
	}()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	svc := &service{opts: o, failed: cancel}
	klog.FromContext(ctx).Info("Serving kubelet plugin registration", "socket", path, "driver", o.DriverName, "endpoint", o.Endpoint)
	err = grpcserver.ServeListener(ctx, l, func(s *grpc.Server) { registrationapi.RegisterRegistrationServer(s, svc) })
	if cause := context.Cause(ctx); errors.Is(cause, ErrRegistrationFailed) {
		return cause
	}
	return err
}

// service implements registrationapi.RegistrationServer.
type service struct {
	registrationapi.UnimplementedRegistrationServer
	opts Options
	// failed ends Serve with the kubelet's error.
	failed func(error)
}

// GetInfo tells the kubelet which CSI driver this is and where its CSI socket is.
func (s *service) GetInfo(context.Context, *registrationapi.InfoRequest) (*registrationapi.PluginInfo, error) {
	return &registrationapi.PluginInfo{
		Type:              PluginType,
		Name:              s.opts.DriverName,
		Endpoint:          s.opts.Endpoint,
		SupportedVersions: []string{SupportedVersion},
	}, nil
}

// NotifyRegistrationStatus receives the outcome of the kubelet's registration. A failure ends
// Serve (after this answer is sent: the server stops gracefully).
func (s *service) NotifyRegistrationStatus(ctx context.Context, st *registrationapi.RegistrationStatus) (*registrationapi.RegistrationStatusResponse, error) {
	logger := klog.FromContext(ctx)
	if !st.GetPluginRegistered() {
		err := fmt.Errorf("%w: %s", ErrRegistrationFailed, st.GetError())
		logger.Error(err, "Registration with the kubelet failed; stopping so that the container restarts", "driver", s.opts.DriverName)
		s.failed(err)
		return &registrationapi.RegistrationStatusResponse{}, nil
	}
	logger.Info("Registered with the kubelet", "driver", s.opts.DriverName, "endpoint", s.opts.Endpoint)
	return &registrationapi.RegistrationStatusResponse{}, nil
}
