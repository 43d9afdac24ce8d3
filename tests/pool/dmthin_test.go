//go:build vm

package pool

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/pooltest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// dmthinConfig is what the contract suite's configuration string carries (dmthin.Options has
// test hooks, which do not encode).
type dmthinConfig struct{ Meta, Data, Name, NodeDir string }

func (c dmthinConfig) options() dmthin.Options {
	return dmthin.Options{MetadataDevice: c.Meta, DataDevice: c.Data, Name: c.Name, NodeDir: c.NodeDir}
}

func parseDMThin(config string) (dmthin.Options, error) {
	var c dmthinConfig
	err := json.Unmarshal([]byte(config), &c)
	return c.options(), err
}

func dmthinBackend() pooltest.Backend {
	return pooltest.Backend{
		Name: "dmthin",
		New: func(t testing.TB) string {
			name := fmt.Sprintf("pt%x", sha256.Sum256([]byte(t.Name())))[:14]
			meta, data := vmenv.DMThinDevices(t, name, "256M", "2G")
			raw, err := json.Marshal(dmthinConfig{Meta: meta, Data: data, Name: name, NodeDir: filepath.Join(t.TempDir(), "dev")})
			if err != nil {
				t.Fatal(err)
			}
			return string(raw)
		},
		Open: func(ctx context.Context, config string) (pool.Pool, error) {
			o, err := parseDMThin(config)
			if err != nil {
				return nil, err
			}
			p, err := dmthin.Open(ctx, o)
			if err != nil {
				return nil, err
			}
			return p, nil
		},
		Check: func(ctx context.Context, t testing.TB, config string, ids []string) {
			o, err := parseDMThin(config)
			if err != nil {
				t.Fatal(err)
			}
			p, err := dmthin.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(p.ThinIDs()))
			if want := slices.Sorted(slices.Values(ids)); !slices.Equal(got, want) {
				t.Errorf("the pool records %v, want exactly %v", got, want)
			}
			vmenv.ShutdownAndCheckThin(ctx, t, p, o)
		},
		CrashPoints:    dmthin.CrashPoints,
		GroupSnapshots: true,
	}
}
