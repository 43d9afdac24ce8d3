//go:build vm

package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/grpctest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/snapmeta"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/lvmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const (
	mib     = int64(1) << 20
	volSize = int64(1) << 30
)

// TestChangedBlockTracking is a backup tool over the CSI SnapshotMetadata service, end to end
// below Kubernetes on each pool backend: CSI gRPC → snapmeta → agent gRPC (GetBlockMap) →
// pool → the kernel's thin metadata read by thin_dump and thin_delta. It writes known data to a
// 1 GiB volume, takes snapshot 1, changes about 10% of the volume's blocks (rewrites, zeroes,
// discards), takes snapshot 2; then makes a full backup of snapshot 1 from its allocated map
// and an incremental one from the delta 1 → 2 read off snapshot 2, rebuilds snapshot 2 from
// the two in a scratch file and checks it is byte-identical, and that both maps are exactly
// the blocks written (a delta covering every changed block and nothing else).
func TestChangedBlockTracking(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) { testChangedBlockTracking(t, b.Name, b.New(t), b.Open) })
	}
}

func testChangedBlockTracking(t *testing.T, backend, config string, open func(context.Context, string) (pool.Pool, error)) {
	ctx := vmenv.Context(t, 20*time.Minute)
	p, err := open(ctx, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	mapper, ok := p.(pool.BlockMapper)
	if !ok {
		t.Fatalf("the %s pool is not a pool.BlockMapper", backend)
	}
	agentClient := serveAgent(t, ctx, backend, p)
	cm := csi.NewSnapshotMetadataClient(grpctest.Serve(t, func(s *grpc.Server) {
		csi.RegisterSnapshotMetadataServer(s, snapmeta.New([]agentclient.StorageNode{{Name: "sn1", Address: "unix:///unused"}}, oneAgent{agentClient}))
	}))

	vol, err := agentClient.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "pvc-cbt", SizeBytes: volSize})
	if err != nil {
		t.Fatal(err)
	}
	volPath := activate(t, ctx, p, vol.Volume.Id)
	r := rand.New(rand.NewPCG(7, 7))

	// 1. Known data in 30% of the volume's 1 MiB chunks.
	chunks := int(volSize / mib)
	var written []int64 // chunk offsets
	start := time.Now()
	for c := range chunks {
		if r.IntN(10) < 3 {
			off := int64(c) * mib
			blocktest.Write(t, volPath, off, blocktest.Pattern(uint64(c), int(mib)))
			written = append(written, off)
		}
	}
	t.Logf("%s: wrote %d MiB of %d MiB in %v", backend, len(written), volSize/mib, time.Since(start).Round(time.Millisecond))
	snap1 := snapshot(t, ctx, agentClient, "cbt-1", vol.Volume.Id)

	// 2. Change about 10% of the blocks: 4 KiB rewrites inside blocks, whole blocks zeroed,
	// whole chunks discarded. The block size is the pool's, as the first map reports it.
	bs := blockSize(t, ctx, mapper, snap1)
	perm := r.Perm(len(written))
	discarded := make([]int64, 8)
	for i := range discarded {
		discarded[i] = written[perm[i]]
	}
	inDiscarded := func(off int64) bool {
		return slices.ContainsFunc(discarded, func(d int64) bool { return off >= d && off < d+mib })
	}
	changed := map[int64]bool{} // block offsets
	blocks := volSize / bs
	for len(changed) < int(blocks/10) {
		b := r.Int64N(blocks) * bs
		if inDiscarded(b) || changed[b] {
			continue
		}
		if len(changed)%25 == 0 {
			blocktest.Write(t, volPath, b, make([]byte, bs)) // zeroed
		} else {
			blocktest.Write(t, volPath, b+r.Int64N(bs/4096)*4096, blocktest.Pattern(uint64(b)^0xc0ffee, 4096))
		}
		changed[b] = true
	}
	for _, d := range discarded {
		vmenv.Run(t, "blkdiscard", "--offset", fmt.Sprint(d), "--length", fmt.Sprint(mib), volPath)
		for b := d; b < d+mib; b += bs {
			changed[b] = true
		}
	}
	snap2 := snapshot(t, ctx, agentClient, "cbt-2", vol.Volume.Id)
	t.Logf("%s: changed %d of %d blocks of %d KiB (%.1f%%), %d of them by discarding whole chunks",
		backend, len(changed), blocks, bs>>10, 100*float64(len(changed))/float64(blocks), len(discarded)*int(mib/bs))

	// 3. The backup tool: allocated map of snapshot 1, delta 1 → 2.
	start = time.Now()
	alloc, capacity := collect(t, func() (metaStream[*csi.GetMetadataAllocatedResponse], error) {
		return cm.GetMetadataAllocated(ctx, &csi.GetMetadataAllocatedRequest{SnapshotId: snap1})
	})
	allocTime := time.Since(start)
	start = time.Now()
	delta, capacity2 := collect(t, func() (metaStream[*csi.GetMetadataDeltaResponse], error) {
		return cm.GetMetadataDelta(ctx, &csi.GetMetadataDeltaRequest{BaseSnapshotId: snap1, TargetSnapshotId: snap2})
	})
	deltaTime := time.Since(start)
	if capacity != volSize || capacity2 != volSize {
		t.Fatalf("volume capacity %d and %d, want %d", capacity, capacity2, volSize)
	}

	// The maps are exactly the blocks written.
	wantAlloc := map[int64]bool{}
	for _, c := range written {
		for b := c; b < c+mib; b += bs {
			wantAlloc[b] = true
		}
	}
	checkMap(t, "allocated map of snapshot 1", alloc, wantAlloc, bs)
	checkMap(t, "delta 1 → 2", delta, changed, bs)
	deltaBytes := total(delta)
	if deltaBytes > volSize/5 {
		t.Errorf("the delta is %d MiB of a %d MiB volume: not much smaller", deltaBytes/mib, volSize/mib)
	}

	// 4. Full backup of snapshot 1, incremental from snapshot 2, rebuilt into a scratch file.
	path1, path2 := activate(t, ctx, p, agentID(snap1)), activate(t, ctx, p, agentID(snap2))
	scratch, err := os.Create(filepath.Join(vmtest.ScratchDir(), "cbt-"+backend+".img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		scratch.Close()
		os.Remove(scratch.Name())
	})
	if err := scratch.Truncate(volSize); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	copyRanges(t, path1, scratch, alloc)
	fullTime := time.Since(start)
	start = time.Now()
	copyRanges(t, path2, scratch, delta)
	incTime := time.Since(start)
	for off := int64(0); off < volSize; off += 4 * mib {
		want := blocktest.Read(t, path2, off, int(4*mib))
		got := make([]byte, 4*mib)
		if _, err := scratch.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("the rebuilt volume differs from snapshot 2 in the 4 MiB at %d", off)
		}
	}

	// Pool level: the time to compute the delta alone, and the metadata snapshot released.
	start = time.Now()
	n := 0
	if err := mapper.MapBlocks(ctx, agentID(snap2), agentID(snap1), func(int64, pool.Range) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	poolDelta := time.Since(start)
	tp := thinPool(t, backend, config)
	if s, err := tp.Status(true); err != nil || s.HeldMetadataRoot != 0 {
		t.Fatalf("after the maps the pool holds metadata snapshot %d (%v)", s.HeldMetadataRoot, err)
	}
	t.Logf("%s: volume %d MiB; full backup of snapshot 1: %d MiB (%d ranges, map in %v, copied in %v); "+
		"incremental 1 → 2: %d MiB (%d ranges, %.1f%% of the volume, map in %v, copied in %v); delta at the pool: %d ranges in %v",
		backend, volSize/mib, total(alloc)/mib, len(alloc), allocTime.Round(time.Millisecond), fullTime.Round(time.Millisecond),
		deltaBytes/mib, len(delta), 100*float64(deltaBytes)/float64(volSize), deltaTime.Round(time.Millisecond), incTime.Round(time.Millisecond),
		n, poolDelta.Round(time.Millisecond))

	// A metadata snapshot left held (by a process that died holding it) is taken over.
	if err := tp.ReserveMetadataSnap(); err != nil {
		t.Fatal(err)
	}
	again := 0
	if err := mapper.MapBlocks(ctx, agentID(snap2), agentID(snap1), func(int64, pool.Range) error { again++; return nil }); err != nil || again != n {
		t.Fatalf("with a stale metadata snapshot held: %d ranges, %v; want %d", again, err, n)
	}
	if s, err := tp.Status(true); err != nil || s.HeldMetadataRoot != 0 {
		t.Fatalf("the stale metadata snapshot is still held: %d (%v)", s.HeldMetadataRoot, err)
	}
	// Reads of one pool's metadata take turns: several at once all get the whole map.
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Go(func() {
			errs[i] = mapper.MapBlocks(ctx, agentID(snap2), agentID(snap1), func(int64, pool.Range) error { counts[i]++; return nil })
		})
	}
	wg.Wait()
	for i := range counts {
		if errs[i] != nil || counts[i] != n {
			t.Fatalf("concurrent map %d: %d ranges, %v; want %d", i, counts[i], errs[i], n)
		}
	}
	// A reader that stops (its emit fails) or goes away (its context ends) mid-map leaves the
	// metadata snapshot released.
	stop := errors.New("reader stopped")
	if err := mapper.MapBlocks(ctx, agentID(snap2), "", func(int64, pool.Range) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("a failing emit: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	err = mapper.MapBlocks(cctx, agentID(snap2), "", func(int64, pool.Range) error {
		if cctx.Err() == nil {
			cancel()
			time.Sleep(100 * time.Millisecond) // the tool is stopped meanwhile
		}
		return nil
	})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a map whose context ended: %v, want context.Canceled", err)
	}
	if s, err := tp.Status(true); err != nil || s.HeldMetadataRoot != 0 {
		t.Fatalf("after maps cut short the pool holds metadata snapshot %d (%v)", s.HeldMetadataRoot, err)
	}

	// A volume has no block map: only snapshots do.
	stream, err := cm.GetMetadataAllocated(ctx, &csi.GetMetadataAllocatedRequest{SnapshotId: contract.ObjectID("sn1", vol.Volume.Id)})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("block map of a volume ID: %v, want NotFound", err)
	}
}

// serveAgent serves an agent over the pool p in memory (gRPC, the binaries' interceptors),
// with a fake configfs: the test reads and writes the volumes on the storage node itself.
func serveAgent(t *testing.T, ctx context.Context, backend string, p pool.Pool) agentapi.AgentClient {
	t.Helper()
	cfg := agent.Config{
		NodeName: "sn1",
		Pool:     agent.PoolConfig{Backend: backend, OvercommitRatio: 10},
		Portals:  []agent.PortalConfig{{ID: 1, Transport: "tcp", Address: "192.0.2.1"}},
		Listen:   "unix:///run/unused.sock",
	}
	switch backend {
	case agent.BackendDMThin:
		cfg.Pool.MetadataDevice, cfg.Pool.DataDevice = "/dev/unused-meta", "/dev/unused-data"
	default:
		cfg.Pool.VolumeGroup, cfg.Pool.ThinPool = "unused", "pool"
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fs := nvmettest.New()
	srv := agent.New(cfg, p, &nvmet.Target{Root: fs.Root(), Prefix: cfg.NQNPrefix(), FS: fs})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return agentapi.NewAgentClient(grpctest.Serve(t, func(s *grpc.Server) { agentapi.RegisterAgentServer(s, srv) }))
}

// oneAgent is the agentclient.Source of storage node sn1 alone.
type oneAgent struct{ c agentapi.AgentClient }

func (o oneAgent) Client(name string) (agentapi.AgentClient, error) {
	if name != "sn1" {
		return nil, fmt.Errorf("%w %q", agentclient.ErrUnknownNode, name)
	}
	return o.c, nil
}

func activate(t *testing.T, ctx context.Context, p pool.Pool, id string) string {
	t.Helper()
	v, err := p.Activate(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return v.Path
}

// snapshot takes a snapshot through the agent and returns its CSI ID.
func snapshot(t *testing.T, ctx context.Context, c agentapi.AgentClient, name, vol string) string {
	t.Helper()
	resp, err := c.CreateSnapshot(ctx, &agentapi.CreateSnapshotRequest{Name: name, SourceVolumeId: vol})
	if err != nil {
		t.Fatal(err)
	}
	return contract.ObjectID("sn1", resp.Snapshot.Id)
}

func agentID(csiID string) string {
	_, id, _ := contract.ParseObjectID(csiID, "snap")
	return id
}

// blockSize is the pool's block size, from the first range of a map.
func blockSize(t *testing.T, ctx context.Context, m pool.BlockMapper, snapCSIID string) int64 {
	t.Helper()
	var bs int64
	stop := errors.New("enough")
	if err := m.MapBlocks(ctx, agentID(snapCSIID), "", func(b int64, _ pool.Range) error { bs = b; return stop }); !errors.Is(err, stop) || bs <= 0 || mib%bs != 0 {
		t.Fatalf("block size %d (%v): want a divisor of 1 MiB", bs, err)
	}
	return bs
}

type metaStream[T interface {
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*csi.BlockMetadata
	GetBlockMetadataType() csi.BlockMetadataType
}] interface {
	Recv() (T, error)
}

// collect reads a SnapshotMetadata stream to its end, checking the ranges ascend without
// overlap, and returns them with the capacity.
func collect[T interface {
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*csi.BlockMetadata
	GetBlockMetadataType() csi.BlockMetadataType
}](t *testing.T, call func() (metaStream[T], error)) ([]pool.Range, int64) {
	t.Helper()
	s, err := call()
	if err != nil {
		t.Fatal(err)
	}
	var out []pool.Range
	var capacity, next int64
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return out, capacity
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.GetBlockMetadataType() != csi.BlockMetadataType_VARIABLE_LENGTH {
			t.Fatalf("block metadata type %v", m.GetBlockMetadataType())
		}
		capacity = m.GetVolumeCapacityBytes()
		for _, b := range m.GetBlockMetadata() {
			if b.GetByteOffset() < next || b.GetSizeBytes() <= 0 {
				t.Fatalf("range %v after %d", b, next)
			}
			next = b.GetByteOffset() + b.GetSizeBytes()
			out = append(out, pool.Range{Offset: b.GetByteOffset(), Length: b.GetSizeBytes()})
		}
	}
}

// checkMap fails the test unless ranges cover exactly the blocks of want.
func checkMap(t *testing.T, what string, ranges []pool.Range, want map[int64]bool, bs int64) {
	t.Helper()
	got := map[int64]bool{}
	for _, r := range ranges {
		if r.Offset%bs != 0 || r.Length%bs != 0 {
			t.Fatalf("%s: range %+v is not in whole blocks of %d", what, r, bs)
		}
		for b := r.Offset; b < r.Offset+r.Length; b += bs {
			got[b] = true
		}
	}
	var missing, extra []int64
	for b := range want {
		if !got[b] {
			missing = append(missing, b)
		}
	}
	for b := range got {
		if !want[b] {
			extra = append(extra, b)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		t.Errorf("%s: %d blocks missing (first %v), %d blocks that did not change (first %v)",
			what, len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
	}
}

func total(rs []pool.Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Length
	}
	return n
}

// copyRanges copies ranges of the device src into the same offsets of dst, in reads of up to
// 4 MiB.
func copyRanges(t *testing.T, src string, dst *os.File, ranges []pool.Range) {
	t.Helper()
	for _, r := range ranges {
		for off := r.Offset; off < r.Offset+r.Length; off += 4 * mib {
			n := min(4*mib, r.Offset+r.Length-off)
			if _, err := dst.WriteAt(blocktest.Read(t, src, off, int(n)), off); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// thinPool is the thin-pool device of a backend's pool (for its status and messages).
func thinPool(t *testing.T, backend, config string) thin.Pool {
	t.Helper()
	ctl, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	if backend == agent.BackendDMThin {
		var c dmthinConfig
		if err := json.Unmarshal([]byte(config), &c); err != nil {
			t.Fatal(err)
		}
		return thin.Pool{Control: ctl, Name: c.Name + "-pool"}
	}
	var o lvmthin.Options
	if err := json.Unmarshal([]byte(config), &o); err != nil {
		t.Fatal(err)
	}
	if err := lvm.ValidateName(o.VolumeGroup); err != nil {
		t.Fatal(err)
	}
	return thin.Pool{Control: ctl, Name: o.VolumeGroup + "-" + o.ThinPool + "-tpool"}
}
