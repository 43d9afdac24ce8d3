//go:build vm

package lvm

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestParallelCreate: different LVs may be created and removed concurrently; lvm serializes
// them on its VG lock and every call succeeds.
func TestParallelCreate(t *testing.T) {
	const n = 20
	p := newPool(t, "nvpar", 2048)
	p.ExtraConfig = "backup{archive=0}" // also proves --config reaches lvm

	parallel := func(what string, fn func(name string) error) {
		t.Helper()
		start := time.Now()
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = fn(fmt.Sprintf("par-%02d", i)) })
		}
		wg.Wait()
		elapsed := time.Since(start)
		t.Logf("%d parallel %s: %s (%s each on average)", n, what, elapsed.Round(time.Millisecond), (elapsed / n).Round(time.Millisecond))
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s par-%02d: %v", what, i, err)
			}
		}
	}

	parallel("Create", func(name string) error {
		lv, err := p.Create(ctx(t), name, 64*mib, nil)
		if err == nil && (lv.Name != name || lv.SizeBytes != 64*mib || !lv.Active) {
			err = fmt.Errorf("created %+v", lv)
		}
		return err
	})
	lvs, err := p.List(ctx(t))
	if err != nil || len(lvs) != n {
		t.Fatalf("List = %d LVs, %v; want %d", len(lvs), err, n)
	}
	for i, lv := range lvs {
		if want := fmt.Sprintf("par-%02d", i); lv.Name != want {
			t.Errorf("List[%d] = %s, want %s", i, lv.Name, want)
		}
		mustExist(t, lv.Path)
	}
	parallel("Remove", func(name string) error { return p.Remove(ctx(t), name) })
	if lvs, err := p.List(ctx(t)); err != nil || len(lvs) != 0 {
		t.Errorf("List after removing = %+v, %v", lvs, err)
	}
}
