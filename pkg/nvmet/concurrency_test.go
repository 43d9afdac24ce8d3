package nvmet_test

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// parallel runs fn(i) for i in [0, n) concurrently and fails the test on any error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
}

// Parallel work on different subsystems shares the port and host directories; each link is
// its own entry, so none is lost (democratic-csi#504 lost subsystems rewriting a shared file).
func TestParallelSubsystemsDoNotClobberEachOther(t *testing.T) {
	tg, f := newTarget(t)
	f.SetHook(func(string, string) error { runtime.Gosched(); return nil })
	const n = 24
	vol := func(i int) nvmet.Subsystem {
		s := volume(fmt.Sprintf("vol-%02d", i))
		s.Hosts = []string{hostA, []string{hostB, hostC}[i%2]}
		return s
	}
	parallel(t, n, func(i int) error { return tg.EnsureSubsystem(ctx, vol(i)) })
	parallel(t, n, func(i int) error {
		if i%2 == 1 {
			return tg.RemoveSubsystem(ctx, vol(i).NQN)
		}
		return tg.EnsureSubsystem(ctx, vol(i))
	})
	got, err := tg.List(ctx)
	must(t, err)
	var want []nvmet.Subsystem
	var links []string
	for i := 0; i < n; i += 2 {
		want = append(want, normalized(t, vol(i)))
		links = append(links, vol(i).NQN)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List after parallel work:\n got %+v\nwant %+v", got, want)
	}
	for _, port := range []string{"1", "2"} {
		if got := listed(t, f, "ports", port, "subsystems"); !slices.Equal(got, links) {
			t.Errorf("port %s links %v, want %v", port, got, links)
		}
	}
	if got := listed(t, f, "hosts"); !slices.Equal(got, []string{hostA, hostB}) {
		t.Errorf("hosts %v, want hostA and hostB (hostC only served odd volumes)", got)
	}
}

// Allowing a host on one subsystem while another drops its last link to the same host must
// not fail: collecting the host object cannot race with linking it.
func TestHostCollectionDoesNotRaceWithLinking(t *testing.T) {
	tg, f := newTarget(t)
	const n = 8
	nqn := func(i int) string { return fmt.Sprintf("%svol-%d", prefix, i) }
	for i := range n {
		s := volume(fmt.Sprintf("vol-%d", i))
		s.Hosts = nil
		must(t, tg.EnsureSubsystem(ctx, s))
	}
	f.SetHook(func(string, string) error { runtime.Gosched(); return nil })
	parallel(t, n, func(i int) error {
		for range 30 {
			if err := tg.AllowHost(ctx, nqn(i), hostA); err != nil {
				return err
			}
			if err := tg.DisallowHost(ctx, nqn(i), hostA); err != nil {
				return err
			}
		}
		return nil
	})
	if got := listed(t, f, "hosts"); len(got) != 0 {
		t.Errorf("hosts left: %v", got)
	}
}
