package agent

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// fakePool is an in-memory thin pool: the seam below the agent in unit tests.
type fakePool struct {
	mu        sync.Mutex
	entries   map[string]*fakeEntry
	dataBytes int64
	onDevice  func(path string)
	// fail, when set, makes the named operation fail.
	fail map[string]error
	// block, when set, is waited on by Create (to observe concurrency).
	block chan struct{}
	// hangName, when set, makes Create of a record of that CSI name hang until its context
	// ends, like an lvm process stuck on a device.
	hangName string
	// dataUsed and metaUsed are the physical usage Usage reports.
	dataUsed, metaUsed int64
	// calls counts the calls of each operation.
	calls map[string]int
}

type fakeEntry struct {
	rec      pool.Record
	origin   string
	readOnly bool
	path     string
}

var _ pool.Pool = (*fakePool)(nil)

// newFakePool returns a fake pool of 10 GiB.
func newFakePool(onDevice func(string)) *fakePool {
	return &fakePool{entries: map[string]*fakeEntry{}, dataBytes: 10 * gib, onDevice: onDevice,
		fail: map[string]error{}, calls: map[string]int{}}
}

// begin counts a call and returns the failure set for op; p.mu is held.
func (p *fakePool) begin(op string) error {
	p.calls[op]++
	return p.fail[op]
}

func (e *fakeEntry) volume() pool.Volume { return pool.Volume{Record: e.rec.Clone(), Path: e.path} }

func (p *fakePool) add(rec pool.Record, origin string, readOnly bool) pool.Volume {
	e := &fakeEntry{rec: rec.Clone(), origin: origin, readOnly: readOnly}
	p.entries[rec.ID] = e
	return e.volume()
}

func (p *fakePool) Create(ctx context.Context, rec pool.Record) (pool.Volume, error) {
	if p.block != nil {
		<-p.block
	}
	p.mu.Lock()
	hang := p.hangName != "" && rec.Name == p.hangName
	p.mu.Unlock()
	if hang {
		<-ctx.Done()
		return pool.Volume{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin("create"); err != nil {
		return pool.Volume{}, err
	}
	if e, ok := p.entries[rec.ID]; ok {
		return e.volume(), pool.ErrExists
	}
	return p.add(rec, "", false), nil
}

func (p *fakePool) Snapshot(_ context.Context, origin string, rec pool.Record, readOnly bool) (pool.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin("snapshot"); err != nil {
		return pool.Volume{}, err
	}
	if e, ok := p.entries[rec.ID]; ok {
		return e.volume(), pool.ErrExists
	}
	o, ok := p.entries[origin]
	if !ok {
		return pool.Volume{}, fmt.Errorf("origin %s: %w", origin, pool.ErrNotFound)
	}
	if rec.SizeBytes < o.rec.SizeBytes {
		return pool.Volume{}, pool.ErrInvalid
	}
	return p.add(rec, origin, readOnly), nil
}

func (p *fakePool) SnapshotGroup(context.Context, []pool.SnapshotSpec) ([]pool.Volume, error) {
	return nil, pool.ErrUnsupported
}

func (p *fakePool) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin("delete"); err != nil {
		return err
	}
	if _, ok := p.entries[id]; !ok {
		return pool.ErrNotFound
	}
	delete(p.entries, id)
	return nil
}

func (p *fakePool) Resize(_ context.Context, id string, size int64) (pool.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin("resize"); err != nil {
		return pool.Volume{}, err
	}
	e, ok := p.entries[id]
	if !ok {
		return pool.Volume{}, pool.ErrNotFound
	}
	e.rec.SizeBytes = max(e.rec.SizeBytes, size)
	return e.volume(), nil
}

func (p *fakePool) SetHosts(_ context.Context, id string, hosts []pool.Host, transports []string) (pool.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin("sethosts"); err != nil {
		return pool.Volume{}, err
	}
	e, ok := p.entries[id]
	if !ok {
		return pool.Volume{}, pool.ErrNotFound
	}
	r := pool.Record{Hosts: hosts, Transports: transports}.Clone()
	e.rec.Hosts, e.rec.Transports = r.Hosts, r.Transports
	return e.volume(), nil
}

func (p *fakePool) Activate(_ context.Context, id string) (pool.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin("activate"); err != nil {
		return pool.Volume{}, err
	}
	e, ok := p.entries[id]
	if !ok {
		return pool.Volume{}, pool.ErrNotFound
	}
	if e.path == "" {
		e.path = "/dev/vg/" + id
		if p.onDevice != nil {
			p.onDevice(e.path)
		}
	}
	return e.volume(), nil
}

func (p *fakePool) Get(_ context.Context, id string) (pool.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[id]
	if !ok {
		return pool.Volume{}, pool.ErrNotFound
	}
	return e.volume(), nil
}

func (p *fakePool) List(context.Context) ([]pool.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls["list"]++
	var out []pool.Volume
	for _, e := range p.entries {
		out = append(out, e.volume())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (p *fakePool) Usage(context.Context) (pool.Usage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls["usage"]++
	return pool.Usage{DataBytes: p.dataBytes, DataUsedBytes: p.dataUsed, MetadataBytes: p.dataBytes / 100, MetadataUsedBytes: p.metaUsed}, nil
}

func (p *fakePool) Close() error { return nil }

// entry returns the fake's own view of id (origin, read-only); zero when it does not exist.
func (p *fakePool) entry(id string) fakeEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.entries[id]; ok {
		return *e
	}
	return fakeEntry{}
}

// count is how many times op was called.
func (p *fakePool) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[op]
}

// Used implements pool.UsedReporter: active (exported) entries use half their size.
func (f *fakePool) Used(_ context.Context, ids []string) (map[string]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int64{}
	for _, id := range ids {
		if e, ok := f.entries[id]; ok && e.path != "" {
			out[id] = e.rec.SizeBytes / 2
		}
	}
	return out, nil
}
