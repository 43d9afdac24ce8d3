package nvmet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultModel is the model number the kernel gives a new subsystem.
const DefaultModel = "Linux"

// Limits the kernel puts on attr_serial and attr_model (NVMe Identify Controller fields).
const (
	maxSerialLength = 20
	maxModelLength  = 40
)

// Subsystem is the desired (or, from List and Get, the actual) state of one of our NVMe
// subsystems: one per volume, with one namespace.
type Subsystem struct {
	// NQN names the subsystem; it must start with the Target's Prefix.
	NQN string
	// Serial is the controller serial number (printable ASCII, at most 20 bytes); empty means one
	// derived from the NQN, so it is the same every time the subsystem is recreated. The kernel
	// refuses to change it once a host has identified the controller.
	Serial string
	// Model is the controller model number (printable ASCII, at most 40 bytes); empty means
	// DefaultModel. The kernel refuses to change it once a host has identified the controller.
	Model string
	// Namespace is the subsystem's namespace.
	Namespace Namespace
	// Hosts are the host NQNs allowed to connect; any other host is refused.
	Hosts []string
	// Ports are the IDs of the ports the subsystem is exposed on. They must exist.
	Ports []uint16
}

// Namespace is the namespace of a Subsystem, backed by a block device.
type Namespace struct {
	// ID is the namespace ID; zero means 1.
	ID uint32
	// DevicePath is the absolute path of the backing block device.
	DevicePath string
	// UUID is the namespace UUID hosts see (the volume's identity). Required.
	UUID string
	// NGUID is the namespace globally unique identifier, as 32 hex digits or in UUID form; empty
	// means the same 16 bytes as UUID. List reports it in UUID form, as configfs shows it.
	NGUID string
	// ANAGroupID is the ANA group; zero means DefaultANAGroup.
	ANAGroupID uint32
}

// Normalized validates s and returns it with defaults filled in, identifiers in the form
// configfs shows them, and Hosts and Ports sorted without duplicates: the form List returns,
// so a desired state and an actual one can be compared with reflect.DeepEqual.
func (s Subsystem) Normalized() (Subsystem, error) {
	if err := ValidateNQN(s.NQN); err != nil {
		return Subsystem{}, fmt.Errorf("nvmet: %w", err)
	}
	bad := func(format string, a ...any) (Subsystem, error) {
		return Subsystem{}, fmt.Errorf("nvmet: subsystem %s: %w: %s", s.NQN, ErrInvalid, fmt.Sprintf(format, a...))
	}
	s.Serial = strings.TrimRight(s.Serial, " ")
	if s.Serial == "" {
		s.Serial = defaultSerial(s.NQN)
	}
	if !printable(s.Serial, maxSerialLength) {
		return bad("serial %q is not 1 to %d bytes of printable ASCII", s.Serial, maxSerialLength)
	}
	if s.Model == "" {
		s.Model = DefaultModel
	}
	if !printable(s.Model, maxModelLength) {
		return bad("model %q is not 1 to %d bytes of printable ASCII", s.Model, maxModelLength)
	}
	ns, err := s.Namespace.normalized()
	if err != nil {
		return Subsystem{}, fmt.Errorf("nvmet: subsystem %s: %w", s.NQN, err)
	}
	s.Namespace = ns
	for _, h := range s.Hosts {
		if err := ValidateNQN(h); err != nil {
			return Subsystem{}, fmt.Errorf("nvmet: subsystem %s: host: %w", s.NQN, err)
		}
	}
	s.Hosts = sortedSet(s.Hosts)
	s.Ports = sortedSet(s.Ports)
	return s, nil
}

func (ns Namespace) normalized() (Namespace, error) {
	if ns.ID == 0 {
		ns.ID = 1
	}
	if ns.ID == ^uint32(0) {
		return Namespace{}, fmt.Errorf("%w: namespace ID %d", ErrInvalid, ns.ID)
	}
	if !filepath.IsAbs(ns.DevicePath) || strings.ContainsAny(ns.DevicePath, "\n\x00") {
		return Namespace{}, fmt.Errorf("%w: device path %q is not an absolute path", ErrInvalid, ns.DevicePath)
	}
	uuid, err := parseUUID(ns.UUID, false)
	if err != nil {
		return Namespace{}, fmt.Errorf("namespace UUID: %w", err)
	}
	ns.UUID = uuid
	if ns.NGUID == "" {
		ns.NGUID = uuid
	}
	if ns.NGUID, err = parseUUID(ns.NGUID, true); err != nil {
		return Namespace{}, fmt.Errorf("namespace NGUID: %w", err)
	}
	if ns.ANAGroupID == 0 {
		ns.ANAGroupID = DefaultANAGroup
	}
	if ns.ANAGroupID > MaxANAGroup {
		return Namespace{}, fmt.Errorf("%w: ANA group %d is outside 1..%d", ErrInvalid, ns.ANAGroupID, MaxANAGroup)
	}
	return ns, nil
}

// defaultSerial derives a stable 20-hex-digit serial number from the NQN.
func defaultSerial(nqn string) string {
	sum := sha256.Sum256([]byte(nqn))
	return hex.EncodeToString(sum[:maxSerialLength/2])
}

func sortedSet[T cmpOrdered](in []T) []T {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

type cmpOrdered interface{ ~string | ~uint16 | ~uint32 }

// EnsureSubsystem creates subsystem s or brings it to exactly s: attr_allow_any_host=0, the
// serial and model, the namespace with its device and identifiers (disabling it first when
// the device attributes must change, then enabling it), no other namespace, exactly the listed
// hosts in allowed_hosts, and links in exactly the listed ports. The subsystem is exposed on
// its ports only once everything else is in place. Ports must exist (ErrNotFound).
func (t *Target) EnsureSubsystem(ctx context.Context, s Subsystem) error {
	if err := t.own(s.NQN); err != nil {
		return err
	}
	s, err := s.Normalized()
	if err != nil {
		return err
	}
	for _, id := range s.Ports {
		if err := t.requirePort(id); err != nil {
			return fmt.Errorf("nvmet: subsystem %s: %w", s.NQN, err)
		}
	}
	steps := []func() error{
		func() error { return t.ensureSubsystemAttrs(s) },
		func() error { return t.ensureNamespace(s.NQN, s.Namespace) },
		func() error { return t.removeNamespaces(s.NQN, s.Namespace.ID) },
		func() error { return t.ensureHosts(s.NQN, s.Hosts) },
		func() error { return t.ensurePortLinks(s.NQN, s.Ports, s.Namespace.ANAGroupID) },
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return fmt.Errorf("nvmet: subsystem %s: %w", s.NQN, err)
		}
	}
	return nil
}

func (t *Target) ensureSubsystemAttrs(s Subsystem) error {
	if err := t.mkdir(t.subsysPath(s.NQN)); err != nil {
		return err
	}
	// allow_any_host first: the subsystem is not linked to a port yet, but may be from an
	// earlier call, and must never admit unlisted hosts.
	for _, a := range []struct{ name, value string }{
		{"attr_allow_any_host", "0"},
		{"attr_serial", s.Serial},
		{"attr_model", s.Model},
	} {
		if err := t.ensureAttr(t.subsysPath(s.NQN, a.name), a.value); err != nil {
			return err
		}
	}
	return nil
}

// RemoveSubsystem removes subsystem nqn: its port links, its allowed hosts (collecting host
// objects no longer used, see the package documentation), its namespaces (disabled first) and
// the subsystem itself. An absent subsystem is success.
func (t *Target) RemoveSubsystem(ctx context.Context, nqn string) error {
	if err := t.own(nqn); err != nil {
		return err
	}
	if ok, err := t.exists(t.subsysPath(nqn)); err != nil || !ok {
		return err
	}
	steps := []func() error{
		func() error { return t.ensurePortLinks(nqn, nil, DefaultANAGroup) },
		func() error { return t.ensureHosts(nqn, nil) },
		func() error { return t.removeNamespaces(nqn, 0) },
		func() error { return t.rmdir(t.subsysPath(nqn)) },
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return fmt.Errorf("nvmet: removing subsystem %s: %w", nqn, err)
		}
	}
	return nil
}
