package nvme

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Transports Connect accepts.
const (
	TransportTCP  = "tcp"
	TransportRDMA = "rdma"
)

// DefaultServiceID is the IANA-assigned NVMe-oF port, used when ConnectOptions.ServiceID is
// empty.
const DefaultServiceID = "4420"

// maxOptionString keeps the option string within the single page the kernel copies.
const maxOptionString = 4095

// ConnectOptions describe one controller connection (one path). Integer options set to 0 are
// left out of the option string, so the kernel default applies; negative values are rejected
// (in particular ctrl_loss_tmo=-1, "reconnect forever", which can block node shutdown). The
// kernel rounds ctrl_loss_tmo up to a multiple of reconnect_delay (it counts reconnect
// attempts), and sysfs shows the rounded value.
type ConnectOptions struct {
	Transport string // TransportTCP or TransportRDMA
	Address   string // traddr: the portal's IPv4 or IPv6 address
	ServiceID string // trsvcid: the portal's port; empty means DefaultServiceID
	SubsysNQN string // nqn: the subsystem to connect to
	HostNQN   string // hostnqn: always sent, see Identity
	HostID    string // hostid: always sent; the kernel pairs each hostid with one hostnqn

	CtrlLossTmo    int // ctrl_loss_tmo, seconds before a lost controller is removed
	ReconnectDelay int // reconnect_delay, seconds between reconnect attempts
	KeepAliveTmo   int // keep_alive_tmo, seconds
	NrIOQueues     int // nr_io_queues

	DHChapSecret     string // dhchap_secret: the host's DH-HMAC-CHAP key, optional
	DHChapCtrlSecret string // dhchap_ctrl_secret: the controller's key (bidirectional), optional
}

// normalized validates o and returns it with the address and port in canonical form, so that
// they compare equal to what sysfs reports. Errors wrap ErrInvalidOption.
func (o ConnectOptions) normalized() (ConnectOptions, error) {
	if o.Transport != TransportTCP && o.Transport != TransportRDMA {
		return o, fmt.Errorf("%w: transport %q (want %q or %q)", ErrInvalidOption, o.Transport, TransportTCP, TransportRDMA)
	}
	addr, err := netip.ParseAddr(o.Address)
	if err != nil {
		return o, fmt.Errorf("%w: address %q is not an IP address", ErrInvalidOption, o.Address)
	}
	o.Address = addr.String()
	if err := plainValue("address", o.Address); err != nil {
		return o, err
	}
	if o.ServiceID == "" {
		o.ServiceID = DefaultServiceID
	}
	port, err := strconv.Atoi(o.ServiceID)
	if err != nil || port < 1 || port > 65535 {
		return o, fmt.Errorf("%w: service ID %q is not a port number", ErrInvalidOption, o.ServiceID)
	}
	o.ServiceID = strconv.Itoa(port)
	if err := ValidNQN(o.SubsysNQN); err != nil {
		return o, fmt.Errorf("subsystem: %w", err)
	}
	if err := ValidNQN(o.HostNQN); err != nil {
		return o, fmt.Errorf("host: %w", err)
	}
	if err := ValidUUID(o.HostID); err != nil {
		return o, fmt.Errorf("host ID: %w", err)
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"ctrl_loss_tmo", o.CtrlLossTmo}, {"reconnect_delay", o.ReconnectDelay}, {"keep_alive_tmo", o.KeepAliveTmo}, {"nr_io_queues", o.NrIOQueues}} {
		if n.v < 0 {
			return o, fmt.Errorf("%w: %s=%d is negative", ErrInvalidOption, n.name, n.v)
		}
	}
	if o.DHChapSecret != "" {
		if err := validSecret("dhchap_secret", o.DHChapSecret); err != nil {
			return o, err
		}
	}
	if o.DHChapCtrlSecret != "" {
		if o.DHChapSecret == "" {
			return o, fmt.Errorf("%w: dhchap_ctrl_secret needs dhchap_secret", ErrInvalidOption)
		}
		if err := validSecret("dhchap_ctrl_secret", o.DHChapCtrlSecret); err != nil {
			return o, err
		}
	}
	if n := len(o.optionString()); n > maxOptionString {
		return o, fmt.Errorf("%w: option string is %d bytes", ErrInvalidOption, n)
	}
	return o, nil
}

// optionString is what Connect writes to /dev/nvme-fabrics. Only call it on normalized
// options. It contains secrets: never log it.
func (o ConnectOptions) optionString() string {
	var b strings.Builder
	add := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	add("nqn", o.SubsysNQN)
	add("transport", o.Transport)
	add("traddr", o.Address)
	add("trsvcid", o.ServiceID)
	add("hostnqn", o.HostNQN)
	add("hostid", o.HostID)
	for _, n := range []struct {
		k string
		v int
	}{{"ctrl_loss_tmo", o.CtrlLossTmo}, {"reconnect_delay", o.ReconnectDelay}, {"keep_alive_tmo", o.KeepAliveTmo}, {"nr_io_queues", o.NrIOQueues}} {
		if n.v != 0 {
			add(n.k, strconv.Itoa(n.v))
		}
	}
	if o.DHChapSecret != "" {
		add("dhchap_secret", o.DHChapSecret)
	}
	if o.DHChapCtrlSecret != "" {
		add("dhchap_ctrl_secret", o.DHChapCtrlSecret)
	}
	return b.String()
}

// String describes the connection for logs and errors, without secrets.
func (o ConnectOptions) String() string {
	port := o.ServiceID
	if port == "" {
		port = DefaultServiceID
	}
	return fmt.Sprintf("%s %s %s as %s", o.Transport, net.JoinHostPort(o.Address, port), o.SubsysNQN, o.HostNQN)
}
