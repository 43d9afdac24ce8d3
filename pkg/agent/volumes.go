package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// CreateVolume creates a thin volume, or an O(1) thin clone of a snapshot or volume. It is
// idempotent by name: the same name and size and source return the existing volume; a
// different size or source is AlreadyExists.
func (s *Server) CreateVolume(ctx context.Context, req *agentapi.CreateVolumeRequest) (*agentapi.CreateVolumeResponse, error) {
	v, err := s.createVolume(ctx, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.CreateVolumeResponse{Volume: v}, nil
}

func (s *Server) createVolume(ctx context.Context, req *agentapi.CreateVolumeRequest) (*agentapi.Volume, error) {
	if err := validateName(req.GetName()); err != nil {
		return nil, err
	}
	if req.GetSizeBytes() <= 0 {
		return nil, rpcerr.Invalidf("size_bytes must be positive, got %d", req.GetSizeBytes())
	}
	labels, err := checkLabels(req.GetLabels())
	if err != nil {
		return nil, err
	}
	id := agentapi.VolumeID(req.GetName())
	src := sourceID(req.GetSource())
	if req.GetSource() != nil && src == "" {
		return nil, rpcerr.Invalidf("content source names no snapshot or volume")
	}
	ctx, unlock, err := s.lock(ctx, id, src)
	if err != nil {
		return nil, err
	}
	defer unlock()

	size, err := s.sizeFor(req.GetSizeBytes(), req.GetLimitBytes())
	if err != nil {
		return nil, err
	}
	if existing, ok := s.idx.get(id); ok {
		return sameVolume(existing, req.GetName(), size, src)
	}
	rec := pool.Record{ID: id, SizeBytes: size, Name: req.GetName(), UUID: s.newUUID(), Source: src, Labels: labels}
	var origin pool.Record
	if src != "" {
		var ok bool
		if origin, ok = s.idx.get(src); !ok {
			return nil, rpcerr.NotFoundf("content source %s", src)
		}
		if size < origin.SizeBytes {
			return nil, rpcerr.Invalidf("size %d is smaller than its source %s (%d bytes)", size, src, origin.SizeBytes)
		}
	}
	res, err := s.admit(ctx, size, true)
	if err != nil {
		return nil, err
	}
	defer res.release()
	var v pool.Volume
	if src == "" {
		v, err = s.pool.Create(ctx, rec)
	} else {
		v, err = s.pool.Snapshot(ctx, src, rec, false)
	}
	if errors.Is(err, pool.ErrExists) && v.ID == id {
		// Made by an earlier call whose answer was lost (the index is loaded from the pool,
		// so only a pool changed behind the agent's back gets here).
		s.idx.put(v.Record)
		return sameVolume(v.Record, req.GetName(), size, src)
	}
	if err != nil {
		return nil, err
	}
	res.commit(v.Record)
	return volumeOf(v.Record), nil
}

// sameVolume answers a repeated CreateVolume: the existing volume if it matches the request,
// else AlreadyExists.
func sameVolume(r pool.Record, name string, size int64, src string) (*agentapi.Volume, error) {
	if !strings.HasPrefix(r.ID, volumePrefix) || r.SizeBytes != size || r.Source != src {
		return nil, rpcerr.Existsf("volume %q is %d bytes from source %q; asked %d bytes from %q", name, r.SizeBytes, r.Source, size, src)
	}
	return volumeOf(r), nil
}

// admit reserves size more bytes under the overcommit limit (every thin device counts at its
// virtual size: snapshots can end up holding all of their blocks). The reservation is atomic,
// so racing creations never exceed the limit together. A new thin device (newDevice: not an
// expansion) is refused too while the pool is filled to pool.maxFillPercent.
func (s *Server) admit(ctx context.Context, size int64, newDevice bool) (*reservation, error) {
	u := s.currentUsage(ctx)
	if newDevice {
		if err := s.checkFill(u); err != nil {
			return nil, err
		}
	}
	data := u.DataBytes
	limit := int64(s.cfg.Pool.OvercommitRatio * float64(data))
	return s.idx.reserve(size, limit, func(provisioned int64) error {
		return rpcerr.Exhaustedf("%d bytes asked, %d of %d provisionable bytes in use (pool %d bytes, overcommit %g): "+
			"delete unused volumes or snapshots, ask for less, or raise pool.overcommitRatio", size, provisioned, limit, data, s.cfg.Pool.OvercommitRatio)
	})
}

// DeleteVolume removes a volume that no host is published to. Unknown IDs are NotFound.
func (s *Server) DeleteVolume(ctx context.Context, req *agentapi.DeleteVolumeRequest) (*agentapi.DeleteVolumeResponse, error) {
	if err := s.deleteObject(ctx, req.GetId(), volumePrefix); err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.DeleteVolumeResponse{}, nil
}

func (s *Server) deleteObject(ctx context.Context, id, prefix string) error {
	if err := validateID(id, prefix); err != nil {
		return err
	}
	ctx, unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	rec, ok := s.idx.get(id)
	if !ok {
		return errNoRecord(strings.TrimSuffix(prefix, "-"), id)
	}
	if len(rec.Hosts) > 0 {
		return rpcerr.Preconditionf("%s is published to %d host(s), first %s; unpublish it first", id, len(rec.Hosts), rec.Hosts[0].NQN)
	}
	// A subsystem left by an interrupted unpublish would hold the device open.
	if prefix == volumePrefix {
		if err := s.export(ctx, pool.Record{ID: id}, nil); err != nil {
			return err
		}
	}
	if err := s.pool.Delete(ctx, id); err != nil && !errors.Is(err, pool.ErrNotFound) {
		return err
	}
	s.idx.remove(id)
	return nil
}

// ExpandVolume grows a volume (never shrinks it) and tells connected hosts.
func (s *Server) ExpandVolume(ctx context.Context, req *agentapi.ExpandVolumeRequest) (*agentapi.ExpandVolumeResponse, error) {
	v, err := s.expandVolume(ctx, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.ExpandVolumeResponse{Volume: v}, nil
}

func (s *Server) expandVolume(ctx context.Context, req *agentapi.ExpandVolumeRequest) (*agentapi.Volume, error) {
	id := req.GetId()
	if err := validateID(id, volumePrefix); err != nil {
		return nil, err
	}
	if req.GetSizeBytes() <= 0 {
		return nil, rpcerr.Invalidf("size_bytes must be positive, got %d", req.GetSizeBytes())
	}
	ctx, unlock, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, ok := s.idx.get(id)
	if !ok {
		return nil, errNoRecord("volume", id)
	}
	size, err := s.sizeFor(req.GetSizeBytes(), req.GetLimitBytes())
	if err != nil {
		return nil, err
	}
	if size <= rec.SizeBytes {
		return volumeOf(rec), nil
	}
	res, err := s.admit(ctx, size-rec.SizeBytes, false)
	if err != nil {
		return nil, err
	}
	defer res.release()
	v, err := s.pool.Resize(ctx, id, size)
	if err != nil {
		return nil, err
	}
	res.commit(v.Record)
	for _, h := range v.Hosts {
		if err := s.target.RevalidateNamespace(ctx, s.hostSubsystemNQN(id, h.NQN), 1); err != nil {
			return nil, fmt.Errorf("volume grown to %d bytes, but telling host %s failed: %w", v.SizeBytes, h.NQN, err)
		}
	}
	return volumeOf(v.Record), nil
}

// GetVolume describes one volume.
func (s *Server) GetVolume(_ context.Context, req *agentapi.GetVolumeRequest) (*agentapi.GetVolumeResponse, error) {
	if err := validateID(req.GetId(), volumePrefix); err != nil {
		return nil, rpcerr.Status(err)
	}
	rec, ok := s.idx.get(req.GetId())
	if !ok {
		return nil, rpcerr.Status(errNoRecord("volume", req.GetId()))
	}
	return &agentapi.GetVolumeResponse{Volume: volumeOf(rec)}, nil
}

// ListVolumes lists every volume of the pool, ordered by ID.
func (s *Server) ListVolumes(ctx context.Context, req *agentapi.ListVolumesRequest) (*agentapi.ListVolumesResponse, error) {
	resp := &agentapi.ListVolumesResponse{}
	recs := s.idx.list(volumePrefix)
	for _, r := range recs {
		resp.Volumes = append(resp.Volumes, volumeOf(r))
	}
	ur, ok := s.pool.(pool.UsedReporter)
	if !req.GetWithUsage() || !ok {
		return resp, nil
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	used, err := ur.Used(ctx, ids)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	for _, v := range resp.Volumes {
		if n, ok := used[v.GetId()]; ok {
			v.UsedBytes = &n
		}
	}
	return resp, nil
}

func validateName(name string) error {
	switch {
	case name == "" || len(name) > maxNameBytes:
		return rpcerr.Invalidf("name must have 1 to %d bytes, got %d", maxNameBytes, len(name))
	case !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return rpcerr.Invalidf("name %q must be UTF-8 without control characters", name)
	}
	return nil
}

// validateID checks an ID has the form the agent gives out; a malformed ID can name nothing.
func validateID(id, prefix string) error {
	want := agentapi.VolumeID("")
	if prefix == snapshotPrefix {
		want = agentapi.SnapshotID("")
	}
	if len(id) != len(want) || !strings.HasPrefix(id, prefix) || strings.Trim(id[len(prefix):], "0123456789abcdef") != "" {
		return rpcerr.NotFoundf("%q is not a %s ID", id, strings.TrimSuffix(prefix, "-"))
	}
	return nil
}

// checkLabels validates labels (they are kept with the volume on the pool).
func checkLabels(labels map[string]string) (map[string]string, error) {
	if len(labels) > maxLabels {
		return nil, rpcerr.Invalidf("at most %d labels, got %d", maxLabels, len(labels))
	}
	for k, v := range labels {
		if k == "" || len(k) > maxLabelBytes || len(v) > maxLabelBytes || strings.Contains(k, "\n") {
			return nil, rpcerr.Invalidf("label %q: keys must have 1 to %d bytes and no newline, values at most %d bytes", k, maxLabelBytes, maxLabelBytes)
		}
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return maps.Clone(labels), nil
}
