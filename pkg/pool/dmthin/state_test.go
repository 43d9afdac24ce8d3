package dmthin

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

func TestIntentsCommitOrDropTheirChange(t *testing.T) {
	st := newState()
	step := uint64(0)
	apply := func(c *change) {
		t.Helper()
		step++
		if c.Intent != nil {
			c.Intent.Seq = step
		}
		if err := st.check(step, c); err != nil {
			t.Fatal(err)
		}
		st.apply(c)
	}
	apply(&change{Intent: &intent{Op: opCreate, New: []*volRec{rec("a", 1)}}})
	if _, ok := st.vols["a"]; ok {
		t.Fatal("a pending create is a record")
	}
	if !st.usedThin(1) {
		t.Fatal("the thin id of a pending create is free")
	}
	apply(&change{Settle: &settle{Intent: 1, Commit: true, TxID: 1}})
	if st.vols["a"] == nil || st.thins[1] != "a" || st.txid != 1 {
		t.Fatalf("committed create: %+v", st.vols)
	}

	apply(&change{Intent: &intent{Op: opSnapshot, New: []*volRec{rec("s", 2)}, Origins: []uint32{1}}})
	apply(&change{Settle: &settle{Intent: 3, Commit: false}})
	if st.vols["s"] != nil || st.usedThin(2) {
		t.Fatal("a dropped snapshot left its record or thin id")
	}

	apply(&change{Intent: &intent{Op: opExpand, ID: "a", Thin: 1, SizeBytes: 4 << 30, OldSizeBytes: 1 << 30}})
	if _, ok := st.pendingFor("a"); !ok {
		t.Fatal("no pending intent for a")
	}
	apply(&change{Settle: &settle{Intent: 5, Commit: true, TxID: 1}})
	if st.vols["a"].SizeBytes != 4<<30 {
		t.Fatalf("expanded size %d", st.vols["a"].SizeBytes)
	}

	apply(&change{Intent: &intent{Op: opDelete, ID: "a", Thin: 1}})
	apply(&change{Settle: &settle{Intent: 7, Commit: true, TxID: 3}})
	if len(st.vols) != 0 || len(st.thins) != 0 || len(st.intents) != 0 || st.txid != 3 {
		t.Fatalf("after delete: %+v %+v %+v", st.vols, st.thins, st.intents)
	}
	if st.nextThin != 3 {
		t.Fatalf("next thin id %d, want 3 (past every id ever announced)", st.nextThin)
	}
	if st.bytes != newState().bytes {
		t.Fatalf("accounted %d bytes with nothing left, want %d", st.bytes, newState().bytes)
	}
}

func TestStateRefusesInconsistentChanges(t *testing.T) {
	st := newState()
	st.apply(&change{Intent: &intent{Seq: 1, Op: opCreate, New: []*volRec{rec("a", 1)}}})
	st.apply(&change{Settle: &settle{Intent: 1, Commit: true}})
	for name, c := range map[string]*change{
		"settle of an unknown intent":    {Settle: &settle{Intent: 99}},
		"create of an existing ID":       {Intent: &intent{Seq: 2, Op: opCreate, New: []*volRec{rec("a", 2)}}},
		"create of a used thin id":       {Intent: &intent{Seq: 2, Op: opCreate, New: []*volRec{rec("b", 1)}}},
		"create of thin id 0":            {Intent: &intent{Seq: 2, Op: opCreate, New: []*volRec{rec("b", 0)}}},
		"create beyond 24 bits":          {Intent: &intent{Seq: 2, Op: opCreate, New: []*volRec{rec("b", thin.MaxDevID+1)}}},
		"one ID twice in a group":        {Intent: &intent{Seq: 2, Op: opGroup, New: []*volRec{rec("b", 2), rec("b", 3)}, Origins: []uint32{1, 1}}},
		"snapshot without origin":        {Intent: &intent{Seq: 2, Op: opSnapshot, New: []*volRec{rec("b", 2)}}},
		"delete of a missing ID":         {Intent: &intent{Seq: 2, Op: opDelete, ID: "x", Thin: 1}},
		"delete with the wrong thin id":  {Intent: &intent{Seq: 2, Op: opDelete, ID: "a", Thin: 5}},
		"update of a missing ID":         {Put: rec("x", 9)},
		"update changing the thin id":    {Put: rec("a", 9)},
		"an intent numbered wrongly":     {Intent: &intent{Seq: 7, Op: opCreate, New: []*volRec{rec("b", 2)}}},
		"an unknown operation":           {Intent: &intent{Seq: 2, Op: "frobnicate"}},
		"two changes in one entry":       {Put: rec("a", 1), TxID: new(uint64)},
		"no change":                      {},
		"expand to a size not in blocks": {Intent: &intent{Seq: 2, Op: opExpand, ID: "a", Thin: 1, SizeBytes: 1000}},
	} {
		if err := st.check(2, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAllocatorSkipsUsedIDsAndWraps(t *testing.T) {
	_, s := newTestStore(t)
	ctx := context.Background()
	ids, err := s.allocThin(3, 0)
	if err != nil || !reflect.DeepEqual(ids, []uint32{1, 2, 3}) {
		t.Fatalf("first ids %v, %v", ids, err)
	}
	// Reserved ids are not handed out twice; released ones are skipped until the cursor
	// comes round again.
	more, _ := s.allocThin(1, 0)
	if more[0] != 4 {
		t.Fatalf("next id %d, want 4", more[0])
	}
	s.release(ids)
	s.quarantine(5)
	next, _ := s.allocThin(1, 0)
	if next[0] != 6 {
		t.Fatalf("after a quarantine of 5: %d, want 6", next[0])
	}
	// An intent takes the reservation over.
	if _, err := s.append(ctx, func(seq uint64) *change {
		return &change{Intent: &intent{Seq: seq, Op: opCreate, New: []*volRec{rec("a", 6)}}}
	}); err != nil {
		t.Fatal(err)
	}
	s.release(next)
	s.view(func(st *state) {
		if !st.usedThin(6) {
			t.Error("id 6 is free after its intent")
		}
	})
	// Wrap past 2^24-1 to 1, skipping what is used.
	s.smu.Lock()
	s.cursor = thin.MaxDevID
	s.smu.Unlock()
	wrap, _ := s.allocThin(3, 0)
	if !reflect.DeepEqual(wrap, []uint32{thin.MaxDevID, 1, 2}) {
		t.Fatalf("ids across the wrap: %v", wrap)
	}
	// The cursor survives a reopen (it is past every announced id).
	s.close()
	r := reopen(t, s.dev)
	if r.cursor != 7 {
		t.Fatalf("cursor after reopen %d, want 7", r.cursor)
	}
}

func TestAllocatorRunsOutOfIDs(t *testing.T) {
	defer func(old uint32) { maxThinID = old }(maxThinID)
	maxThinID = 10
	_, s := newTestStore(t)
	if _, err := s.allocThin(8, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.allocThin(2, 0); err != nil {
		t.Fatalf("the last two ids: %v", err)
	}
	if _, err := s.allocThin(1, 0); !errors.Is(err, pool.ErrNoSpace) {
		t.Fatalf("with every id in use: %v, want ErrNoSpace", err)
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	r := pool.Record{
		ID: "vol-0123", SizeBytes: 5 << 30, Name: "pvc-1", UUID: "5f0c3b8e-1c55-4d7b-9b7a-0d8d6b0f1a2b",
		Source: "snap-9", CreatedUnixNano: 1700000000123456789,
		Labels:     map[string]string{"a": "b", "c": ""},
		Hosts:      []pool.Host{{NQN: "nqn.2014-08.org.nvmexpress:uuid:1", NodeID: "node-a", ReadOnly: true}, {NQN: "nqn.x"}},
		Transports: []string{"tcp", "rdma"},
	}
	v := newVolRec(r, 42, true)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back volRec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.record(); !reflect.DeepEqual(got, r) {
		t.Fatalf("record round trip:\n got %+v\nwant %+v\n(json %s)", got, r, b)
	}
	if back.Thin != 42 || !back.ReadOnly || back.sectors() != 5<<30/512 {
		t.Fatalf("thin id, mode or size lost: %+v", back)
	}
	// The JSON names are the on-disk format.
	for _, key := range []string{`"id":`, `"thin":42`, `"size":`, `"ro":true`, `"name":`, `"uuid":`, `"source":`,
		`"created":`, `"labels":`, `"hosts":[{"nqn":`, `"node":"node-a"`, `"transports":`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("encoded record %s lacks %s", b, key)
		}
	}
	// Changing a copy leaves the original alone.
	w := v.with(func(v *volRec) { v.Labels["a"] = "changed"; v.Hosts[0].NQN = "changed" })
	if v.Labels["a"] != "b" || v.Hosts[0].NQN == "changed" || w.Labels["a"] != "changed" {
		t.Fatal("with changed the original record")
	}
}

func TestRecordValidation(t *testing.T) {
	ok := pool.Record{ID: "vol-1", SizeBytes: 1 << 20}
	if err := validRecord(ok); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]pool.Record{
		"empty ID":           {SizeBytes: 1 << 20},
		"slash in the ID":    {ID: "vol/1", SizeBytes: 1 << 20},
		"ID starting with -": {ID: "-vol", SizeBytes: 1 << 20},
		"ID of 65 bytes":     {ID: strings.Repeat("a", 65), SizeBytes: 1 << 20},
		"the pool's name":    {ID: "pool", SizeBytes: 1 << 20},
		"size 0":             {ID: "vol-1"},
		"size not sectors":   {ID: "vol-1", SizeBytes: 1000},
		"negative size":      {ID: "vol-1", SizeBytes: -512},
		"huge record":        {ID: "vol-1", SizeBytes: 512, Labels: map[string]string{"x": strings.Repeat("y", maxRecordLen)}},
	} {
		if err := validRecord(r); !errors.Is(err, pool.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
