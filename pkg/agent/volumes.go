package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
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
	labelTags, err := labelTags(req.GetLabels())
	if err != nil {
		return nil, err
	}
	id := agentapi.VolumeID(req.GetName())
	src := sourceID(req.GetSource())
	if req.GetSource() != nil && src == "" {
		return nil, rpcerr.Invalidf("content source names no snapshot or volume")
	}
	unlock, err := s.lock(ctx, id, src)
	if err != nil {
		return nil, err
	}
	defer unlock()

	size := roundUp(req.GetSizeBytes())
	tags := append([]string{
		lvm.EncodeTag(tagName, req.GetName()),
		lvm.EncodeTag(tagUUID, s.newUUID()),
	}, labelTags...)
	if src != "" {
		tags = append(tags, lvm.EncodeTag(tagSource, src))
	}

	// The common path costs one lvs (capacity) and the create: whether the volume exists is
	// learnt from the create itself. Only a full pool looks first, so that a repeated request
	// for an existing volume still succeeds.
	s.provision.Lock()
	defer s.provision.Unlock()
	if err := s.admit(ctx, size); err != nil {
		if lv, gerr := s.pool.Get(ctx, id); gerr == nil {
			return sameVolume(lv, req.GetName(), size, src)
		}
		return nil, err
	}
	var lv lvm.LV
	if src == "" {
		lv, err = s.pool.Create(ctx, id, size, tags)
	} else {
		lv, err = s.clone(ctx, id, src, size, tags)
	}
	if errors.Is(err, lvm.ErrExists) && lv.Name == id {
		return sameVolume(lv, req.GetName(), size, src)
	}
	if err != nil {
		return nil, err
	}
	return volumeOf(lv), nil
}

// sameVolume answers a repeated CreateVolume: the existing volume if it matches the request,
// else AlreadyExists.
func sameVolume(lv lvm.LV, name string, size int64, src string) (*agentapi.Volume, error) {
	if !isVolume(lv) || lv.SizeBytes != size || tagOf(lv, tagSource) != src {
		return nil, rpcerr.Existsf("volume %q is %d bytes from source %q; asked %d bytes from %q", name, lv.SizeBytes, tagOf(lv, tagSource), size, src)
	}
	return volumeOf(lv), nil
}

// clone makes a writable thin snapshot of src, grown to size. On failure nothing is left.
func (s *Server) clone(ctx context.Context, id, src string, size int64, tags []string) (lvm.LV, error) {
	origin, err := s.pool.Get(ctx, src)
	if errors.Is(err, lvm.ErrNotFound) {
		return lvm.LV{}, rpcerr.NotFoundf("content source %s", src)
	}
	if err != nil {
		return lvm.LV{}, err
	}
	if size < origin.SizeBytes {
		return lvm.LV{}, rpcerr.Invalidf("size %d is smaller than its source %s (%d bytes)", size, src, origin.SizeBytes)
	}
	lv, err := s.pool.Snapshot(ctx, src, id, false, tags)
	if err != nil {
		return lv, err // with ErrExists, lv is the existing volume
	}
	if size > lv.SizeBytes {
		grown, err := s.pool.Extend(ctx, id, size)
		if err != nil {
			return lvm.LV{}, errors.Join(err, s.pool.Remove(context.WithoutCancel(ctx), id))
		}
		lv = grown
	}
	return lv, nil
}

// admit fails with an rpcerr.ErrExhausted error unless size more bytes fit under the overcommit
// limit. Every thin LV counts at its virtual size: snapshots can end up holding all of their
// blocks.
func (s *Server) admit(ctx context.Context, size int64) error {
	u, err := s.pool.Usage(ctx)
	if err != nil {
		return err
	}
	limit := int64(s.cfg.Pool.OvercommitRatio * float64(u.DataBytes))
	if u.VirtualBytes+size > limit {
		return rpcerr.Exhaustedf("%d bytes asked, %d of %d provisionable bytes in use (pool %d bytes, overcommit %g)", size, u.VirtualBytes, limit, u.DataBytes, s.cfg.Pool.OvercommitRatio)
	}
	return nil
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
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	lv, err := s.pool.Get(ctx, id)
	if err != nil {
		return err
	}
	if hs := hostsOf(lv); len(hs) > 0 {
		return rpcerr.Preconditionf("%s is published to %d host(s), first %s; unpublish it first", id, len(hs), hs[0].nqn)
	}
	// A subsystem left by an interrupted unpublish would hold the device open.
	if prefix == volumePrefix {
		if err := s.target.RemoveSubsystem(ctx, s.subsystemNQN(id)); err != nil {
			return err
		}
	}
	return s.pool.Remove(ctx, id)
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
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	lv, err := s.pool.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	size := roundUp(req.GetSizeBytes())
	if size <= lv.SizeBytes {
		return volumeOf(lv), nil
	}
	s.provision.Lock()
	err = s.admit(ctx, size-lv.SizeBytes)
	if err == nil {
		lv, err = s.pool.Extend(ctx, id, size)
	}
	s.provision.Unlock()
	if err != nil {
		return nil, err
	}
	if len(hostsOf(lv)) > 0 {
		if err := s.target.RevalidateNamespace(ctx, s.subsystemNQN(id), 1); err != nil {
			return nil, fmt.Errorf("volume grown to %d bytes, but telling connected hosts failed: %w", lv.SizeBytes, err)
		}
	}
	return volumeOf(lv), nil
}

// GetVolume describes one volume.
func (s *Server) GetVolume(ctx context.Context, req *agentapi.GetVolumeRequest) (*agentapi.GetVolumeResponse, error) {
	if err := validateID(req.GetId(), volumePrefix); err != nil {
		return nil, rpcerr.Status(err)
	}
	lv, err := s.pool.Get(ctx, req.GetId())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.GetVolumeResponse{Volume: volumeOf(lv)}, nil
}

// ListVolumes lists every volume of the pool, ordered by ID.
func (s *Server) ListVolumes(ctx context.Context, _ *agentapi.ListVolumesRequest) (*agentapi.ListVolumesResponse, error) {
	lvs, err := s.pool.List(ctx)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	resp := &agentapi.ListVolumesResponse{}
	for _, lv := range lvs {
		if isVolume(lv) {
			resp.Volumes = append(resp.Volumes, volumeOf(lv))
		}
	}
	sort.Slice(resp.Volumes, func(i, j int) bool { return resp.Volumes[i].Id < resp.Volumes[j].Id })
	return resp, nil
}

func validateName(name string) error {
	if name == "" || len(name) > maxNameBytes {
		return rpcerr.Invalidf("name must have 1 to %d bytes, got %d", maxNameBytes, len(name))
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

func labelTags(labels map[string]string) ([]string, error) {
	if len(labels) > maxLabels {
		return nil, rpcerr.Invalidf("at most %d labels, got %d", maxLabels, len(labels))
	}
	var tags []string
	for k, v := range labels {
		if k == "" || len(k) > maxLabelBytes || len(v) > maxLabelBytes || strings.Contains(k, "\n") {
			return nil, rpcerr.Invalidf("label %q: keys must have 1 to %d bytes and no newline, values at most %d bytes", k, maxLabelBytes, maxLabelBytes)
		}
		tags = append(tags, lvm.EncodeTag(tagLabel, k+"\n"+v))
	}
	sort.Strings(tags)
	return tags, nil
}
