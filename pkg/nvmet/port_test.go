package nvmet_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
)

func TestEnsurePort(t *testing.T) {
	tcp := func(id uint16, addr string) nvmet.Port {
		return nvmet.Port{ID: id, Transport: nvmet.TransportTCP, Address: addr}
	}
	tests := []struct {
		name    string
		before  func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS)
		port    nvmet.Port
		wantErr error
		want    map[string]string // attributes of the port afterwards
	}{{
		name: "creates a port with defaults",
		port: tcp(7, "192.0.2.7"),
		want: map[string]string{"addr_trtype": "tcp", "addr_adrfam": "ipv4", "addr_traddr": "192.0.2.7",
			"addr_trsvcid": "4420", "ana_groups/1/ana_state": "optimized"},
	}, {
		name: "creates an RDMA port on IPv6",
		port: nvmet.Port{ID: 7, Transport: nvmet.TransportRDMA, Address: "2001:db8::7", ServiceID: "4421"},
		want: map[string]string{"addr_trtype": "rdma", "addr_adrfam": "ipv6", "addr_traddr": "2001:db8::7", "addr_trsvcid": "4421"},
	}, {
		name: "writes nothing when the port is as wanted",
		before: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			n := f.Mutations()
			t.Cleanup(func() {
				if f.Mutations() != n {
					t.Errorf("%d writes", f.Mutations()-n)
				}
			})
		},
		port: tcp(1, "192.0.2.1"),
	}, {
		name: "rewrites a port no subsystem is linked to",
		port: tcp(1, "192.0.2.9"),
		want: map[string]string{"addr_traddr": "192.0.2.9"},
	}, {
		name:    "refuses to change a port our subsystems use",
		before:  ensure(volume("vol-1")),
		port:    tcp(1, "192.0.2.9"),
		wantErr: nvmet.ErrPortConflict,
		want:    map[string]string{"addr_traddr": "192.0.2.1"},
	}, {
		name:    "refuses to change a port a foreign subsystem uses",
		before:  func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) { createForeign(t, f) },
		port:    nvmet.Port{ID: 1, Transport: nvmet.TransportRDMA, Address: "192.0.2.1"},
		wantErr: nvmet.ErrPortConflict,
		want:    map[string]string{"addr_trtype": "tcp"},
	}, {
		name:   "changes the ANA state of a port in use",
		before: ensure(volume("vol-1")),
		port:   nvmet.Port{ID: 1, Transport: nvmet.TransportTCP, Address: "192.0.2.1", ANAState: nvmet.ANAInaccessible},
		want:   map[string]string{"ana_groups/1/ana_state": "inaccessible"},
	}, {
		name: "treats equal IPv6 spellings as the same address",
		before: func(t *testing.T, tg *nvmet.Target, _ *nvmettest.FS) {
			must(t, tg.EnsurePort(ctx, tcp(7, "2001:db8:0::7")))
		},
		port: tcp(7, "2001:db8::7"),
		want: map[string]string{"addr_traddr": "2001:db8:0::7"},
	}, {
		name: "refuses an unknown transport", port: nvmet.Port{ID: 7, Transport: "fc", Address: "192.0.2.7"},
		wantErr: nvmet.ErrInvalid,
	}, {
		name: "refuses a host name", port: tcp(7, "storage-1"), wantErr: nvmet.ErrInvalid,
	}, {
		name:    "refuses a family that does not match the address",
		port:    nvmet.Port{ID: 7, Transport: nvmet.TransportTCP, Family: nvmet.FamilyIPv6, Address: "192.0.2.7"},
		wantErr: nvmet.ErrInvalid,
	}, {
		name:    "refuses a bad service ID",
		port:    nvmet.Port{ID: 7, Transport: nvmet.TransportTCP, Address: "192.0.2.7", ServiceID: "70000"},
		wantErr: nvmet.ErrInvalid,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, f := newTarget(t)
			if tc.before != nil {
				tc.before(t, tg, f)
			}
			err := tg.EnsurePort(ctx, tc.port)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("EnsurePort: %v, want %v", err, tc.wantErr)
			}
			for attr, want := range tc.want {
				if got := read(t, f, "ports", itoa(tc.port.ID), attr); got != want {
					t.Errorf("%s = %q, want %q", attr, got, want)
				}
			}
		})
	}
}

func itoa(id uint16) string { return strconv.FormatUint(uint64(id), 10) }

func TestRemovePort(t *testing.T) {
	tg, f := newTarget(t)
	must(t, tg.EnsureSubsystem(ctx, volume("vol-1")))
	if err := tg.RemovePort(ctx, 1); !errors.Is(err, nvmet.ErrPortConflict) {
		t.Fatalf("RemovePort of a port in use: %v", err)
	}
	must(t, tg.RemoveSubsystem(ctx, prefix+"vol-1"))
	must(t, tg.SetANAState(ctx, 1, 3, nvmet.ANAOptimized))
	must(t, tg.RemovePort(ctx, 1))
	if exists(t, f, "ports", "1") {
		t.Error("port 1 still there")
	}
	must(t, tg.RemovePort(ctx, 1))
}

func TestSetANAState(t *testing.T) {
	tg, f := newTarget(t)
	must(t, tg.SetANAState(ctx, 2, 1, nvmet.ANANonOptimized))
	must(t, tg.SetANAState(ctx, 2, 4, nvmet.ANAChange))
	for g, want := range map[string]string{"1": "non-optimized", "4": "change"} {
		if got := read(t, f, "ports", "2", "ana_groups", g, "ana_state"); got != want {
			t.Errorf("group %s: %s, want %s", g, got, want)
		}
	}
	for _, tc := range []struct {
		port    uint16
		group   uint32
		state   nvmet.ANAState
		wantErr error
	}{
		{9, 1, nvmet.ANAOptimized, nvmet.ErrNotFound},
		{1, 0, nvmet.ANAOptimized, nvmet.ErrInvalid},
		{1, 129, nvmet.ANAOptimized, nvmet.ErrInvalid},
		{1, 1, "degraded", nvmet.ErrInvalid},
	} {
		if err := tg.SetANAState(ctx, tc.port, tc.group, tc.state); !errors.Is(err, tc.wantErr) {
			t.Errorf("SetANAState(%d, %d, %s): %v, want %v", tc.port, tc.group, tc.state, err, tc.wantErr)
		}
	}
}
