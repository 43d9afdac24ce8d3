package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
)

// fakePool is an in-memory thin pool: the seam below the agent in unit tests.
type fakePool struct {
	mu        sync.Mutex
	lvs       map[string]lvm.LV
	dataBytes int64
	onDevice  func(path string)
	// fail, when set, makes the named operation fail.
	fail map[string]error
	// block, when set, is waited on by Create (to observe concurrency).
	block chan struct{}
}

func newFakePool(dataBytes int64, onDevice func(string)) *fakePool {
	return &fakePool{lvs: map[string]lvm.LV{}, dataBytes: dataBytes, onDevice: onDevice, fail: map[string]error{}}
}

func (p *fakePool) failure(op string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fail[op]
}

func (p *fakePool) add(lv lvm.LV) lvm.LV {
	lv.Path = "/dev/vg/" + lv.Name
	lv.Active = true
	p.lvs[lv.Name] = lv
	if p.onDevice != nil {
		p.onDevice(lv.Path)
	}
	return lv
}

func (p *fakePool) Create(_ context.Context, name string, size int64, tags []string) (lvm.LV, error) {
	if p.block != nil {
		<-p.block
	}
	if err := p.failure("create"); err != nil {
		return lvm.LV{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if lv, ok := p.lvs[name]; ok {
		return lv, lvm.ErrExists
	}
	return p.add(lvm.LV{Name: name, SizeBytes: roundUp(size), Tags: slices.Clone(tags)}), nil
}

func (p *fakePool) Snapshot(_ context.Context, origin, name string, readOnly bool, tags []string) (lvm.LV, error) {
	if err := p.failure("snapshot"); err != nil {
		return lvm.LV{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok := p.lvs[origin]
	if !ok {
		return lvm.LV{}, fmt.Errorf("origin %s: %w", origin, lvm.ErrNotFound)
	}
	if lv, ok := p.lvs[name]; ok {
		return lv, lvm.ErrExists
	}
	return p.add(lvm.LV{Name: name, SizeBytes: o.SizeBytes, Origin: origin, ReadOnly: readOnly, Tags: slices.Clone(tags)}), nil
}

func (p *fakePool) Remove(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.lvs[name]; !ok {
		return lvm.ErrNotFound
	}
	delete(p.lvs, name)
	return nil
}

func (p *fakePool) Extend(_ context.Context, name string, size int64) (lvm.LV, error) {
	if err := p.failure("extend"); err != nil {
		return lvm.LV{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lv, ok := p.lvs[name]
	if !ok {
		return lvm.LV{}, lvm.ErrNotFound
	}
	lv.SizeBytes = max(lv.SizeBytes, roundUp(size))
	p.lvs[name] = lv
	return lv, nil
}

func (p *fakePool) Get(_ context.Context, name string) (lvm.LV, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lv, ok := p.lvs[name]
	if !ok {
		return lvm.LV{}, fmt.Errorf("%s: %w", name, lvm.ErrNotFound)
	}
	lv.Tags = slices.Clone(lv.Tags)
	return lv, nil
}

func (p *fakePool) List(context.Context) ([]lvm.LV, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []lvm.LV
	for _, lv := range p.lvs {
		lv.Tags = slices.Clone(lv.Tags)
		out = append(out, lv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *fakePool) AddTags(_ context.Context, name string, tags ...string) error {
	if err := p.failure("addtags"); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lv, ok := p.lvs[name]
	if !ok {
		return lvm.ErrNotFound
	}
	for _, t := range tags {
		if !slices.Contains(lv.Tags, t) {
			lv.Tags = append(lv.Tags, t)
		}
	}
	p.lvs[name] = lv
	return nil
}

func (p *fakePool) DelTags(_ context.Context, name string, tags ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	lv, ok := p.lvs[name]
	if !ok {
		return lvm.ErrNotFound
	}
	lv.Tags = slices.DeleteFunc(lv.Tags, func(t string) bool { return slices.Contains(tags, t) })
	p.lvs[name] = lv
	return nil
}

func (p *fakePool) Usage(context.Context) (lvm.Usage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := lvm.Usage{DataBytes: p.dataBytes, MetadataBytes: 64 << 20}
	for _, lv := range p.lvs {
		u.VirtualBytes += lv.SizeBytes
	}
	return u, nil
}

func (p *fakePool) Activate(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	lv, ok := p.lvs[name]
	if !ok {
		return lvm.ErrNotFound
	}
	lv.Active = true
	p.lvs[name] = lv
	return nil
}
