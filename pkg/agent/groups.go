package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Write holds of group snapshots. The agent bounds every hold itself: whatever the caller
// does (or if it dies), writes resume at the hold's timeout.
const (
	// DefaultHoldTimeout bounds a hold whose request names none, and the hold of a group
	// snapshot whose members are all on this node.
	DefaultHoldTimeout = 5 * time.Second
	// MaxHoldTimeout caps what a request may ask for.
	MaxHoldTimeout = 30 * time.Second
	// groupLabel is the record label naming the group snapshot a snapshot was made with.
	groupLabel     = "nvmeof-csi/group"
	maxHoldIDBytes = 128
)

// groupHold is a HoldWrites hold: the pool's write hold and the agent's locks of the volumes,
// until CreateGroupSnapshot takes it over, ReleaseWrites ends it or its timer does.
type groupHold struct {
	volumes []string // sorted
	wh      pool.WriteHold
	unlock  func()
	timer   *time.Timer
}

// holds are the HoldWrites holds in force, by hold ID.
type holds struct {
	mu sync.Mutex
	m  map[string]*groupHold
}

// take removes the hold of id and returns it (nil if there is none).
func (h *holds) take(id string) *groupHold {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.m[id]
	delete(h.m, id)
	return g
}

// end releases a hold taken out of the map.
func (g *groupHold) end() {
	g.timer.Stop()
	g.wh.Release()
	g.unlock()
}

// writeHolder returns the pool as a pool.WriteHolder, or why it is not one.
func (s *Server) writeHolder() (pool.WriteHolder, error) {
	wh, ok := s.pool.(pool.WriteHolder)
	if !ok {
		return nil, rpcerr.Preconditionf("group snapshots need the %s pool backend: this storage node's pool (%s) cannot hold writes to several volumes at one instant",
			BackendDMThin, s.cfg.Pool.Backend)
	}
	return wh, nil
}

func holdTimeout(ms int64) (time.Duration, error) {
	switch {
	case ms < 0:
		return 0, rpcerr.Invalidf("timeout_ms must not be negative, got %d", ms)
	case ms == 0:
		return DefaultHoldTimeout, nil
	}
	return min(time.Duration(ms)*time.Millisecond, MaxHoldTimeout), nil
}

// HoldWrites is phase one of a group snapshot across storage nodes: it holds the writes to
// the volumes until CreateGroupSnapshot with the same hold ID, ReleaseWrites, or the timeout.
func (s *Server) HoldWrites(ctx context.Context, req *agentapi.HoldWritesRequest) (*agentapi.HoldWritesResponse, error) {
	resp, err := s.holdWrites(ctx, req)
	return resp, rpcerr.Status(err)
}

func (s *Server) holdWrites(ctx context.Context, req *agentapi.HoldWritesRequest) (*agentapi.HoldWritesResponse, error) {
	id := req.GetHoldId()
	if id == "" || len(id) > maxHoldIDBytes {
		return nil, rpcerr.Invalidf("hold_id must have 1 to %d bytes, got %d", maxHoldIDBytes, len(id))
	}
	vols := slices.Compact(slices.Sorted(slices.Values(req.GetVolumeIds())))
	if len(vols) == 0 {
		return nil, rpcerr.Invalidf("volume_ids: at least one volume to hold")
	}
	for _, v := range vols {
		if err := validateID(v, volumePrefix); err != nil {
			return nil, err
		}
	}
	timeout, err := holdTimeout(req.GetTimeoutMs())
	if err != nil {
		return nil, err
	}
	holder, err := s.writeHolder()
	if err != nil {
		return nil, err
	}
	s.holds.mu.Lock()
	if g, ok := s.holds.m[id]; ok {
		s.holds.mu.Unlock()
		if !slices.Equal(g.volumes, vols) {
			return nil, rpcerr.Existsf("hold %q holds other volumes (%v)", id, g.volumes)
		}
		return &agentapi.HoldWritesResponse{ExpiresUnixNano: g.wh.Expires().UnixNano()}, nil
	}
	s.holds.mu.Unlock()

	lctx, unlock, err := s.lock(ctx, vols...)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		if _, ok := s.idx.get(v); !ok {
			unlock()
			return nil, errNoRecord("volume", v)
		}
	}
	wh, err := holder.HoldWrites(lctx, vols, timeout)
	if err != nil {
		unlock()
		return nil, err
	}
	g := &groupHold{volumes: vols, wh: wh, unlock: unlock}
	s.holds.mu.Lock()
	if s.holds.m == nil {
		s.holds.m = map[string]*groupHold{}
	}
	if _, ok := s.holds.m[id]; ok { // a concurrent call with the same ID won
		s.holds.mu.Unlock()
		wh.Release()
		unlock()
		return nil, rpcerr.Abortedf("hold %q is being taken by another call", id)
	}
	s.holds.m[id] = g
	g.timer = time.AfterFunc(time.Until(wh.Expires()), func() {
		if g := s.holds.take(id); g != nil {
			klog.Background().Info("Write hold expired before its group snapshot; writes resumed", "holdID", id, "volumes", g.volumes)
			s.metrics.holdsExpired.Inc()
			g.end()
		}
	})
	s.holds.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Writes held", "holdID", id, "volumes", vols, "timeout", timeout)
	return &agentapi.HoldWritesResponse{ExpiresUnixNano: wh.Expires().UnixNano()}, nil
}

// ReleaseWrites ends a hold (the abort of a group snapshot); an unknown or ended hold is OK.
func (s *Server) ReleaseWrites(_ context.Context, req *agentapi.ReleaseWritesRequest) (*agentapi.ReleaseWritesResponse, error) {
	if req.GetHoldId() == "" {
		return nil, rpcerr.Status(rpcerr.Invalidf("hold_id is required"))
	}
	if g := s.holds.take(req.GetHoldId()); g != nil {
		g.end()
	}
	return &agentapi.ReleaseWritesResponse{}, nil
}

// CreateGroupSnapshot snapshots the members' sources at one instant: under the hold of
// hold_id (phase two of a group across storage nodes), or under a hold of its own. It is
// idempotent: when every member exists (of the same source and group) it returns them.
func (s *Server) CreateGroupSnapshot(ctx context.Context, req *agentapi.CreateGroupSnapshotRequest) (*agentapi.CreateGroupSnapshotResponse, error) {
	resp, err := s.createGroupSnapshot(ctx, req)
	return resp, rpcerr.Status(err)
}

func (s *Server) createGroupSnapshot(ctx context.Context, req *agentapi.CreateGroupSnapshotRequest) (*agentapi.CreateGroupSnapshotResponse, error) {
	g, err := s.takeHold(req.GetHoldId())
	if err != nil {
		return nil, err
	}
	if g != nil {
		defer g.end() // whatever happens below, the hold ends with this call
	}
	specs, ids, err := s.groupSpecs(req)
	if err != nil {
		return nil, err
	}
	sources, err := groupSources(specs, g, req.GetHoldId())
	if err != nil {
		return nil, err
	}
	holder, err := s.writeHolder()
	if err != nil {
		return nil, err
	}
	lockIDs := ids
	if g == nil {
		lockIDs = append(slices.Clone(ids), sources...)
	}
	ctx, unlock, err := s.lock(ctx, lockIDs...)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if done, err := s.existingGroup(req.GetGroupId(), specs); done != nil || err != nil {
		return &agentapi.CreateGroupSnapshotResponse{Snapshots: done}, err
	}
	res, err := s.admitGroup(ctx, specs)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, r := range res {
			r.release()
		}
	}()
	vols, held, err := s.snapshotHeld(ctx, g, holder, sources, specs)
	if errors.Is(err, pool.ErrExists) {
		for _, v := range vols {
			s.idx.put(v.Record)
		}
		if done, gerr := s.existingGroup(req.GetGroupId(), specs); done != nil || gerr != nil {
			return &agentapi.CreateGroupSnapshotResponse{Snapshots: done}, gerr
		}
	}
	if err != nil {
		return nil, err
	}
	resp := &agentapi.CreateGroupSnapshotResponse{HoldNanos: int64(held)}
	s.metrics.writeHold.Observe(held.Seconds())
	for i, v := range vols {
		res[i].commit(v.Record)
		resp.Snapshots = append(resp.Snapshots, snapshotOf(v.Record))
	}
	klog.FromContext(ctx).V(2).Info("Group snapshot created", "groupID", req.GetGroupId(), "members", len(vols), "hold", held)
	return resp, nil
}

// snapshotHeld makes the snapshots under hold g, or under a hold of the sources of its own
// when g is nil, and returns them with how long writes were held.
func (s *Server) snapshotHeld(ctx context.Context, g *groupHold, holder pool.WriteHolder, sources []string, specs []pool.SnapshotSpec) ([]pool.Volume, time.Duration, error) {
	var wh pool.WriteHold
	if g != nil {
		wh = g.wh
	} else {
		var err error
		if wh, err = holder.HoldWrites(ctx, sources, DefaultHoldTimeout); err != nil {
			return nil, 0, err
		}
		defer wh.Release()
	}
	vols, err := wh.SnapshotGroup(ctx, specs)
	if errors.Is(err, pool.ErrHoldEnded) {
		s.metrics.holdsExpired.Inc()
	}
	return vols, wh.HoldDuration(), err
}

// takeHold takes the HoldWrites hold of id over (nil for no ID); one not in force is
// pool.ErrHoldEnded (Aborted).
func (s *Server) takeHold(id string) (*groupHold, error) {
	if id == "" {
		return nil, nil
	}
	g := s.holds.take(id)
	if g == nil {
		return nil, fmt.Errorf("%w: hold %q is not in force (it expired, was released, or this agent restarted): "+
			"take the group snapshot again", pool.ErrHoldEnded, id)
	}
	return g, nil
}

// groupSources returns the members' sources, sorted, checking that hold g (if any) holds them.
func groupSources(specs []pool.SnapshotSpec, g *groupHold, holdID string) ([]string, error) {
	sources := make([]string, len(specs))
	for i, sp := range specs {
		sources[i] = sp.Origin
	}
	sources = slices.Compact(slices.Sorted(slices.Values(sources)))
	if g != nil {
		for _, src := range sources {
			if !slices.Contains(g.volumes, src) {
				return nil, rpcerr.Invalidf("source volume %s is not held by hold %q", src, holdID)
			}
		}
	}
	return sources, nil
}

// admitGroup sets each member's size to its source's and reserves the space of every member
// (the caller releases the reservations it does not commit).
func (s *Server) admitGroup(ctx context.Context, specs []pool.SnapshotSpec) ([]*reservation, error) {
	var res []*reservation
	for i := range specs {
		origin, ok := s.idx.get(specs[i].Origin)
		if !ok {
			for _, r := range res {
				r.release()
			}
			return nil, rpcerr.NotFoundf("source volume %s", specs[i].Origin)
		}
		specs[i].Record.SizeBytes = origin.SizeBytes
		r, err := s.admit(ctx, origin.SizeBytes, true)
		if err != nil {
			for _, r := range res {
				r.release()
			}
			return nil, err
		}
		res = append(res, r)
	}
	return res, nil
}

// groupSpecs validates a CreateGroupSnapshot request and returns its snapshot specs (sizes
// still unset) and the members' snapshot IDs.
func (s *Server) groupSpecs(req *agentapi.CreateGroupSnapshotRequest) ([]pool.SnapshotSpec, []string, error) {
	if err := validateName(req.GetGroupId()); err != nil {
		return nil, nil, fmt.Errorf("group_id: %w", err)
	}
	if len(req.GetMembers()) == 0 {
		return nil, nil, rpcerr.Invalidf("members: at least one member")
	}
	var specs []pool.SnapshotSpec
	var ids []string
	for _, m := range req.GetMembers() {
		if err := validateName(m.GetName()); err != nil {
			return nil, nil, err
		}
		if err := validateID(m.GetSourceVolumeId(), volumePrefix); err != nil {
			return nil, nil, err
		}
		id := agentapi.SnapshotID(m.GetName())
		if slices.Contains(ids, id) {
			return nil, nil, rpcerr.Invalidf("member %q twice", m.GetName())
		}
		ids = append(ids, id)
		specs = append(specs, pool.SnapshotSpec{Origin: m.GetSourceVolumeId(), Record: pool.Record{
			ID: id, Name: m.GetName(), Source: m.GetSourceVolumeId(), CreatedUnixNano: s.now().UnixNano(),
			Labels: map[string]string{groupLabel: req.GetGroupId()},
		}})
	}
	return specs, ids, nil
}

// existingGroup answers a repeated CreateGroupSnapshot: the members when every one exists of
// its source in this group; nil when none exists; AlreadyExists when some exist or one is
// of another source or group (a retry of a group cut short is for the caller to clean up).
func (s *Server) existingGroup(group string, specs []pool.SnapshotSpec) ([]*agentapi.Snapshot, error) {
	var out []*agentapi.Snapshot
	for _, sp := range specs {
		r, ok := s.idx.get(sp.Record.ID)
		if !ok {
			continue
		}
		if r.Source != sp.Origin || r.Labels[groupLabel] != group {
			return nil, rpcerr.Existsf("snapshot %q exists of %s in group %q; asked of %s in group %q",
				r.Name, r.Source, r.Labels[groupLabel], sp.Origin, group)
		}
		out = append(out, snapshotOf(r))
	}
	switch len(out) {
	case 0:
		return nil, nil
	case len(specs):
		return out, nil
	}
	return nil, rpcerr.Existsf("%d of the group's %d snapshots exist (a group snapshot cut short): delete them first", len(out), len(specs))
}
