package agent

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/yamlstrict"
)

// Config is the agent's configuration file (YAML).
//
//	nodeName: storage-1
//	pool: {backend: dmthin, metadataDevice: /dev/nvme0n1p1, dataDevice: /dev/nvme0n1p2, overcommitRatio: 2}
//	portals:
//	- {id: 1, transport: tcp, address: 192.0.2.1, port: 4420}
//	- {id: 2, transport: rdma, address: 192.0.2.1, port: 4420}
//	listen: tcp://0.0.0.0:9500
//	tls: {cert: /etc/nvmeof/agent.pem, key: /etc/nvmeof/agent-key.pem, ca: /etc/nvmeof/ca.pem}
type Config struct {
	// NodeName names the storage node; it is part of every subsystem NQN the agent owns.
	NodeName string         `json:"nodeName"`
	Pool     PoolConfig     `json:"pool"`
	Portals  []PortalConfig `json:"portals"`
	// Listen is unix:///path (plaintext allowed) or tcp://host:port (mTLS required).
	Listen string     `json:"listen"`
	TLS    mtls.Files `json:"tls,omitempty"`
	// MetricsAddress, when set, is the host:port where GET /metrics answers in Prometheus
	// format (plain HTTP; e.g. ":9810"). Empty: no metrics endpoint.
	MetricsAddress string `json:"metricsAddress,omitempty"`
	// ReconcileInterval is how often configfs is brought back to the durable state (default 1m).
	ReconcileInterval Duration `json:"reconcileInterval,omitempty"`
	// ConfigfsRoot is the nvmet configfs directory (default /sys/kernel/config/nvmet).
	ConfigfsRoot string `json:"configfsRoot,omitempty"`
	// LVMConfig (lvm backend) is passed to every lvm command as --config (e.g. to disable udev
	// sync where no udev runs).
	LVMConfig string `json:"lvmConfig,omitempty"`
}

// DefaultMaxFillPercent is pool.maxFillPercent's default.
const DefaultMaxFillPercent = 90

// Pool backends.
const (
	// BackendDMThin is the kernel's dm-thin driven in-process (pkg/pool/dmthin): the default.
	BackendDMThin = "dmthin"
	// BackendLVM is an LVM thin pool (pkg/pool/lvmthin).
	BackendLVM = "lvm"
)

// PoolConfig names the thin pool the agent owns: two block devices for the dmthin backend, or
// a volume group and thin pool for the lvm backend.
type PoolConfig struct {
	// Backend is dmthin or lvm. Empty means lvm when volumeGroup is set (configurations from
	// before the dmthin backend), else dmthin.
	Backend string `json:"backend,omitempty"`
	// OvercommitRatio bounds the sum of volume sizes to this multiple of the pool's data size
	// (default 1: no overcommit).
	OvercommitRatio float64 `json:"overcommitRatio,omitempty"`
	// MaxFillPercent is the physical fill level, of the data or the metadata space, at which
	// the agent stops taking new volumes, clones and snapshots (ResourceExhausted); the data
	// space above it is a reserve that reported capacity leaves out (default 90).
	MaxFillPercent float64 `json:"maxFillPercent,omitempty"`

	// MetadataDevice and DataDevice (dmthin) are the pool's two block devices, formatted on
	// first use: they must carry no signature (no LVM, file system or partition table).
	MetadataDevice string `json:"metadataDevice,omitempty"`
	DataDevice     string `json:"dataDevice,omitempty"`

	// VolumeGroup and ThinPool (lvm) name an existing LVM thin pool.
	VolumeGroup string `json:"volumeGroup,omitempty"`
	ThinPool    string `json:"thinPool,omitempty"`
	// Devices (lvm), when set, are the only block devices LVM may scan (a global_filter). Set
	// it: otherwise every lvm call reads every block device, including NVMe-oF namespaces this
	// host may have connected, whose I/O queues (and blocks lvm) while their paths are down.
	Devices []string `json:"devices,omitempty"`
}

// PortalConfig is one nvmet port the agent exports through.
type PortalConfig struct {
	// ID is the nvmet port ID; the agent only links its own subsystems into it.
	ID        uint16 `json:"id"`
	Transport string `json:"transport"`
	Address   string `json:"address"`
	Port      int    `json:"port,omitempty"`
	// ANAState is the Asymmetric Namespace Access state the portal reports for every
	// namespace it exports: optimized (the default), non-optimized or inaccessible. Hosts
	// with native multipath send I/O to optimized paths, to non-optimized ones only when no
	// optimized path is left, and never to inaccessible ones. The kernel target gives a
	// namespace one ANA group, whose state it keeps per port, so the state is the portal's.
	ANAState string `json:"anaState,omitempty"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration struct{ time.Duration }

// UnmarshalJSON parses "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("duration %s: want a quoted string like \"1m\"", b)
	}
	d.Duration, err = time.ParseDuration(s)
	return err
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)

// LoadConfig reads and validates a configuration file; unknown fields are errors.
func LoadConfig(path string) (Config, error) { return yamlstrict.Load[Config](path) }

// ParseConfig decodes and validates a configuration; unknown fields are errors.
func ParseConfig(raw []byte) (Config, error) { return yamlstrict.Decode[Config](raw) }

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	var errs []error
	if !nodeNameRE.MatchString(c.NodeName) {
		errs = append(errs, fmt.Errorf("nodeName %q: want a DNS label-like name (lowercase letters, digits, '-', '.'; ≤ 63)", c.NodeName))
	}
	errs = append(errs, c.Pool.validateBackend()...)
	if c.Pool.OvercommitRatio == 0 {
		c.Pool.OvercommitRatio = 1
	}
	if c.Pool.OvercommitRatio < 1 {
		errs = append(errs, fmt.Errorf("pool.overcommitRatio %g: must be ≥ 1", c.Pool.OvercommitRatio))
	}
	if c.Pool.MaxFillPercent == 0 {
		c.Pool.MaxFillPercent = DefaultMaxFillPercent
	}
	if c.Pool.MaxFillPercent < 1 || c.Pool.MaxFillPercent > 100 {
		errs = append(errs, fmt.Errorf("pool.maxFillPercent %g: must be in [1, 100]", c.Pool.MaxFillPercent))
	}
	errs = append(errs, c.validatePortals()...)
	if c.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			errs = append(errs, fmt.Errorf("metricsAddress %q: want host:port or :port: %w", c.MetricsAddress, err))
		}
	}
	switch {
	case strings.HasPrefix(c.Listen, "unix://"):
	case strings.HasPrefix(c.Listen, "tcp://"):
		if c.TLS.Empty() {
			errs = append(errs, errors.New("listen on tcp:// requires tls (cert, key, ca): plaintext is allowed only on a unix socket"))
		}
	default:
		errs = append(errs, fmt.Errorf("listen %q: want unix:///path or tcp://host:port", c.Listen))
	}
	if c.ReconcileInterval.Duration == 0 {
		c.ReconcileInterval.Duration = time.Minute
	}
	if c.ConfigfsRoot == "" {
		c.ConfigfsRoot = "/sys/kernel/config/nvmet"
	}
	return errors.Join(errs...)
}

// validateBackend settles the backend and checks that exactly its keys are set.
func (p *PoolConfig) validateBackend() []error {
	lvmKeys := p.VolumeGroup != "" || p.ThinPool != "" || len(p.Devices) > 0
	dmKeys := p.MetadataDevice != "" || p.DataDevice != ""
	if p.Backend == "" {
		p.Backend = BackendDMThin
		if lvmKeys {
			p.Backend = BackendLVM
		}
	}
	var errs []error
	switch p.Backend {
	case BackendDMThin:
		if lvmKeys {
			errs = append(errs, errors.New("pool.volumeGroup, pool.thinPool and pool.devices are lvm settings; the dmthin backend takes pool.metadataDevice and pool.dataDevice"))
		}
		for key, d := range map[string]string{"metadataDevice": p.MetadataDevice, "dataDevice": p.DataDevice} {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d {
				errs = append(errs, fmt.Errorf("pool.%s %q: want the absolute path of a block device", key, d))
			}
		}
		if p.MetadataDevice != "" && p.MetadataDevice == p.DataDevice {
			errs = append(errs, errors.New("pool.metadataDevice and pool.dataDevice must be two devices"))
		}
	case BackendLVM:
		if dmKeys {
			errs = append(errs, errors.New("pool.metadataDevice and pool.dataDevice are dmthin settings; the lvm backend takes pool.volumeGroup, pool.thinPool and pool.devices"))
		}
		if p.VolumeGroup == "" || p.ThinPool == "" {
			errs = append(errs, errors.New("pool.volumeGroup and pool.thinPool are required with the lvm backend"))
		}
		for _, d := range p.Devices {
			if !strings.HasPrefix(d, "/dev/") || strings.ContainsAny(d, "\"| ") {
				errs = append(errs, fmt.Errorf("pool.devices: %q is not a /dev path", d))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("pool.backend %q: want %s or %s", p.Backend, BackendDMThin, BackendLVM))
	}
	return errs
}

// validatePortals checks the portals and fills in their default port.
func (c *Config) validatePortals() []error {
	var errs []error
	if len(c.Portals) == 0 {
		errs = append(errs, errors.New("at least one portal is required"))
	}
	ids := map[uint16]bool{}
	for i := range c.Portals {
		p := &c.Portals[i]
		if p.ID == 0 || ids[p.ID] {
			errs = append(errs, fmt.Errorf("portals[%d]: id %d must be non-zero and unique", i, p.ID))
		}
		ids[p.ID] = true
		if _, err := agentapi.ParseTransport(p.Transport); err != nil {
			errs = append(errs, fmt.Errorf("portals[%d]: %w", i, err))
		}
		if net.ParseIP(p.Address) == nil {
			errs = append(errs, fmt.Errorf("portals[%d]: address %q is not an IP address", i, p.Address))
		}
		if p.Port == 0 {
			p.Port = 4420
		}
		if p.Port < 1 || p.Port > 65535 {
			errs = append(errs, fmt.Errorf("portals[%d]: port %d out of range", i, p.Port))
		}
		switch nvmet.ANAState(p.ANAState) {
		case "", nvmet.ANAOptimized, nvmet.ANANonOptimized, nvmet.ANAInaccessible:
		default:
			errs = append(errs, fmt.Errorf("portals[%d]: anaState %q: want optimized, non-optimized or inaccessible", i, p.ANAState))
		}
	}
	return errs
}

// LVMConfigString is what the agent passes to every lvm command as --config: the device filter
// of Pool.Devices followed by LVMConfig.
func (c *Config) LVMConfigString() string {
	var parts []string
	if filter := lvm.DeviceFilter(c.Pool.Devices...); filter != "" {
		parts = append(parts, filter)
	}
	if c.LVMConfig != "" {
		parts = append(parts, c.LVMConfig)
	}
	return strings.Join(parts, " ")
}

// NQNPrefix is the prefix of every subsystem NQN this agent owns.
func (c *Config) NQNPrefix() string { return "nqn.2026-11.io.nvmeof-csi:" + c.NodeName + ":" }
