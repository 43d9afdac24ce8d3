package nvmettest

import (
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// attr is one configfs attribute file. A nil get is write-only, a nil set read-only (EACCES).
type attr struct {
	get func() string
	set func(v string) error
}

type attrs map[string]*attr

func (a attrs) names() []string { return slices.Collect(maps.Keys(a)) }

// value is a read-write attribute holding v; check, if set, validates a write.
func value(v string, check func(string) error) *attr {
	a := &attr{get: func() string { return v }}
	a.set = func(s string) error {
		if check != nil {
			if err := check(s); err != nil {
				return err
			}
		}
		v = s
		return nil
	}
	return a
}

// guarded wraps check (which may be nil) so that a write fails with errno while busy() holds.
func guarded(busy func() bool, errno syscall.Errno, check func(string) error) func(string) error {
	return func(s string) error {
		if busy() {
			return errno
		}
		if check != nil {
			return check(s)
		}
		return nil
	}
}

func oneOf(valid ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(valid, s) {
			return syscall.EINVAL
		}
		return nil
	}
}

func isBool(s string) error {
	if _, err := parseBool(s); err != nil {
		return syscall.EINVAL
	}
	return nil
}

// parseBool accepts what the kernel's kstrtobool accepts.
func parseBool(s string) (bool, error) {
	if s == "" {
		return false, syscall.EINVAL
	}
	switch strings.ToLower(s) {
	case "1", "y", "yes", "on", "true":
		return true, nil
	case "0", "n", "no", "off", "false":
		return false, nil
	}
	switch s[0] {
	case '1', 'y', 'Y':
		return true, nil
	case '0', 'n', 'N':
		return false, nil
	}
	return false, syscall.EINVAL
}

func printableASCII(max int) func(string) error {
	return func(s string) error {
		if s == "" || len(s) > max {
			return syscall.EINVAL
		}
		for _, c := range []byte(s) {
			if c < 0x20 || c > 0x7e {
				return syscall.EINVAL
			}
		}
		return nil
	}
}

type subsys struct {
	attrs    attrs
	passthru attrs
	allowAny bool
	ns       map[string]*namespace
	allowed  map[string]string // allowed_hosts entry → host name
}

func (f *FS) newSubsys() *subsys {
	s := &subsys{ns: map[string]*namespace{}, allowed: map[string]string{}}
	f.serial++
	serial := fmt.Sprintf("%020x", f.serial)
	model := "Linux"
	s.attrs = attrs{
		"attr_allow_any_host": {
			get: func() string { return boolString(s.allowAny) },
			set: func(v string) error {
				on, err := parseBool(v)
				if err != nil || (on && len(s.allowed) > 0) {
					return syscall.EINVAL
				}
				s.allowAny = on
				return nil
			},
		},
		"attr_serial": {
			get: func() string { return fmt.Sprintf("%-20s", serial) },
			set: func(v string) error {
				if err := printableASCII(20)(v); err != nil {
					return err
				}
				serial = v
				return nil
			},
		},
		"attr_model":      value(model, printableASCII(40)),
		"attr_cntlid_max": value("65519", nil), "attr_cntlid_min": value("1", nil),
		"attr_firmware": value("6.12.0", nil), "attr_ieee_oui": value("0x000000", nil),
		"attr_pi_enable": value("0", nil), "attr_qid_max": value("128", nil),
		"attr_version": value("1.3", nil),
	}
	s.passthru = attrs{
		"admin_timeout": value("0", nil), "clear_ids": value("0", nil), "device_path": value("", nil),
		"enable": value("0", isBool), "io_timeout": value("0", nil),
	}
	return s
}

type namespace struct {
	attrs   attrs
	path    string
	enabled bool
}

func (f *FS) newNamespace() *namespace {
	n := &namespace{}
	f.serial++
	uuid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", f.serial)
	nguid := "00000000-0000-0000-0000-000000000000"
	n.attrs = attrs{
		"device_path": {
			get: func() string {
				if n.path == "" {
					return "(null)"
				}
				return n.path
			},
			set: func(v string) error {
				if n.enabled {
					return syscall.EBUSY
				}
				if v == "" {
					return syscall.EINVAL
				}
				n.path = v
				return nil
			},
		},
		"device_uuid": {
			get: func() string { return uuid },
			set: func(v string) error {
				if n.enabled {
					return syscall.EBUSY
				}
				u, ok := parseUUID(v)
				if !ok {
					return syscall.EINVAL
				}
				uuid = u
				return nil
			},
		},
		"device_nguid": {
			get: func() string { return nguid },
			set: func(v string) error {
				if n.enabled {
					return syscall.EBUSY
				}
				g, ok := parseNGUID(v)
				if !ok {
					return syscall.EINVAL
				}
				nguid = g
				return nil
			},
		},
		"enable": {
			get: func() string { return boolString(n.enabled) },
			set: func(v string) error {
				on, err := parseBool(v)
				if err != nil {
					return err
				}
				if on && !n.enabled {
					if n.path == "" {
						return syscall.EINVAL
					}
					if !f.devices[n.path] {
						return syscall.ENOENT
					}
				}
				n.enabled = on
				return nil
			},
		},
		"ana_grpid": value("1", func(v string) error {
			g, err := strconv.ParseUint(v, 10, 32)
			if err != nil || g < 1 || g > 128 {
				return syscall.EINVAL
			}
			return nil
		}),
		"buffered_io": value("0", guarded(func() bool { return n.enabled }, syscall.EBUSY, isBool)),
		"revalidate_size": {set: func(v string) error {
			if !n.enabled {
				return syscall.EINVAL
			}
			return isBool(v)
		}},
	}
	return n
}

type port struct {
	attrs attrs
	links map[string]string // subsystems entry → subsystem NQN
	ana   map[string]*attr  // ANA group → ana_state
}

func (p *port) enabled() bool { return len(p.links) > 0 }

func (p *port) get(name string) string { return p.attrs[name].get() }

func newPort() *port {
	p := &port{links: map[string]string{}, ana: map[string]*attr{"1": anaState("optimized")}}
	// The kernel refuses address changes on an enabled port with EACCES.
	locked := func(check func(string) error) *attr { return value("", guarded(p.enabled, syscall.EACCES, check)) }
	p.attrs = attrs{
		"addr_trtype":            locked(oneOf("rdma", "fc", "tcp", "loop")),
		"addr_adrfam":            locked(oneOf("ipv4", "ipv6", "ib", "fc", "loop")),
		"addr_traddr":            locked(maxLen(256)),
		"addr_trsvcid":           locked(maxLen(32)),
		"addr_treq":              value("not specified", oneOf("not specified", "required", "not required")),
		"addr_tsas":              value("none", nil),
		"param_inline_data_size": value("-1", nil), "param_max_queue_size": value("-1", nil),
		"param_pi_enable": value("0", nil),
	}
	return p
}

// enable checks what the kernel checks when the first subsystem is linked to a port.
func (f *FS) enable(p *port) error {
	tr := p.get("addr_trtype")
	switch tr {
	case "":
		return syscall.EINVAL
	case "loop":
		return nil
	}
	if fam := p.get("addr_adrfam"); fam != "ipv4" && fam != "ipv6" {
		return syscall.EINVAL
	}
	if net.ParseIP(p.get("addr_traddr")) == nil {
		return syscall.EINVAL
	}
	for _, q := range f.ports {
		if q != p && q.enabled() && q.get("addr_trtype") == tr &&
			q.get("addr_traddr") == p.get("addr_traddr") && q.get("addr_trsvcid") == p.get("addr_trsvcid") {
			return syscall.EADDRINUSE
		}
	}
	return nil
}

func anaState(v string) *attr {
	return value(v, oneOf("optimized", "non-optimized", "inaccessible", "persistent-loss", "change"))
}

func newHost() attrs {
	key := func(s string) error {
		if !strings.HasPrefix(s, "DHHC-1:") {
			return syscall.EINVAL
		}
		return nil
	}
	return attrs{
		"dhchap_key":      value("", key),
		"dhchap_ctrl_key": value("", key),
		"dhchap_hash":     value("hmac(sha256)", oneOf("hmac(sha256)", "hmac(sha384)", "hmac(sha512)")),
		"dhchap_dhgroup":  value("null", oneOf("null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")),
	}
}

func maxLen(n int) func(string) error {
	return func(s string) error {
		if len(s) > n {
			return syscall.EINVAL
		}
		return nil
	}
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// parseUUID accepts what the kernel's uuid_parse accepts: 8-4-4-4-12 hex digits.
func parseUUID(s string) (string, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return "", false
	}
	if _, err := hex.DecodeString(strings.ReplaceAll(s, "-", "")); err != nil {
		return "", false
	}
	return strings.ToLower(s), true
}

// parseNGUID accepts what device_nguid accepts: 16 hex pairs, each optionally followed by '-'
// or ':'. It returns the UUID form configfs shows.
func parseNGUID(s string) (string, bool) {
	var b []byte
	for i := 0; i < 16; i++ {
		if len(s) < 2 {
			return "", false
		}
		x, err := hex.DecodeString(s[:2])
		if err != nil {
			return "", false
		}
		b = append(b, x[0])
		s = s[2:]
		if s != "" && (s[0] == '-' || s[0] == ':') {
			s = s[1:]
		}
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], true
}
