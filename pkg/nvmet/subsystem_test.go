package nvmet_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
)

func TestEnsureSubsystem(t *testing.T) {
	vol := volume("vol-1")
	with := func(change func(*nvmet.Subsystem)) nvmet.Subsystem {
		s := volume("vol-1")
		change(&s)
		return s
	}
	tests := []struct {
		name    string
		before  func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS)
		want    nvmet.Subsystem
		wantErr error
		check   func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS)
	}{{
		name: "creates the subsystem closed to unlisted hosts, with the namespace enabled",
		want: vol,
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			s := []string{"subsystems", vol.NQN}
			for attr, want := range map[string]string{
				"attr_allow_any_host": "0", "namespaces/1/enable": "1", "namespaces/1/device_path": devA,
				"namespaces/1/device_uuid": uuidA, "namespaces/1/device_nguid": uuidA, "namespaces/1/ana_grpid": "1",
			} {
				if got := read(t, f, append(s, strings.Split(attr, "/")...)...); got != want {
					t.Errorf("%s = %q, want %q", attr, got, want)
				}
			}
			for _, port := range []string{"1", "2"} {
				if !exists(t, f, "ports", port, "subsystems", vol.NQN) {
					t.Errorf("not linked to port %s", port)
				}
			}
			if !exists(t, f, "subsystems", vol.NQN, "allowed_hosts", hostA) {
				t.Error("hostA not allowed")
			}
		},
	}, {
		name: "gives a stable serial derived from the NQN",
		want: vol,
		check: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			serial := strings.TrimSpace(read(t, f, "subsystems", vol.NQN, "attr_serial"))
			if len(serial) != 20 || serial != normalized(t, vol).Serial {
				t.Errorf("serial %q, want the 20 characters Normalized derives", serial)
			}
		},
	}, {
		name: "writes nothing when the subsystem is already as wanted",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			must(t, tg.EnsureSubsystem(ctx, vol))
			f.SetHook(func(op, path string) error {
				if op != "read" && op != "readdir" && op != "lstat" && op != "readlink" {
					t.Errorf("unexpected %s %s", op, path)
				}
				return nil
			})
		},
		want: vol,
	}, {
		name:   "adds and removes hosts, collecting host objects nobody links",
		before: ensure(with(func(s *nvmet.Subsystem) { s.Hosts = []string{hostA, hostB} })),
		want:   with(func(s *nvmet.Subsystem) { s.Hosts = []string{hostC, hostB} }),
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if exists(t, f, "hosts", hostA) {
				t.Error("hosts/hostA was not collected")
			}
			if got := listed(t, f, "subsystems", vol.NQN, "allowed_hosts"); !slices.Equal(got, []string{hostB, hostC}) {
				t.Errorf("allowed_hosts = %v", got)
			}
		},
	}, {
		name:   "keeps a host object another subsystem still allows",
		before: ensure(vol, volume("vol-2")),
		want:   with(func(s *nvmet.Subsystem) { s.Hosts = nil }),
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if !exists(t, f, "hosts", hostA) {
				t.Error("hosts/hostA was removed while vol-2 allows it")
			}
		},
	}, {
		name: "keeps a host object that carries a DH-HMAC-CHAP key",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			must(t, tg.EnsureHost(ctx, nvmet.Host{NQN: hostA, DHCHAPKey: "DHHC-1:00:c2VjcmV0:"}))
			must(t, tg.EnsureSubsystem(ctx, vol))
		},
		want: with(func(s *nvmet.Subsystem) { s.Hosts = nil }),
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if read(t, f, "hosts", hostA, "dhchap_key") != "DHHC-1:00:c2VjcmV0:" {
				t.Error("the keyed host object was collected")
			}
		},
	}, {
		name:   "moves the subsystem to other ports",
		before: ensure(with(func(s *nvmet.Subsystem) { s.Ports = []uint16{1} })),
		want:   with(func(s *nvmet.Subsystem) { s.Ports = []uint16{2} }),
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if exists(t, f, "ports", "1", "subsystems", vol.NQN) || !exists(t, f, "ports", "2", "subsystems", vol.NQN) {
				t.Error("want a link in port 2 only")
			}
		},
	}, {
		name: "changes the device by disabling the namespace first",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			must(t, tg.EnsureSubsystem(ctx, vol))
			var writes []string
			f.SetHook(func(op, path string) error {
				if op == "write" && strings.Contains(path, "/namespaces/") {
					writes = append(writes, path[strings.LastIndex(path, "/")+1:])
				}
				return nil
			})
			t.Cleanup(func() {
				want := []string{"enable", "device_path", "device_uuid", "device_nguid", "enable"}
				if !slices.Equal(writes, want) {
					t.Errorf("namespace writes %v, want %v", writes, want)
				}
			})
		},
		want: with(func(s *nvmet.Subsystem) {
			s.Namespace.DevicePath = devB
			s.Namespace.UUID = "11111111-2222-4333-8444-555555555555"
		}),
	}, {
		name: "takes an explicit NGUID as 32 hex digits",
		want: with(func(s *nvmet.Subsystem) { s.Namespace.NGUID = "0123456789ABCDEF0123456789ABCDEF" }),
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if got := read(t, f, "subsystems", vol.NQN, "namespaces", "1", "device_nguid"); got != "01234567-89ab-cdef-0123-456789abcdef" {
				t.Errorf("device_nguid = %q", got)
			}
		},
	}, {
		name: "removes namespaces it was not asked for",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			must(t, tg.EnsureSubsystem(ctx, vol))
			must(t, f.Mkdir(p("subsystems", vol.NQN, "namespaces", "7")))
		},
		want: vol,
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if got := listed(t, f, "subsystems", vol.NQN, "namespaces"); !slices.Equal(got, []string{"1"}) {
				t.Errorf("namespaces = %v", got)
			}
		},
	}, {
		name: "closes a subsystem someone opened to any host",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			must(t, tg.EnsureSubsystem(ctx, with(func(s *nvmet.Subsystem) { s.Hosts = nil })))
			write(t, f, "1", "subsystems", vol.NQN, "attr_allow_any_host")
		},
		want: vol,
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if read(t, f, "subsystems", vol.NQN, "attr_allow_any_host") != "0" {
				t.Error("attr_allow_any_host is still 1")
			}
		},
	}, {
		name: "creates a missing ANA group optimized and leaves an existing one's state",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			must(t, tg.SetANAState(ctx, 2, 5, nvmet.ANANonOptimized))
		},
		want: with(func(s *nvmet.Subsystem) { s.Namespace.ANAGroupID = 5 }),
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if got := read(t, f, "ports", "1", "ana_groups", "5", "ana_state"); got != "optimized" {
				t.Errorf("port 1 group 5: %s", got)
			}
			if got := read(t, f, "ports", "2", "ana_groups", "5", "ana_state"); got != "non-optimized" {
				t.Errorf("port 2 group 5: %s", got)
			}
			if got := read(t, f, "subsystems", vol.NQN, "namespaces", "1", "ana_grpid"); got != "5" {
				t.Errorf("ana_grpid = %s", got)
			}
		},
	}, {
		name: "leaves foreign subsystems and their port links alone",
		before: func(t *testing.T, tg *nvmet.Target, f *nvmettest.FS) {
			createForeign(t, f)
			must(t, tg.EnsureSubsystem(ctx, vol))
			snapshot := dump(t, f, "subsystems", foreign)
			t.Cleanup(func() {
				if got := dump(t, f, "subsystems", foreign); got != snapshot {
					t.Errorf("foreign subsystem changed:\n%s\nwas:\n%s", got, snapshot)
				}
				for _, port := range []string{"1", "2"} {
					if !exists(t, f, "ports", port, "subsystems", foreign) {
						t.Errorf("foreign link in port %s removed", port)
					}
				}
			})
		},
		want: with(func(s *nvmet.Subsystem) { s.Ports = nil; s.Hosts = nil }),
	}, {
		name:    "refuses a subsystem outside the prefix",
		want:    with(func(s *nvmet.Subsystem) { s.NQN = foreign }),
		wantErr: nvmet.ErrForeign,
	}, {
		name:    "refuses an invalid NQN",
		want:    with(func(s *nvmet.Subsystem) { s.NQN = prefix + "a/b" }),
		wantErr: nvmet.ErrInvalidNQN,
	}, {
		name:    "refuses an invalid host NQN",
		want:    with(func(s *nvmet.Subsystem) { s.Hosts = []string{"host-1"} }),
		wantErr: nvmet.ErrInvalidNQN,
	}, {
		name:    "refuses a namespace without a UUID",
		want:    with(func(s *nvmet.Subsystem) { s.Namespace.UUID = "" }),
		wantErr: nvmet.ErrInvalid,
	}, {
		name:    "refuses a serial the kernel would refuse",
		want:    with(func(s *nvmet.Subsystem) { s.Serial = strings.Repeat("9", 21) }),
		wantErr: nvmet.ErrInvalid,
	}, {
		name:    "refuses a missing port before creating anything",
		want:    with(func(s *nvmet.Subsystem) { s.Ports = []uint16{1, 9} }),
		wantErr: nvmet.ErrNotFound,
		check: func(t *testing.T, _ *nvmet.Target, f *nvmettest.FS) {
			if exists(t, f, "subsystems", vol.NQN) {
				t.Error("subsystem created")
			}
		},
	}, {
		name:    "reports a device that does not exist",
		want:    with(func(s *nvmet.Subsystem) { s.Namespace.DevicePath = "/dev/nvmeof/missing" }),
		wantErr: syscall.ENOENT,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, f := newTarget(t)
			if tc.before != nil {
				tc.before(t, tg, f)
			}
			err := tg.EnsureSubsystem(ctx, tc.want)
			f.SetHook(nil)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("EnsureSubsystem: %v, want %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, tg, f)
			}
			if err != nil {
				return
			}
			got, err := tg.Get(ctx, tc.want.NQN)
			must(t, err)
			if want := normalized(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("Get:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// ensure returns a before step that ensures the subsystems.
func ensure(subsystems ...nvmet.Subsystem) func(*testing.T, *nvmet.Target, *nvmettest.FS) {
	return func(t *testing.T, tg *nvmet.Target, _ *nvmettest.FS) {
		for _, s := range subsystems {
			must(t, tg.EnsureSubsystem(ctx, s))
		}
	}
}

func listed(t *testing.T, f nvmet.FS, elem ...string) []string {
	t.Helper()
	names, err := f.ReadDir(p(elem...))
	must(t, err)
	return names
}

func TestEnsureSubsystemConvergesAfterAFailureHalfway(t *testing.T) {
	tg, f := newTarget(t)
	vol := volume("vol-1")
	failed := false
	f.SetHook(func(op, path string) error {
		if op == "symlink" && strings.HasPrefix(path, p("ports", "2")) && !failed {
			failed = true
			return syscall.EIO
		}
		return nil
	})
	if err := tg.EnsureSubsystem(ctx, vol); !errors.Is(err, syscall.EIO) {
		t.Fatalf("EnsureSubsystem with a failing link: %v", err)
	}
	must(t, tg.EnsureSubsystem(ctx, vol))
	got, err := tg.Get(ctx, vol.NQN)
	must(t, err)
	if want := normalized(t, vol); !reflect.DeepEqual(got, want) {
		t.Errorf("after retry:\n got %+v\nwant %+v", got, want)
	}
}

func TestEnsureSubsystemStopsWhenTheContextIsDone(t *testing.T) {
	tg, f := newTarget(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := tg.EnsureSubsystem(c, volume("vol-1")); !errors.Is(err, context.Canceled) {
		t.Fatalf("EnsureSubsystem: %v", err)
	}
	if exists(t, f, "subsystems", prefix+"vol-1") {
		t.Error("subsystem created after cancellation")
	}
}

func TestNormalized(t *testing.T) {
	s := nvmet.Subsystem{
		NQN:       prefix + "vol-1",
		Namespace: nvmet.Namespace{DevicePath: devA, UUID: strings.ToUpper(uuidA)},
		Hosts:     []string{hostB, hostA, hostB},
		Ports:     []uint16{2, 1, 2},
	}
	got := normalized(t, s)
	want := nvmet.Subsystem{
		NQN:    s.NQN,
		Serial: got.Serial,
		Model:  nvmet.DefaultModel,
		Namespace: nvmet.Namespace{
			ID: 1, DevicePath: devA, UUID: uuidA, NGUID: uuidA, ANAGroupID: nvmet.DefaultANAGroup,
		},
		Hosts: []string{hostA, hostB},
		Ports: []uint16{1, 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Normalized:\n got %+v\nwant %+v", got, want)
	}
	if again := normalized(t, got); !reflect.DeepEqual(again, got) {
		t.Errorf("Normalized is not idempotent: %+v", again)
	}
	if got.Serial == normalized(t, volume("vol-2")).Serial {
		t.Error("two NQNs got the same serial")
	}
}
