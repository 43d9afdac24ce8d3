package vmenv

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// ShutdownAndCheckThin deactivates a dm-thin pool and checks it with the independent oracle of
// thin-provisioning-tools: thin_check finds its thin metadata clean, and thin_ls lists exactly
// the thin ids its records hold (nothing orphaned, nothing lost).
func ShutdownAndCheckThin(ctx context.Context, t testing.TB, p *dmthin.Pool, opts dmthin.Options) {
	t.Helper()
	ids := p.ThinIDs()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	CheckThin(t, opts, ids)
}

// CheckThin runs thin_check and thin_ls on the thin metadata of an inactive pool and compares
// its thin ids with want (record ID → thin id).
func CheckThin(t testing.TB, opts dmthin.Options, want map[string]uint32) {
	t.Helper()
	if devs := DMDevices(t, opts.Name+"-"); len(devs) > 0 {
		t.Errorf("after Shutdown these devices remain: %+v", devs)
	}
	off, length, err := dmthin.ThinMetadataRange(opts)
	if err != nil {
		t.Fatal(err)
	}
	loop := Run(t, "losetup", "--find", "--show", "--read-only", "--offset", strconv.FormatInt(off, 10),
		"--sizelimit", strconv.FormatInt(length, 10), opts.MetadataDevice)
	defer func() { _, _ = RunE("losetup", "--detach", loop) }()
	if out, err := RunE("thin_check", loop); err != nil {
		t.Errorf("thin_check: %v\n%s", err, out)
	}
	out, err := RunE("thin_ls", "--no-headers", "-o", "DEV", loop)
	if err != nil {
		t.Fatalf("thin_ls: %v", err)
	}
	var got []uint32
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatalf("thin_ls line %q", f)
		}
		got = append(got, uint32(n))
	}
	slices.Sort(got)
	wantIDs := slices.Sorted(maps.Values(want))
	if !slices.Equal(got, wantIDs) {
		t.Errorf("thin_ls lists thin ids %v; the records hold %v (%v)", got, wantIDs, want)
	}
}
