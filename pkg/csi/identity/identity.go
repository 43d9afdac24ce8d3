// Package identity is the CSI identity service of nvmeof-csi: the plugin's name and version,
// its capabilities (which depend on whether this process serves the controller), and a
// readiness probe.
package identity

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// Options configure an identity Server.
type Options struct {
	// Controller says this process serves the controller service.
	Controller bool
	// Ready is the readiness check behind Probe; nil means always ready (node-only mode).
	// For the controller use agentclient.Ready.
	Ready func(ctx context.Context) error
}

// Server implements csi.IdentityServer.
type Server struct {
	csi.UnimplementedIdentityServer
	opts Options
}

var _ csi.IdentityServer = (*Server)(nil)

// New returns an identity server.
func New(o Options) *Server { return &Server{opts: o} }

// GetPluginInfo implements csi.IdentityServer.
func (s *Server) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{
		Name:          contract.DriverName,
		VendorVersion: version.Version,
		Manifest:      map[string]string{"commit": version.Commit},
	}, nil
}

// GetPluginCapabilities implements csi.IdentityServer: the controller service with
// topology-constrained volumes, the group controller service and the snapshot metadata service
// (changed-block tracking) when this process serves the controller, and online volume
// expansion (file systems grow while mounted) always.
func (s *Server) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	service := func(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
		return &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}}
	}
	resp := &csi.GetPluginCapabilitiesResponse{}
	if s.opts.Controller {
		resp.Capabilities = append(resp.Capabilities,
			service(csi.PluginCapability_Service_CONTROLLER_SERVICE),
			service(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
			service(csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE),
			service(csi.PluginCapability_Service_SNAPSHOT_METADATA_SERVICE),
		)
	}
	resp.Capabilities = append(resp.Capabilities, &csi.PluginCapability{
		Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
			Type: csi.PluginCapability_VolumeExpansion_ONLINE,
		}},
	})
	return resp, nil
}

// Probe implements csi.IdentityServer. Not being ready is an answer (ready=false, with the
// reason logged), not an error: the sidecars wait for readiness, and the liveness probe
// restarts the container only when Probe fails.
func (s *Server) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if s.opts.Ready == nil {
		return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
	}
	if err := s.opts.Ready(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Not ready")
		return &csi.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
