package dmthin

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// Operations an intent announces. Their names are part of the on-disk format.
const (
	opCreate   = "create"
	opSnapshot = "snapshot"
	opClone    = "clone"
	opGroup    = "group"
	opDelete   = "delete"
	opExpand   = "expand"
)

// intent is an operation announced in the journal before it changes the kernel, and pending
// until a settle entry names it. Its Seq is the journal sequence number of the entry that
// announced it.
type intent struct {
	Seq uint64 `json:"seq"`
	Op  string `json:"op"`
	// New are the thin devices the operation creates (create, snapshot, clone, group), with
	// Origins the thin id each is a snapshot of (snapshot, clone, group).
	New     []*volRec `json:"new,omitempty"`
	Origins []uint32  `json:"origins,omitempty"`
	// ID and Thin name the device a delete or an expand changes; SizeBytes is the size an
	// expand grows it to, OldSizeBytes its size before.
	ID           string `json:"id,omitempty"`
	Thin         uint32 `json:"thin,omitempty"`
	SizeBytes    int64  `json:"size,omitempty"`
	OldSizeBytes int64  `json:"old_size,omitempty"`
}

// settle ends an intent: Commit applies its change to the records, else it is dropped. TxID
// is the pool's transaction id after the change, a lower bound of what the kernel has
// committed.
type settle struct {
	Intent uint64 `json:"intent"`
	Commit bool   `json:"commit"`
	TxID   uint64 `json:"txid,omitempty"`
}

// change is the payload of one journal entry: exactly one of its fields is set.
type change struct {
	Intent *intent `json:"intent,omitempty"`
	Settle *settle `json:"settle,omitempty"`
	Put    *volRec `json:"put,omitempty"`
	TxID   *uint64 `json:"txid,omitempty"`
}

// state is what the records say: every thin device with its record, the pending intents,
// and the transaction id the kernel has committed at least. It changes only by apply, in
// journal order, so that replaying the journal over a checkpoint rebuilds it exactly.
type state struct {
	vols    map[string]*volRec
	thins   map[uint32]string  // committed thin id → ID
	intents map[uint64]*intent // pending, by Seq
	// pendingThins are the thin ids pending intents create; pendingIDs the IDs pending
	// intents create or change.
	pendingThins map[uint32]uint64
	pendingIDs   map[string]uint64
	txid         uint64
	// nextThin is where the id allocator looks first: past every id ever announced.
	nextThin uint32
	// bytes is roughly what a checkpoint of this state takes.
	bytes int64
	// sizes is the encoded size of each record and intent counted in bytes.
	sizes map[string]int64
}

func newState() *state {
	return &state{
		vols:         map[string]*volRec{},
		thins:        map[uint32]string{},
		intents:      map[uint64]*intent{},
		pendingThins: map[uint32]uint64{},
		pendingIDs:   map[string]uint64{},
		sizes:        map[string]int64{},
		nextThin:     1,
		bytes:        256,
	}
}

// checkpointData is the on-disk form of a state (a checkpoint's payload).
type checkpointData struct {
	TxID     uint64    `json:"txid"`
	NextThin uint32    `json:"next_thin"`
	Volumes  []*volRec `json:"volumes"`
	Intents  []*intent `json:"intents"`
}

// snapshot returns the state's on-disk form. Records are shared, not copied (they never
// change in place).
func (s *state) snapshot() *checkpointData {
	cp := &checkpointData{TxID: s.txid, NextThin: s.nextThin}
	cp.Volumes = slices.SortedFunc(maps.Values(s.vols), func(a, b *volRec) int { return strings.Compare(a.ID, b.ID) })
	cp.Intents = slices.SortedFunc(maps.Values(s.intents), func(a, b *intent) int { return cmp.Compare(a.Seq, b.Seq) })
	return cp
}

// stateFrom rebuilds a state from a checkpoint, checking it as apply would.
func stateFrom(cp *checkpointData) (*state, error) {
	s := newState()
	s.txid, s.nextThin = cp.TxID, max(cp.NextThin, 1)
	for _, v := range cp.Volumes {
		if err := s.checkNew(v); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		s.addVol(v)
	}
	for _, it := range cp.Intents {
		if err := s.checkIntent(it); err != nil {
			return nil, fmt.Errorf("checkpoint: intent %d: %w", it.Seq, err)
		}
		s.addIntent(it)
	}
	return s, nil
}

// checkNew reports why v cannot be added as a new thin device.
func (s *state) checkNew(v *volRec) error {
	if v == nil || validID(v.ID) != nil {
		return fmt.Errorf("bad record %+v", v)
	}
	if v.Thin == 0 || v.Thin > thin.MaxDevID {
		return fmt.Errorf("%s: thin id %d out of range", v.ID, v.Thin)
	}
	if _, ok := s.vols[v.ID]; ok {
		return fmt.Errorf("%s: exists", v.ID)
	}
	if seq, ok := s.pendingIDs[v.ID]; ok {
		return fmt.Errorf("%s: intent %d is pending for it", v.ID, seq)
	}
	if id, ok := s.thins[v.Thin]; ok {
		return fmt.Errorf("%s: thin id %d belongs to %s", v.ID, v.Thin, id)
	}
	if seq, ok := s.pendingThins[v.Thin]; ok {
		return fmt.Errorf("%s: thin id %d belongs to intent %d", v.ID, v.Thin, seq)
	}
	return nil
}

// checkIntent reports why it cannot be announced now.
func (s *state) checkIntent(it *intent) error {
	if _, ok := s.intents[it.Seq]; ok {
		return fmt.Errorf("intent %d exists", it.Seq)
	}
	switch it.Op {
	case opCreate, opSnapshot, opClone, opGroup:
		if len(it.New) == 0 || (it.Op != opCreate && len(it.Origins) != len(it.New)) {
			return fmt.Errorf("%s intent with %d devices and %d origins", it.Op, len(it.New), len(it.Origins))
		}
		seen := map[string]bool{}
		seenThin := map[uint32]bool{}
		for _, v := range it.New {
			if err := s.checkNew(v); err != nil {
				return err
			}
			if seen[v.ID] || seenThin[v.Thin] {
				return fmt.Errorf("%s (thin %d) twice in one intent", v.ID, v.Thin)
			}
			seen[v.ID], seenThin[v.Thin] = true, true
		}
	case opDelete, opExpand:
		v, ok := s.vols[it.ID]
		if !ok {
			return fmt.Errorf("%s %s: no such record", it.Op, it.ID)
		}
		if v.Thin != it.Thin {
			return fmt.Errorf("%s %s: thin id %d, the record says %d", it.Op, it.ID, it.Thin, v.Thin)
		}
		if seq, ok := s.pendingIDs[it.ID]; ok {
			return fmt.Errorf("%s %s: intent %d is pending for it", it.Op, it.ID, seq)
		}
		if it.Op == opExpand && validSize(it.SizeBytes) != nil {
			return fmt.Errorf("expand %s to %d bytes", it.ID, it.SizeBytes)
		}
	default:
		return fmt.Errorf("unknown operation %q", it.Op)
	}
	return nil
}

// check reports why c cannot be applied as entry seq.
func (s *state) check(seq uint64, c *change) error {
	n := 0
	for _, set := range []bool{c.Intent != nil, c.Settle != nil, c.Put != nil, c.TxID != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("entry %d: %d changes, want 1", seq, n)
	}
	switch {
	case c.Intent != nil:
		if c.Intent.Seq != seq {
			return fmt.Errorf("entry %d: intent numbered %d", seq, c.Intent.Seq)
		}
		return s.checkIntent(c.Intent)
	case c.Settle != nil:
		if _, ok := s.intents[c.Settle.Intent]; !ok {
			return fmt.Errorf("entry %d: settles intent %d, which is not pending", seq, c.Settle.Intent)
		}
	case c.Put != nil:
		old, ok := s.vols[c.Put.ID]
		if !ok {
			return fmt.Errorf("entry %d: updates %s, which does not exist", seq, c.Put.ID)
		}
		if old.Thin != c.Put.Thin {
			return fmt.Errorf("entry %d: updates %s with thin id %d, the record says %d", seq, c.Put.ID, c.Put.Thin, old.Thin)
		}
	}
	return nil
}

// apply applies c, which check accepted.
func (s *state) apply(c *change) {
	switch {
	case c.Intent != nil:
		s.addIntent(c.Intent)
	case c.Settle != nil:
		it := s.intents[c.Settle.Intent]
		s.dropIntent(it)
		if c.Settle.Commit {
			s.commit(it)
		}
		s.txid = max(s.txid, c.Settle.TxID)
	case c.Put != nil:
		s.removeVol(c.Put.ID)
		s.addVol(c.Put)
	case c.TxID != nil:
		s.txid = max(s.txid, *c.TxID)
	}
}

func (s *state) commit(it *intent) {
	switch it.Op {
	case opCreate, opSnapshot, opClone, opGroup:
		for _, v := range it.New {
			s.addVol(v)
		}
	case opDelete:
		s.removeVol(it.ID)
	case opExpand:
		v := s.vols[it.ID]
		s.removeVol(it.ID)
		s.addVol(v.with(func(v *volRec) { v.SizeBytes = it.SizeBytes }))
	}
}

func (s *state) addVol(v *volRec) {
	s.vols[v.ID] = v
	s.thins[v.Thin] = v.ID
	s.account("v:"+v.ID, v)
	if v.Thin >= s.nextThin {
		s.nextThin = nextThinID(v.Thin)
	}
}

func (s *state) removeVol(id string) {
	if v, ok := s.vols[id]; ok {
		delete(s.thins, v.Thin)
		delete(s.vols, id)
		s.unaccount("v:" + id)
	}
}

func (s *state) addIntent(it *intent) {
	s.intents[it.Seq] = it
	for _, v := range it.New {
		s.pendingThins[v.Thin] = it.Seq
		s.pendingIDs[v.ID] = it.Seq
		if v.Thin >= s.nextThin {
			s.nextThin = nextThinID(v.Thin)
		}
	}
	if it.ID != "" {
		s.pendingIDs[it.ID] = it.Seq
	}
	s.account(fmt.Sprintf("i:%d", it.Seq), it)
}

func (s *state) dropIntent(it *intent) {
	delete(s.intents, it.Seq)
	for _, v := range it.New {
		delete(s.pendingThins, v.Thin)
		delete(s.pendingIDs, v.ID)
	}
	if it.ID != "" {
		delete(s.pendingIDs, it.ID)
	}
	s.unaccount(fmt.Sprintf("i:%d", it.Seq))
}

func (s *state) account(key string, v any) {
	b, _ := json.Marshal(v)
	s.sizes[key] = int64(len(b)) + 2
	s.bytes += int64(len(b)) + 2
}

func (s *state) unaccount(key string) {
	s.bytes -= s.sizes[key]
	delete(s.sizes, key)
}

// maxThinID is the largest thin id handed out (a variable for tests).
var maxThinID uint32 = thin.MaxDevID

// nextThinID is the id after id, wrapping to 1 past maxThinID (id 0 is never used).
func nextThinID(id uint32) uint32 {
	if id >= maxThinID {
		return 1
	}
	return id + 1
}

// usedThin reports whether a thin id is taken by a record or a pending intent.
func (s *state) usedThin(id uint32) bool {
	if _, ok := s.thins[id]; ok {
		return true
	}
	_, ok := s.pendingThins[id]
	return ok
}

// pendingFor returns the pending intent that creates or changes id, if any.
func (s *state) pendingFor(id string) (*intent, bool) {
	seq, ok := s.pendingIDs[id]
	if !ok {
		return nil, false
	}
	return s.intents[seq], true
}

// recordOf returns the volume record of id.
func (s *state) recordOf(id string) (*volRec, bool) {
	v, ok := s.vols[id]
	return v, ok
}

var errNoThinIDs = fmt.Errorf("%w: no free thin device id (all %d in use)", pool.ErrNoSpace, thin.MaxDevID)
