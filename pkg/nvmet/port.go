package nvmet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
)

// Transports a Port can use.
const (
	TransportTCP  = "tcp"
	TransportRDMA = "rdma"
)

// Address families a Port can use.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// DefaultServiceID is the IANA port for NVMe-oF over TCP and RDMA.
const DefaultServiceID = "4420"

// DefaultANAGroup is the ANA group every port has from its creation.
const DefaultANAGroup = 1

// MaxANAGroup is the highest ANA group ID the kernel target accepts.
const MaxANAGroup = 128

// ANAState is the Asymmetric Namespace Access state of one ANA group on one port.
type ANAState string

// ANA states, spelled as configfs spells them.
const (
	ANAOptimized      ANAState = "optimized"
	ANANonOptimized   ANAState = "non-optimized"
	ANAInaccessible   ANAState = "inaccessible"
	ANAPersistentLoss ANAState = "persistent-loss"
	ANAChange         ANAState = "change"
)

// Port is an NVMe-oF port (portal): where the target listens.
type Port struct {
	// ID is the port's configfs name, unique on the node.
	ID uint16
	// Transport is TransportTCP or TransportRDMA.
	Transport string
	// Family is FamilyIPv4 or FamilyIPv6; empty means the family of Address.
	Family string
	// Address is the IP address to listen on.
	Address string
	// ServiceID is the port number; empty means DefaultServiceID.
	ServiceID string
	// ANAState is the state of ANA group 1 on this port; empty means ANAOptimized.
	ANAState ANAState
}

// normalized fills defaults and validates.
func (p Port) normalized() (Port, error) {
	bad := func(format string, a ...any) (Port, error) {
		return Port{}, fmt.Errorf("nvmet: port %d: %w: %s", p.ID, ErrInvalid, fmt.Sprintf(format, a...))
	}
	if p.Transport != TransportTCP && p.Transport != TransportRDMA {
		return bad("transport %q is not %q or %q", p.Transport, TransportTCP, TransportRDMA)
	}
	ip := net.ParseIP(p.Address)
	if ip == nil {
		return bad("address %q is not an IP address", p.Address)
	}
	family := FamilyIPv6
	if ip.To4() != nil {
		family = FamilyIPv4
	}
	if p.Family == "" {
		p.Family = family
	}
	if p.Family != family {
		return bad("address %s is not %s", p.Address, p.Family)
	}
	if p.ServiceID == "" {
		p.ServiceID = DefaultServiceID
	}
	if n, err := strconv.ParseUint(p.ServiceID, 10, 16); err != nil || n == 0 {
		return bad("service ID %q is not a port number", p.ServiceID)
	}
	if p.ANAState == "" {
		p.ANAState = ANAOptimized
	}
	if !p.ANAState.valid() {
		return bad("ANA state %q", p.ANAState)
	}
	return p, nil
}

func (s ANAState) valid() bool {
	switch s {
	case ANAOptimized, ANANonOptimized, ANAInaccessible, ANAPersistentLoss, ANAChange:
		return true
	}
	return false
}

func (t *Target) portPath(id uint16, elem ...string) string {
	return t.path(append([]string{"ports", strconv.FormatUint(uint64(id), 10)}, elem...)...)
}

// portAttrs are the configfs attributes that make up a port's address, in write order.
var portAttrs = []string{"addr_trtype", "addr_adrfam", "addr_traddr", "addr_trsvcid"}

func (p Port) attrs() map[string]string {
	return map[string]string{
		"addr_trtype": p.Transport, "addr_adrfam": p.Family,
		"addr_traddr": p.Address, "addr_trsvcid": p.ServiceID,
	}
}

// EnsurePort creates port p or brings it to p's address and ANA state. An existing port with
// another address is rewritten only while no subsystem is linked to it (the kernel refuses
// otherwise); if any is, the call fails with ErrPortConflict and changes nothing. Call it only
// for port IDs configured for this agent: the port is then ours (see the package
// documentation).
func (t *Target) EnsurePort(ctx context.Context, p Port) error {
	p, err := p.normalized()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.portMu.Lock()
	defer t.portMu.Unlock()

	dir := t.portPath(p.ID)
	if err := t.mkdir(dir); err != nil {
		return fmt.Errorf("nvmet: creating port %d: %w", p.ID, err)
	}
	want := p.attrs()
	var differ []string
	for _, a := range portAttrs {
		have, err := t.read(t.portPath(p.ID, a))
		if err != nil {
			return fmt.Errorf("nvmet: reading port %d: %w", p.ID, err)
		}
		if !sameAddrAttr(a, have, want[a]) {
			differ = append(differ, fmt.Sprintf("%s %q (want %q)", a, have, want[a]))
		}
	}
	if len(differ) > 0 {
		linked, err := t.readDir(t.portPath(p.ID, "subsystems"))
		if err != nil {
			return fmt.Errorf("nvmet: reading port %d: %w", p.ID, err)
		}
		if len(linked) > 0 {
			return fmt.Errorf("nvmet: port %d has %v but %d subsystem(s) are linked to it: %w",
				p.ID, differ, len(linked), ErrPortConflict)
		}
		for _, a := range portAttrs {
			if err := t.write(t.portPath(p.ID, a), want[a]); err != nil {
				if errors.Is(err, fs.ErrPermission) {
					err = fmt.Errorf("%w: %w", ErrPortConflict, err)
				}
				return fmt.Errorf("nvmet: configuring port %d: %w", p.ID, err)
			}
		}
	}
	if err := t.ensureAttr(t.portPath(p.ID, "ana_groups", "1", "ana_state"), string(p.ANAState)); err != nil {
		return fmt.Errorf("nvmet: port %d: %w", p.ID, err)
	}
	return nil
}

// sameAddrAttr compares an address attribute, treating equal IP addresses as equal.
func sameAddrAttr(attr, have, want string) bool {
	if have == want {
		return true
	}
	if attr != "addr_traddr" {
		return false
	}
	a, b := net.ParseIP(have), net.ParseIP(want)
	return a != nil && a.Equal(b)
}

// RemovePort removes port id with its non-default ANA groups. It fails with ErrPortConflict
// while any subsystem (ours or foreign) is linked to it; an absent port is success.
func (t *Target) RemovePort(ctx context.Context, id uint16) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.portMu.Lock()
	defer t.portMu.Unlock()

	if ok, err := t.exists(t.portPath(id)); err != nil || !ok {
		return err
	}
	linked, err := t.readDir(t.portPath(id, "subsystems"))
	if err != nil {
		return fmt.Errorf("nvmet: reading port %d: %w", id, err)
	}
	if len(linked) > 0 {
		return fmt.Errorf("nvmet: port %d still has %d subsystem(s) linked: %w", id, len(linked), ErrPortConflict)
	}
	groups, err := t.readDir(t.portPath(id, "ana_groups"))
	if err != nil {
		return fmt.Errorf("nvmet: reading port %d: %w", id, err)
	}
	for _, g := range groups {
		if g == strconv.Itoa(DefaultANAGroup) {
			continue
		}
		if err := t.rmdir(t.portPath(id, "ana_groups", g)); err != nil {
			return fmt.Errorf("nvmet: removing port %d: %w", id, err)
		}
	}
	if err := t.rmdir(t.portPath(id)); err != nil {
		return fmt.Errorf("nvmet: removing port %d: %w", id, err)
	}
	return nil
}

// SetANAState sets the state of ANA group group on port id, creating the group if needed. The
// port must exist (ErrNotFound otherwise).
func (t *Target) SetANAState(ctx context.Context, id uint16, group uint32, state ANAState) error {
	if group < DefaultANAGroup || group > MaxANAGroup {
		return fmt.Errorf("nvmet: %w: ANA group %d is outside 1..%d", ErrInvalid, group, MaxANAGroup)
	}
	if !state.valid() {
		return fmt.Errorf("nvmet: %w: ANA state %q", ErrInvalid, state)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.portMu.RLock()
	defer t.portMu.RUnlock()
	if err := t.requirePort(id); err != nil {
		return err
	}
	g := strconv.FormatUint(uint64(group), 10)
	if err := t.mkdir(t.portPath(id, "ana_groups", g)); err != nil {
		return fmt.Errorf("nvmet: creating ANA group %d on port %d: %w", group, id, err)
	}
	if err := t.ensureAttr(t.portPath(id, "ana_groups", g, "ana_state"), string(state)); err != nil {
		return fmt.Errorf("nvmet: setting ANA state on port %d: %w", id, err)
	}
	return nil
}

// requirePort fails with ErrNotFound unless port id exists.
func (t *Target) requirePort(id uint16) error {
	ok, err := t.exists(t.portPath(id))
	if err != nil {
		return fmt.Errorf("nvmet: port %d: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("nvmet: port %d: %w", id, ErrNotFound)
	}
	return nil
}

// ensureANAGroup creates ANA group group on port id in the optimized state unless it exists;
// an existing group keeps its state.
func (t *Target) ensureANAGroup(id uint16, group uint32) error {
	g := strconv.FormatUint(uint64(group), 10)
	err := t.fs().Mkdir(t.portPath(id, "ana_groups", g))
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err == nil {
		err = t.write(t.portPath(id, "ana_groups", g, "ana_state"), string(ANAOptimized))
	}
	if err != nil {
		return fmt.Errorf("nvmet: creating ANA group %d on port %d: %w", group, id, err)
	}
	return nil
}
