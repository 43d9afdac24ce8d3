package agent

import (
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// index is the agent's in-memory view of the pool's records: every lookup, listing, capacity
// admission and host-identity check answers from it, so their cost does not grow with the
// number of volumes and no call lists the pool. It is loaded from the pool at start (the
// pool's records are the durable truth) and changed only after the pool acknowledged a change,
// by the call holding that ID's lock.
type index struct {
	mu   sync.RWMutex
	recs map[string]pool.Record
	// hostNodes counts, per host NQN, the publications of each node ID that presented it.
	hostNodes map[string]map[string]int
	// hostKeys holds, per host NQN, the publication with the newest DH-HMAC-CHAP keys seen
	// while the host has publications: the keys in force (the kernel has one pair per host).
	hostKeys map[string]pool.Host
	// provisioned is the sum of every record's size plus the reservations of calls in flight.
	provisioned int64
}

func newIndex(vols []pool.Volume) *index {
	x := &index{recs: map[string]pool.Record{}, hostNodes: map[string]map[string]int{}, hostKeys: map[string]pool.Host{}}
	for _, v := range vols {
		x.put(v.Record)
	}
	return x
}

// get returns a copy of the record of id.
func (x *index) get(id string) (pool.Record, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, ok := x.recs[id]
	return r.Clone(), ok
}

// put adds or replaces the record of id.
func (x *index) put(rec pool.Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putLocked(rec)
}

func (x *index) putLocked(rec pool.Record) {
	if old, ok := x.recs[rec.ID]; ok {
		x.forget(old)
	}
	rec = rec.Clone()
	x.recs[rec.ID] = rec
	x.provisioned += rec.SizeBytes
	for _, h := range rec.Hosts {
		nodes := x.hostNodes[h.NQN]
		if nodes == nil {
			nodes = map[string]int{}
			x.hostNodes[h.NQN] = nodes
		}
		nodes[h.NodeID]++
		if h.DHCHAPKey != "" && h.KeysSetUnixNano >= x.hostKeys[h.NQN].KeysSetUnixNano {
			x.hostKeys[h.NQN] = h
		}
	}
}

// remove drops the record of id.
func (x *index) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.recs[id]; ok {
		x.forget(old)
		delete(x.recs, id)
	}
}

// forget takes rec's size and hosts out of the totals; x.mu is held.
func (x *index) forget(rec pool.Record) {
	x.provisioned -= rec.SizeBytes
	for _, h := range rec.Hosts {
		if h.DHCHAPKey != "" && x.hostKeys[h.NQN] == h {
			x.recomputeKeys(h.NQN, rec.ID)
		}
		if nodes := x.hostNodes[h.NQN]; nodes != nil {
			if nodes[h.NodeID]--; nodes[h.NodeID] <= 0 {
				delete(nodes, h.NodeID)
			}
			if len(nodes) == 0 {
				delete(x.hostNodes, h.NQN)
				delete(x.hostKeys, h.NQN)
			}
		}
	}
}

// nodesOf returns the node IDs that presented host NQN nqn, sorted.
func (x *index) nodesOf(nqn string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ids := make([]string, 0, len(x.hostNodes[nqn]))
	for n := range x.hostNodes[nqn] {
		ids = append(ids, n)
	}
	slices.Sort(ids)
	return ids
}

// recomputeKeys sets the keys in force for host NQN nqn to the newest among the records
// other than skipID's (none: no keys in force); x.mu is held.
func (x *index) recomputeKeys(nqn, skipID string) {
	delete(x.hostKeys, nqn)
	for id, r := range x.recs {
		if id == skipID {
			continue
		}
		for _, h := range r.Hosts {
			if h.NQN == nqn && h.DHCHAPKey != "" && h.KeysSetUnixNano >= x.hostKeys[nqn].KeysSetUnixNano {
				x.hostKeys[nqn] = h
			}
		}
	}
}

// keysOf returns the DH-HMAC-CHAP keys in force for host NQN nqn: the newest of the indexed
// publications' and rec's (a record being projected, perhaps not indexed yet).
func (x *index) keysOf(nqn string, rec pool.Record) (pool.Host, bool) {
	x.mu.RLock()
	best, ok := x.hostKeys[nqn]
	x.mu.RUnlock()
	for _, h := range rec.Hosts {
		if h.NQN == nqn && h.DHCHAPKey != "" && (!ok || h.KeysSetUnixNano > best.KeysSetUnixNano) {
			best, ok = h, true
		}
	}
	return best, ok
}

// otherNode returns a node other than nodeID that published host NQN nqn on any volume.
func (x *index) otherNode(nqn, nodeID string) (string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for n := range x.hostNodes[nqn] {
		if n != nodeID {
			return n, true
		}
	}
	return "", false
}

// reservation is capacity admitted for a call in flight: it ends with commit (the pool made
// the record) or release (it did not).
type reservation struct {
	x    *index
	size int64
	once sync.Once
}

// reserve admits size more bytes under limit atomically: however many calls race, the sum of
// the records and the reservations in flight never exceeds limit.
func (x *index) reserve(size, limit int64, explain func(provisioned int64) error) (*reservation, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.provisioned+size > limit {
		return nil, explain(x.provisioned)
	}
	x.provisioned += size
	return &reservation{x: x, size: size}, nil
}

// commit records rec (new, or replacing the record of its ID) in place of the reserved bytes,
// in one step, so that the total never dips below what is promised.
func (r *reservation) commit(rec pool.Record) {
	r.once.Do(func() {
		r.x.mu.Lock()
		defer r.x.mu.Unlock()
		r.x.provisioned -= r.size
		r.x.putLocked(rec)
	})
}

// release gives the reserved bytes back; after commit it does nothing.
func (r *reservation) release() {
	r.once.Do(func() {
		r.x.mu.Lock()
		r.x.provisioned -= r.size
		r.x.mu.Unlock()
	})
}

// provisionedBytes is the sum of every record's size plus the reservations in flight.
func (x *index) provisionedBytes() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.provisioned
}

// list returns copies of the records whose ID starts with prefix, ordered by ID.
func (x *index) list(prefix string) []pool.Record {
	x.mu.RLock()
	out := make([]pool.Record, 0, len(x.recs))
	for id, r := range x.recs {
		if strings.HasPrefix(id, prefix) {
			out = append(out, r.Clone())
		}
	}
	x.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// counts are what the index holds, for metrics.
type counts struct {
	volumes, snapshots, exported, publications, hosts int
}

func (x *index) counts() counts {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var c counts
	for id, r := range x.recs {
		switch {
		case strings.HasPrefix(id, snapshotPrefix):
			c.snapshots++
		case len(r.Hosts) > 0:
			c.exported++
			c.volumes++
			c.publications += len(r.Hosts)
		default:
			c.volumes++
		}
	}
	c.hosts = len(x.hostNodes)
	return c
}

// exported returns the IDs of the volumes with at least one host.
func (x *index) exported() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var ids []string
	for id, r := range x.recs {
		if strings.HasPrefix(id, volumePrefix) && len(r.Hosts) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// errNoRecord is what a lookup of an unknown ID says.
func errNoRecord(kind, id string) error { return rpcerr.NotFoundf("%s %s", kind, id) }
