package agent

import (
	"context"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// Info describes the storage node.
func (s *Server) Info(context.Context, *agentapi.InfoRequest) (*agentapi.InfoResponse, error) {
	return &agentapi.InfoResponse{
		NodeName: s.cfg.NodeName,
		Portals:  s.portals(""),
		Version:  version.Version,
	}, nil
}

// GetCapacity reports the thin pool's usage and what may still be provisioned.
func (s *Server) GetCapacity(ctx context.Context, req *agentapi.GetCapacityRequest) (*agentapi.GetCapacityResponse, error) {
	u, err := s.pool.Usage(ctx)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	provisioned, _ := s.idx.usage()
	limit := int64(s.cfg.Pool.OvercommitRatio * float64(u.DataBytes))
	avail := max(limit-provisioned, 0)
	found := false
	if id := req.GetLookupId(); id != "" {
		_, found = s.idx.get(id)
	}
	return &agentapi.GetCapacityResponse{
		LookupFound:        found,
		DataBytes:          u.DataBytes,
		DataUsedBytes:      u.DataUsedBytes,
		MetadataBytes:      u.MetadataBytes,
		MetadataUsedBytes:  u.MetadataUsedBytes,
		ProvisionedBytes:   provisioned,
		AvailableBytes:     avail,
		OvercommitRatio:    s.cfg.Pool.OvercommitRatio,
		MaximumVolumeBytes: avail / extentBytes * extentBytes,
	}, nil
}
