package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// mapperPool is the fake pool with block maps: maps[id] is what MapBlocks reports of id alone,
// deltas[base+" "+id] of id against base.
type mapperPool struct {
	*fakePool
	blockSize int64
	maps      map[string][]pool.Range
	deltas    map[string][]pool.Range
	err       error
	// emitted counts the ranges MapBlocks got emit to take.
	emitted int
}

func (m *mapperPool) MapBlocks(ctx context.Context, id, base string, emit func(int64, pool.Range) error) error {
	if m.err != nil {
		return m.err
	}
	rs, ok := m.maps[id]
	if base != "" {
		rs, ok = m.deltas[base+" "+id]
	}
	if !ok {
		return fmt.Errorf("%w: no map of %s against %q", pool.ErrNotFound, id, base)
	}
	for _, r := range rs {
		if err := emit(m.blockSize, r); err != nil {
			return err
		}
		m.emitted++
	}
	return nil
}

// mapStream is a GetBlockMap server stream that keeps what is sent; Send fails after
// failAfter messages when it is set.
type mapStream struct {
	grpc.ServerStream
	ctx       context.Context
	sent      []*agentapi.GetBlockMapResponse
	failAfter int
}

func (s *mapStream) Context() context.Context { return s.ctx }

func (s *mapStream) Send(r *agentapi.GetBlockMapResponse) error {
	if s.failAfter > 0 && len(s.sent) >= s.failAfter {
		return errors.New("transport is closing")
	}
	s.sent = append(s.sent, r)
	return nil
}

// ranges are every range sent, in order.
func (s *mapStream) ranges() []pool.Range {
	var out []pool.Range
	for _, m := range s.sent {
		for _, r := range m.GetRanges() {
			out = append(out, pool.Range{Offset: r.GetOffset(), Length: r.GetLength()})
		}
	}
	return out
}

const mapBlock = 64 << 10

// newMapperEnv is newEnv over a pool that maps blocks, with volume vol-a (two snapshots, a
// and a2) and volume b (snapshot b).
func newMapperEnv(t *testing.T) (*env, *mapperPool, map[string]string) {
	t.Helper()
	fs := nvmettest.New()
	cfg := testConfig()
	m := &mapperPool{fakePool: newFakePool(fs.AddDevice), blockSize: mapBlock, maps: map[string][]pool.Range{}, deltas: map[string][]pool.Range{}}
	e := &env{fs: fs, ctx: context.Background(), pool: m.fakePool}
	e.target = &nvmet.Target{Root: fs.Root(), Prefix: cfg.NQNPrefix(), FS: fs}
	e.srv = New(cfg, m, e.target)
	if err := e.srv.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	va := e.createVolume(t, "pvc-a", gib, nil)
	vb := e.createVolume(t, "pvc-b", gib, nil)
	ids["vol-a"], ids["vol-b"] = va.Id, vb.Id
	for name, src := range map[string]string{"a": va.Id, "a2": va.Id, "b": vb.Id} {
		resp, err := e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "snap-" + name, SourceVolumeId: src})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = resp.Snapshot.Id
	}
	return e, m, ids
}

func (e *env) blockMap(req *agentapi.GetBlockMapRequest) (*mapStream, error) {
	s := &mapStream{ctx: e.ctx}
	return s, e.srv.GetBlockMap(req, s)
}

func blocks(pairs ...int64) []pool.Range {
	var out []pool.Range
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, pool.Range{Offset: pairs[i] * mapBlock, Length: pairs[i+1] * mapBlock})
	}
	return out
}

func TestGetBlockMapStreamsTheMapInMessagesOfMaxResults(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	m.maps[ids["a"]] = blocks(0, 2, 5, 1, 9, 3, 20, 1, 30, 4)
	s, err := e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], MaxResults: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.sent) != 3 || len(s.sent[0].Ranges) != 2 || len(s.sent[2].Ranges) != 1 {
		t.Fatalf("sent %v, want messages of 2, 2 and 1 ranges", s.sent)
	}
	for _, msg := range s.sent {
		if msg.BlockSizeBytes != mapBlock || msg.VolumeSizeBytes != gib {
			t.Fatalf("message %v: want block size %d and volume size %d in each", msg, mapBlock, gib)
		}
	}
	if got := s.ranges(); !slices.Equal(got, m.maps[ids["a"]]) {
		t.Fatalf("ranges %v, want %v", got, m.maps[ids["a"]])
	}

	// The default batch holds them all; an empty map is one message without ranges.
	if s, err = e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"]}); err != nil || len(s.sent) != 1 {
		t.Fatalf("default max_results: %d messages, %v", len(s.sent), err)
	}
	m.maps[ids["a2"]] = nil
	if s, err = e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a2"]}); err != nil || len(s.sent) != 1 || len(s.sent[0].Ranges) != 0 || s.sent[0].VolumeSizeBytes != gib {
		t.Fatalf("empty map: %v, %v; want one message with the volume size and no range", s.sent, err)
	}
}

func TestGetBlockMapOfADeltaAsksThePoolAgainstTheBase(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	m.deltas[ids["a"]+" "+ids["a2"]] = blocks(3, 1, 7, 2)
	s, err := e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a2"], BaseSnapshotId: ids["a"]})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ranges(); !slices.Equal(got, blocks(3, 1, 7, 2)) {
		t.Fatalf("ranges %v", got)
	}
}

func TestGetBlockMapStartsAtTheStartingOffset(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	m.maps[ids["a"]] = blocks(0, 2, 5, 4, 20, 1)
	for _, c := range []struct {
		start int64
		want  []pool.Range
	}{
		{0, blocks(0, 2, 5, 4, 20, 1)},
		{2 * mapBlock, blocks(5, 4, 20, 1)}, // a range ending there is left out
		{7*mapBlock + 100, append([]pool.Range{{Offset: 7*mapBlock + 100, Length: 2*mapBlock - 100}}, blocks(20, 1)...)}, // one spanning it is cut
		{21 * mapBlock, nil},
		{gib, nil},
	} {
		s, err := e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], StartingOffset: c.start})
		if err != nil {
			t.Fatalf("starting offset %d: %v", c.start, err)
		}
		if got := s.ranges(); !slices.Equal(got, c.want) {
			t.Errorf("starting offset %d: ranges %v, want %v", c.start, got, c.want)
		}
	}
}

func TestGetBlockMapRefusesWhatItCannotMap(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	m.maps[ids["a"]] = blocks(0, 1)
	for name, c := range map[string]struct {
		req  *agentapi.GetBlockMapRequest
		want codes.Code
	}{
		"no snapshot":                {&agentapi.GetBlockMapRequest{}, codes.InvalidArgument},
		"a volume":                   {&agentapi.GetBlockMapRequest{SnapshotId: ids["vol-a"]}, codes.InvalidArgument},
		"a volume as base":           {&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], BaseSnapshotId: ids["vol-a"]}, codes.InvalidArgument},
		"a base of another volume":   {&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], BaseSnapshotId: ids["b"]}, codes.InvalidArgument},
		"malformed":                  {&agentapi.GetBlockMapRequest{SnapshotId: "snap-xyz"}, codes.NotFound},
		"unknown":                    {&agentapi.GetBlockMapRequest{SnapshotId: agentapi.SnapshotID("nope")}, codes.NotFound},
		"unknown base":               {&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], BaseSnapshotId: agentapi.SnapshotID("nope")}, codes.NotFound},
		"negative offset":            {&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], StartingOffset: -1}, codes.OutOfRange},
		"offset beyond the snapshot": {&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], StartingOffset: gib + 1}, codes.OutOfRange},
		"negative max_results":       {&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], MaxResults: -1}, codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := e.blockMap(c.req)
			wantCode(t, err, c.want)
			if len(s.sent) != 0 {
				t.Fatalf("sent %v before failing", s.sent)
			}
		})
	}
}

func TestGetBlockMapOnAPoolWithoutBlockMapsNamesTheBackend(t *testing.T) {
	e := newEnv(t) // the plain fake pool maps no blocks
	v := e.createVolume(t, "pvc-a", gib, nil)
	snap, err := e.srv.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.Id})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: snap.Snapshot.Id})
	wantCode(t, err, codes.FailedPrecondition)
	if want := "pool backend dmthin"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestGetBlockMapPassesOnThePoolsFailures(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	m.err = fmt.Errorf("dmthin: %w", thin.ErrMetadataSnapHeld)
	_, err := e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"]})
	wantCode(t, err, codes.Unavailable)
	m.err = errors.New("thin_dump: exit 1")
	_, err = e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"]})
	wantCode(t, err, codes.Internal)
}

func TestAClientThatGoesAwayStopsThePoolsMap(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	var many []pool.Range
	for i := range int64(1000) {
		many = append(many, pool.Range{Offset: 2 * i * mapBlock, Length: mapBlock})
	}
	m.maps[ids["a"]] = many
	s := &mapStream{ctx: e.ctx, failAfter: 1}
	err := e.srv.GetBlockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"], MaxResults: 10}, s)
	if err == nil {
		t.Fatal("a failed send did not fail the call")
	}
	if m.emitted > 20 {
		t.Fatalf("the pool went on with %d ranges after the client was gone", m.emitted)
	}
}

func TestGetBlockMapStopsAtTheVolumesEnd(t *testing.T) {
	e, m, ids := newMapperEnv(t)
	// The pool's last block of a 1 GiB volume, and one the pool could only report by mistake.
	last := gib/mapBlock - 1
	m.maps[ids["a"]] = append(blocks(0, 1, last, 1), pool.Range{Offset: gib - 100, Length: 2 * mapBlock}, pool.Range{Offset: gib, Length: mapBlock})
	s, err := e.blockMap(&agentapi.GetBlockMapRequest{SnapshotId: ids["a"]})
	if err != nil {
		t.Fatal(err)
	}
	want := append(blocks(0, 1, last, 1), pool.Range{Offset: gib - 100, Length: 100})
	if got := s.ranges(); !slices.Equal(got, want) {
		t.Errorf("ranges %v, want %v (none past the volume's end)", got, want)
	}
}
