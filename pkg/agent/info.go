package agent

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
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

// GetCapacity reports the thin pool's usage and what may still be provisioned: available is
// the overcommit headroom, but never more than the physical space left below
// pool.maxFillPercent (a physically full pool advertises nothing); the maximum volume size is
// the overcommit headroom (a thin volume's size is not space used), or 0 at the fill level,
// where new volumes are refused.
func (s *Server) GetCapacity(ctx context.Context, req *agentapi.GetCapacityRequest) (*agentapi.GetCapacityResponse, error) {
	u, err := s.pool.Usage(ctx)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	s.storeUsage(u)
	provisioned := s.idx.provisionedBytes()
	headroom, avail := s.capacity(u, provisioned)
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
		MaximumVolumeBytes: headroom / s.granularity() * s.granularity(),
	}, nil
}

// usageMaxAge is how old the usage that admission checks may be; a burst of creations asks
// the pool at most once per usageMaxAge (an lvm process, for the lvm backend).
const usageMaxAge = 5 * time.Second

type usageAt struct {
	u  pool.Usage
	at time.Time
}

func (s *Server) storeUsage(u pool.Usage) { s.usage.Store(&usageAt{u: u, at: s.now()}) }

// currentUsage is the pool's usage, read again when the last reading is older than
// usageMaxAge (or failing that, the last reading).
func (s *Server) currentUsage(ctx context.Context) pool.Usage {
	last := s.usage.Load()
	if last != nil && s.now().Sub(last.at) < usageMaxAge {
		return last.u
	}
	u, err := s.pool.Usage(ctx)
	if err == nil {
		s.storeUsage(u)
		return u
	}
	klog.FromContext(ctx).Error(err, "Cannot read the pool's usage; admitting on the last reading")
	if last != nil {
		return last.u
	}
	return pool.Usage{}
}

// fillBytes is pool.maxFillPercent of total bytes.
func (s *Server) fillBytes(total int64) int64 {
	return int64(float64(total) * s.cfg.Pool.MaxFillPercent / 100)
}

// checkFill refuses new thin devices while the pool's data or metadata space is filled to
// pool.maxFillPercent.
func (s *Server) checkFill(u pool.Usage) error {
	for _, sp := range []struct {
		what        string
		used, total int64
	}{{"data", u.DataUsedBytes, u.DataBytes}, {"metadata", u.MetadataUsedBytes, u.MetadataBytes}} {
		if sp.total > 0 && sp.used >= s.fillBytes(sp.total) {
			return rpcerr.Exhaustedf("the pool's %s space is %.1f%% full, at or above pool.maxFillPercent (%g%%): "+
				"no new volume, clone or snapshot until space is freed (delete volumes or snapshots) or the pool grows",
				sp.what, 100*float64(sp.used)/float64(sp.total), s.cfg.Pool.MaxFillPercent)
		}
	}
	return nil
}

// capacity is what GetCapacity reports: the overcommit headroom, and what is available (the
// headroom capped by the data space left below the fill level); both 0 at the fill level.
func (s *Server) capacity(u pool.Usage, provisioned int64) (headroom, avail int64) {
	if s.checkFill(u) != nil {
		return 0, 0
	}
	headroom = max(int64(s.cfg.Pool.OvercommitRatio*float64(u.DataBytes))-provisioned, 0)
	return headroom, max(min(headroom, s.fillBytes(u.DataBytes)-u.DataUsedBytes), 0)
}
