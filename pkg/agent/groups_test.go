package agent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics/metricstest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// holdingPool is a fakePool that can hold writes (like dmthin): the seam for the agent's
// group snapshot logic.
type holdingPool struct {
	*fakePool
	mu    sync.Mutex
	holds []*fakeHold
}

type fakeHold struct {
	p       *holdingPool
	origins []string
	expires time.Time
	mu      sync.Mutex
	ended   bool
	timer   *time.Timer
}

func (p *holdingPool) HoldWrites(_ context.Context, origins []string, timeout time.Duration) (pool.WriteHold, error) {
	p.fakePool.mu.Lock()
	for _, o := range origins {
		if _, ok := p.entries[o]; !ok {
			p.fakePool.mu.Unlock()
			return nil, pool.ErrNotFound
		}
	}
	p.fakePool.mu.Unlock()
	h := &fakeHold{p: p, origins: origins, expires: time.Now().Add(timeout)}
	h.timer = time.AfterFunc(timeout, func() { h.Release() })
	p.mu.Lock()
	p.holds = append(p.holds, h)
	p.mu.Unlock()
	return h, nil
}

// held reports how many holds have not ended.
func (p *holdingPool) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, h := range p.holds {
		h.mu.Lock()
		if !h.ended {
			n++
		}
		h.mu.Unlock()
	}
	return n
}

func (h *fakeHold) SnapshotGroup(_ context.Context, specs []pool.SnapshotSpec) ([]pool.Volume, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return nil, pool.ErrHoldEnded
	}
	h.ended = true
	p := h.p.fakePool
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pool.Volume
	for _, s := range specs {
		if _, ok := p.entries[s.Record.ID]; ok {
			return nil, pool.ErrExists
		}
	}
	for _, s := range specs {
		out = append(out, p.add(s.Record, s.Origin, true))
	}
	return out, nil
}

func (h *fakeHold) Release() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	intact := !h.ended
	h.ended = true
	h.timer.Stop()
	return intact
}

func (h *fakeHold) Expires() time.Time          { return h.expires }
func (h *fakeHold) HoldDuration() time.Duration { return time.Millisecond }

func newHoldingEnv(t *testing.T) (*env, *holdingPool) {
	t.Helper()
	fs := nvmettest.New()
	cfg := testConfig()
	e := &env{fs: fs, ctx: context.Background()}
	e.pool = newFakePool(fs.AddDevice)
	hp := &holdingPool{fakePool: e.pool}
	e.target = &nvmet.Target{Root: fs.Root(), Prefix: cfg.NQNPrefix(), FS: fs}
	e.srv = New(cfg, hp, e.target)
	if err := e.srv.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	return e, hp
}

func groupReq(group string, vols ...*agentapi.Volume) *agentapi.CreateGroupSnapshotRequest {
	req := &agentapi.CreateGroupSnapshotRequest{GroupId: group}
	for _, v := range vols {
		req.Members = append(req.Members, &agentapi.GroupMember{Name: group + "/" + v.Id, SourceVolumeId: v.Id})
	}
	return req
}

func TestGroupSnapshotOnOneNodeIsIdempotent(t *testing.T) {
	e, hp := newHoldingEnv(t)
	a, b := e.createVolume(t, "data", gib, nil), e.createVolume(t, "wal", 2*gib, nil)
	resp, err := e.srv.CreateGroupSnapshot(e.ctx, groupReq("g1", a, b))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Snapshots) != 2 {
		t.Fatalf("snapshots %v", resp.Snapshots)
	}
	for i, src := range []*agentapi.Volume{a, b} {
		s := resp.Snapshots[i]
		if s.GroupId != "g1" || s.SourceVolumeId != src.Id || s.SizeBytes != src.SizeBytes {
			t.Errorf("member %d = %v, want of %s in g1", i, s, src.Id)
		}
		got, err := e.srv.GetSnapshot(e.ctx, &agentapi.GetSnapshotRequest{Id: s.Id})
		if err != nil || got.Snapshot.GroupId != "g1" {
			t.Errorf("GetSnapshot(%s) = %v, %v", s.Id, got, err)
		}
	}
	again, err := e.srv.CreateGroupSnapshot(e.ctx, groupReq("g1", a, b))
	if err != nil || len(again.Snapshots) != 2 || again.Snapshots[0].Id != resp.Snapshots[0].Id {
		t.Fatalf("repeat = %v, %v", again, err)
	}
	if n := hp.held(); n != 0 {
		t.Errorf("%d holds still in force after the calls", n)
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(e.srv)
	if got := metricstest.Value(t, reg, "nvmeof_agent_write_hold_seconds_count"); got != 1 {
		t.Errorf("write holds observed: %v, want 1 (the retry holds nothing)", got)
	}
	// The same member names in another group, or a group cut short, are refused.
	req := groupReq("g1", a, b)
	req.GroupId = "g2"
	_, err = e.srv.CreateGroupSnapshot(e.ctx, req)
	wantCode(t, err, codes.AlreadyExists)
	if _, err := e.srv.DeleteSnapshot(e.ctx, &agentapi.DeleteSnapshotRequest{Id: resp.Snapshots[1].Id}); err != nil {
		t.Fatal(err)
	}
	_, err = e.srv.CreateGroupSnapshot(e.ctx, groupReq("g1", a, b))
	wantCode(t, err, codes.AlreadyExists)
}

func TestGroupSnapshotUnderAHold(t *testing.T) {
	e, hp := newHoldingEnv(t)
	a, b := e.createVolume(t, "data", gib, nil), e.createVolume(t, "wal", gib, nil)
	hold := &agentapi.HoldWritesRequest{HoldId: "h1", VolumeIds: []string{b.Id, a.Id}, TimeoutMs: 10_000}
	r1, err := e.srv.HoldWrites(e.ctx, hold)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.srv.HoldWrites(e.ctx, hold) // a retry of phase one
	if err != nil || r2.ExpiresUnixNano != r1.ExpiresUnixNano {
		t.Fatalf("repeated HoldWrites = %v, %v", r2, err)
	}
	_, err = e.srv.HoldWrites(e.ctx, &agentapi.HoldWritesRequest{HoldId: "h1", VolumeIds: []string{a.Id}})
	wantCode(t, err, codes.AlreadyExists)
	// A volume outside the hold cannot be snapshotted under it.
	c := e.createVolume(t, "other", gib, nil)
	req := groupReq("g1", a, b, c)
	req.HoldId = "h1"
	_, err = e.srv.CreateGroupSnapshot(e.ctx, req)
	wantCode(t, err, codes.InvalidArgument)
	// That call used the hold up: phase two must start again.
	if n := hp.held(); n != 0 {
		t.Fatalf("%d holds in force after the failed phase two", n)
	}
	if _, err := e.srv.HoldWrites(e.ctx, hold); err != nil {
		t.Fatal(err)
	}
	req = groupReq("g1", a, b)
	req.HoldId = "h1"
	resp, err := e.srv.CreateGroupSnapshot(e.ctx, req)
	if err != nil || len(resp.Snapshots) != 2 {
		t.Fatalf("CreateGroupSnapshot under the hold = %v, %v", resp, err)
	}
	if n := hp.held(); n != 0 {
		t.Errorf("%d holds in force after phase two", n)
	}
	// The hold's locks are given back: the volumes take other calls.
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	if _, err := e.srv.ExpandVolume(ctx, &agentapi.ExpandVolumeRequest{Id: a.Id, SizeBytes: 2 * gib}); err != nil {
		t.Fatalf("ExpandVolume after the group snapshot: %v", err)
	}
}

func TestWriteHoldEndsByItself(t *testing.T) {
	e, hp := newHoldingEnv(t)
	a := e.createVolume(t, "data", gib, nil)
	if _, err := e.srv.HoldWrites(e.ctx, &agentapi.HoldWritesRequest{HoldId: "h1", VolumeIds: []string{a.Id}, TimeoutMs: 50}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hp.held() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the hold did not end at its timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	req := groupReq("g1", a)
	req.HoldId = "h1"
	_, err := e.srv.CreateGroupSnapshot(e.ctx, req)
	wantCode(t, err, codes.Aborted)
	reg := metrics.NewRegistry()
	reg.MustRegister(e.srv)
	if got := metricstest.Value(t, reg, "nvmeof_agent_write_holds_expired_total"); got != 1 {
		t.Errorf("expired holds counted: %v, want 1", got)
	}
	// Its locks went with it.
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	if _, err := e.srv.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: a.Id}); err != nil {
		t.Fatalf("DeleteVolume after the hold expired: %v", err)
	}
}

func TestReleaseWritesEndsTheHold(t *testing.T) {
	e, hp := newHoldingEnv(t)
	a := e.createVolume(t, "data", gib, nil)
	if _, err := e.srv.HoldWrites(e.ctx, &agentapi.HoldWritesRequest{HoldId: "h1", VolumeIds: []string{a.Id}}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if _, err := e.srv.ReleaseWrites(e.ctx, &agentapi.ReleaseWritesRequest{HoldId: "h1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := hp.held(); n != 0 {
		t.Errorf("%d holds in force after ReleaseWrites", n)
	}
}

func TestGroupSnapshotsRefusedWithoutAWriteHolder(t *testing.T) {
	e := newEnv(t) // fakePool: like lvm, it cannot hold writes
	a := e.createVolume(t, "data", gib, nil)
	_, err := e.srv.CreateGroupSnapshot(e.ctx, groupReq("g1", a))
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), BackendDMThin) {
		t.Errorf("error %q does not name the %s backend", err, BackendDMThin)
	}
	_, err = e.srv.HoldWrites(e.ctx, &agentapi.HoldWritesRequest{HoldId: "h", VolumeIds: []string{a.Id}})
	wantCode(t, err, codes.FailedPrecondition)
}

func TestGroupRequestsValidated(t *testing.T) {
	e, _ := newHoldingEnv(t)
	a := e.createVolume(t, "data", gib, nil)
	for name, tc := range map[string]struct {
		req  *agentapi.CreateGroupSnapshotRequest
		code codes.Code
	}{
		"no group":       {&agentapi.CreateGroupSnapshotRequest{Members: groupReq("g", a).Members}, codes.InvalidArgument},
		"no members":     {&agentapi.CreateGroupSnapshotRequest{GroupId: "g"}, codes.InvalidArgument},
		"unknown source": {groupReq("g", &agentapi.Volume{Id: agentapi.VolumeID("nope")}), codes.NotFound},
		"bad source":     {groupReq("g", &agentapi.Volume{Id: "vol-x"}), codes.NotFound},
		"member twice":   {groupReq("g", a, a), codes.InvalidArgument},
		"unknown hold":   {&agentapi.CreateGroupSnapshotRequest{GroupId: "g", Members: groupReq("g", a).Members, HoldId: "none"}, codes.Aborted},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.srv.CreateGroupSnapshot(e.ctx, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	for name, req := range map[string]*agentapi.HoldWritesRequest{
		"no id":            {VolumeIds: []string{a.Id}},
		"no volumes":       {HoldId: "h"},
		"negative timeout": {HoldId: "h", VolumeIds: []string{a.Id}, TimeoutMs: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.srv.HoldWrites(e.ctx, req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	_, err := e.srv.HoldWrites(e.ctx, &agentapi.HoldWritesRequest{HoldId: "h", VolumeIds: []string{agentapi.VolumeID("nope")}})
	wantCode(t, err, codes.NotFound)
}
