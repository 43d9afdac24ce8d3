package dmthin

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

var errCrashed = errors.New("crashed")

// memDisk is a device in memory that can be made to "lose power" in the middle of a write:
// the write with number tearAt keeps only its first tearBytes bytes, and every write after
// it fails (the process is dead).
type memDisk struct {
	mu        sync.Mutex
	b         []byte
	writes    int
	tearAt    int
	tearBytes int
	crashed   bool
}

func newMemDisk(size int) *memDisk { return &memDisk{b: make([]byte, size)} }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return 0, errCrashed
	}
	m.writes++
	if m.tearAt > 0 && m.writes == m.tearAt {
		copy(m.b[off:], p[:min(m.tearBytes, len(p))])
		m.crashed = true
		return 0, errCrashed
	}
	return copy(m.b[off:], p), nil
}

// reboot is the disk after the crash: as it was left, writable again.
func (m *memDisk) reboot() *memDisk {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &memDisk{b: append([]byte(nil), m.b...)}
}

// testRegion is a small record store: 1 MiB slots, a 2 MiB journal.
var testRegion = storeRegion{slot: [2]int64{0, mib}, slotBytes: mib, jOff: 2 * mib, jBytes: 2 * mib}

var testUUID = poolUUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func newTestStore(t *testing.T) (*memDisk, *store) {
	t.Helper()
	d := newMemDisk(4 * mib)
	if err := formatStore(d, testRegion, testUUID); err != nil {
		t.Fatal(err)
	}
	return d, reopen(t, d)
}

func reopen(t *testing.T, d blockIO) *store {
	t.Helper()
	s, err := openStore(d, testRegion, testUUID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

func rec(id string, thin uint32) *volRec {
	return &volRec{ID: id, Thin: thin, SizeBytes: 1 << 30, Name: "pvc-" + id, UUID: "uuid-" + id,
		Labels: map[string]string{"k": "v"}, Hosts: []diskHost{{NQN: "nqn.host", NodeID: "n1"}}, Transports: []string{"tcp"}}
}

// history drives a store through a deterministic mix of changes: creations (intent and
// settle), host updates, deletions, and one intent left pending at the end.
func history(t *testing.T, s *store, n int) {
	t.Helper()
	ctx := context.Background()
	var first int
	s.view(func(st *state) { first = len(st.sizes) * 1000 }) // IDs not used yet
	for i := range n {
		id := fmt.Sprintf("vol-%d", first+i)
		ids, err := s.allocThin(1, 1024)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := s.append(ctx, func(seq uint64) *change {
			return &change{Intent: &intent{Seq: seq, Op: opCreate, New: []*volRec{rec(id, ids[0])}}}
		})
		if err != nil {
			t.Fatalf("intent %d: %v", i, err)
		}
		if _, err := s.append(ctx, func(uint64) *change {
			return &change{Settle: &settle{Intent: seq, Commit: i%7 != 3, TxID: uint64(i)}}
		}); err != nil {
			t.Fatalf("settle %d: %v", i, err)
		}
		switch {
		case i%5 == 1 && i%7 != 3:
			v := rec(id, ids[0]).with(func(v *volRec) { v.Hosts = append(v.Hosts, diskHost{NQN: "nqn.other"}) })
			if _, err := s.append(ctx, func(uint64) *change { return &change{Put: v} }); err != nil {
				t.Fatal(err)
			}
		case i%5 == 2 && i%7 != 3:
			seq, err := s.append(ctx, func(seq uint64) *change {
				return &change{Intent: &intent{Seq: seq, Op: opDelete, ID: id, Thin: ids[0]}}
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.append(ctx, func(uint64) *change { return &change{Settle: &settle{Intent: seq, Commit: true}} }); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// sameState fails the test unless two stores hold the same state.
func sameState(t *testing.T, got, want *store) {
	t.Helper()
	var g, w *checkpointData
	got.view(func(st *state) { g = st.snapshot() })
	want.view(func(st *state) { w = st.snapshot() })
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("state after reopen differs:\n got %d volumes, %d intents, txid %d, next %d\nwant %d volumes, %d intents, txid %d, next %d",
			len(g.Volumes), len(g.Intents), g.TxID, g.NextThin, len(w.Volumes), len(w.Intents), w.TxID, w.NextThin)
	}
	if got.seq != want.seq || got.head != want.head {
		t.Fatalf("reopened at entry %d position %d, want %d at %d", got.seq, got.head, want.seq, want.head)
	}
}

func TestJournalReplaysEveryChange(t *testing.T) {
	d, s := newTestStore(t)
	history(t, s, 30)
	s.close()
	r := reopen(t, d)
	sameState(t, r, s)
	var n int
	r.view(func(st *state) { n = len(st.vols) })
	if n == 0 || n == 30 {
		t.Fatalf("%d volumes: the history should keep some and drop some", n)
	}
	// And it goes on where it stopped.
	history(t, r, 5)
}

func TestCheckpointsKeepTheJournalBounded(t *testing.T) {
	d, s := newTestStore(t)
	var mu sync.Mutex
	var gens []uint64
	s.onCheckpoint = func(i ckptInfo, err error) {
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		gens = append(gens, i.gen)
		mu.Unlock()
	}
	// ~2.5 entries of 4 KiB per step: many laps of a 2 MiB ring.
	history(t, s, 2000)
	s.close()
	mu.Lock()
	ckpts := len(gens)
	mu.Unlock()
	if ckpts < 10 {
		t.Fatalf("%d checkpoints for ~5000 entries in a 512-entry ring", ckpts)
	}
	if s.head < 5*uint64(testRegion.jBytes) {
		t.Fatalf("the journal made only %d bytes of progress: no laps of the ring", s.head)
	}
	sameState(t, reopen(t, d), s)
}

func TestTornLastEntryIsDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear int
		// kept: the torn write holds the whole entry (it tore in the padding): it counts as
		// written, and its intent is pending for recovery to end.
		kept bool
	}{
		{"nothing written", 0, false},
		{"torn in the header", 40, false},
		{"torn in the payload", entPayload + 20, false},
		{"torn in the padding", blockSize - 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, s := newTestStore(t)
			history(t, s, 10)
			s.close()
			before := reopen(t, d)
			// The next write is an intent: it is torn.
			d.tearAt, d.tearBytes = d.writes+1, tc.tear
			ids, _ := s.allocThin(1, 0)
			_, err := s.append(context.Background(), func(seq uint64) *change {
				return &change{Intent: &intent{Seq: seq, Op: opCreate, New: []*volRec{rec("torn", ids[0])}}}
			})
			if !errors.Is(err, errCrashed) {
				t.Fatalf("append during the crash: %v", err)
			}
			if _, err := s.append(context.Background(), func(uint64) *change { return &change{TxID: new(uint64)} }); !errors.Is(err, errStoreFailed) {
				t.Fatalf("append after a failed write: %v, want errStoreFailed", err)
			}
			d2 := d.reboot()
			after := reopen(t, d2)
			if tc.kept {
				after.view(func(st *state) {
					if _, ok := st.pendingFor("torn"); !ok {
						t.Error("a whole entry torn only in its padding was dropped")
					}
				})
				return
			}
			sameState(t, after, before)
			// The next entry goes where the torn one was, and survives another reopen.
			history(t, after, 3)
			after.close()
			sameState(t, reopen(t, d2), after)
		})
	}
}

func TestCorruptCheckpointFallsBackToTheOther(t *testing.T) {
	d, s := newTestStore(t)
	history(t, s, 300) // several checkpoints
	s.close()
	newest := s.newest
	if newest.gen < 3 {
		t.Fatalf("only checkpoint %d", newest.gen)
	}
	// Flip a byte of the newest checkpoint's payload.
	d.b[testRegion.slot[newest.gen%2]+cpPayload+10] ^= 0xff
	r := reopen(t, d)
	if r.newest.gen != newest.gen-1 {
		t.Fatalf("reopened from checkpoint %d, want the older %d", r.newest.gen, newest.gen-1)
	}
	sameState(t, r, s)
	// The next checkpoint goes into the damaged slot.
	r.checkpointNow(context.Background())
	if r.newest.gen != newest.gen {
		t.Fatalf("next checkpoint %d, want %d", r.newest.gen, newest.gen)
	}
	r.close()
	sameState(t, reopen(t, d), s)
}

func TestCrashWhileWritingACheckpoint(t *testing.T) {
	d, s := newTestStore(t)
	history(t, s, 100)
	s.close()
	before := reopen(t, d)
	// The checkpoint write is torn: its slot holds half of it.
	d.tearAt, d.tearBytes = d.writes+1, 6000
	if err := before.checkpointNow(context.Background()); !errors.Is(err, errCrashed) {
		t.Fatalf("checkpoint during the crash: %v", err)
	}
	after := reopen(t, d.reboot())
	sameState(t, after, before)
}

func TestCrashRightAfterACheckpoint(t *testing.T) {
	// The checkpoint is whole, and nothing was written after it: the journal entries it
	// covers are still in the ring and must not be applied twice.
	d, s := newTestStore(t)
	history(t, s, 40)
	if err := s.checkpointNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.close()
	r := reopen(t, d.reboot())
	sameState(t, r, s)
	if r.newest.seq != s.seq || r.newest.pos != s.head {
		t.Fatalf("checkpoint covers entry %d at %d, want %d at %d", r.newest.seq, r.newest.pos, s.seq, s.head)
	}
	history(t, r, 2)
}

func TestAnotherPoolsJournalIsIgnored(t *testing.T) {
	d, s := newTestStore(t)
	history(t, s, 20)
	s.close()
	// Format a new pool over the same device: the old journal entries remain, but name
	// another pool.
	other := poolUUID{9}
	if err := formatStore(d, testRegion, other); err != nil {
		t.Fatal(err)
	}
	r, err := openStore(d, testRegion, other)
	if err != nil {
		t.Fatal(err)
	}
	r.view(func(st *state) {
		if len(st.vols) != 0 || len(st.intents) != 0 {
			t.Errorf("the new pool sees %d records and %d intents of the old one", len(st.vols), len(st.intents))
		}
	})
	if _, err := openStore(d, testRegion, testUUID); err == nil {
		t.Error("the old pool's store opened after a format by another")
	}
}

func TestJournalWaitsForRoomBoundedByContext(t *testing.T) {
	_, s := newTestStore(t)
	block := make(chan struct{})
	s.wmu.Lock()
	s.running = block // a checkpoint that never ends
	s.head = s.older.pos + uint64(testRegion.jBytes)
	s.wmu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.append(ctx, func(uint64) *change { return &change{TxID: new(uint64)} })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("append to a full journal: %v, want context.Canceled", err)
	}
}

func TestEntryLargerThanAQuarterOfTheJournalIsRefused(t *testing.T) {
	_, s := newTestStore(t)
	big := rec("big", 1)
	big.Labels = map[string]string{}
	for i := range 20000 {
		big.Labels[fmt.Sprintf("label-%05d", i)] = "value-value-value"
	}
	_, err := s.append(context.Background(), func(seq uint64) *change {
		return &change{Intent: &intent{Seq: seq, Op: opCreate, New: []*volRec{big}}}
	})
	if !errors.Is(err, pool.ErrInvalid) {
		t.Fatalf("a %d-byte record: %v, want ErrInvalid", len(big.Labels)*30, err)
	}
}

func TestRecordStoreFullIsNoSpace(t *testing.T) {
	_, s := newTestStore(t)
	s.smu.Lock()
	s.st.bytes = s.capacity() - 100
	s.smu.Unlock()
	if _, err := s.allocThin(1, 1024); !errors.Is(err, pool.ErrNoSpace) {
		t.Fatalf("allocation in a full store: %v, want ErrNoSpace", err)
	}
}
