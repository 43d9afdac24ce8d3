package vmtest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// hub is the private network of a Cluster: a switch in the test process between the machines'
// qemu processes, and nothing else. Each qemu has a datagram netdev (`-netdev dgram`) bound to
// a unix socket of its own that sends every Ethernet frame to the hub's unix socket; the hub
// sends each frame on to every other machine's socket, unless the link between the two is
// cut. No IP address or port of this host, or of anything beyond it, is involved.
//
// A cut drops frames in both directions, as a failed switch would: both guests keep their
// link up and notice only silence, which is what a partition looks like to NVMe/TCP (keep-alive
// timeouts, then reconnect attempts). Frames to a machine that is down are dropped (its socket
// has no reader), as frames to an unplugged host are.
type hub struct {
	conn *net.UnixConn
	done chan struct{}

	mu    sync.Mutex
	peers []*net.UnixAddr // by machine index
	cut   map[[2]int]bool

	forwarded, dropped atomic.Int64
}

// maxFrame is the largest frame the hub carries: a 64 KiB MTU plus the Ethernet header.
const maxFrame = 65536 + 64

// hubSendTimeout bounds one send to a machine: one whose queue stays full (a guest that stopped
// reading) loses the frame, as on a congested switch port, rather than stalling the others.
const hubSendTimeout = 200 * time.Millisecond

func newHub(path string) (*hub, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	h := &hub{conn: conn, done: make(chan struct{}), cut: map[[2]int]bool{}}
	go h.run()
	return h, nil
}

// addPeer registers the socket of the next machine and returns its index.
func (h *hub) addPeer(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peers = append(h.peers, &net.UnixAddr{Name: path, Net: "unixgram"})
	return len(h.peers) - 1
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// setCut cuts (or heals) the link between machines a and b.
func (h *hub) setCut(a, b int, cut bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cut {
		h.cut[pair(a, b)] = true
	} else {
		delete(h.cut, pair(a, b))
	}
}

// targets returns the sockets a frame from src goes to.
func (h *hub) targets(src string) []*net.UnixAddr {
	h.mu.Lock()
	defer h.mu.Unlock()
	from := -1
	for i, p := range h.peers {
		if p.Name == src {
			from = i
		}
	}
	if from < 0 {
		return nil
	}
	var out []*net.UnixAddr
	for i, p := range h.peers {
		if i != from && !h.cut[pair(from, i)] {
			out = append(out, p)
		}
	}
	return out
}

func (h *hub) run() {
	defer close(h.done)
	buf := make([]byte, maxFrame)
	for {
		n, src, err := h.conn.ReadFromUnix(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if src == nil {
			h.dropped.Add(1)
			continue
		}
		targets := h.targets(src.Name)
		if len(targets) == 0 {
			h.dropped.Add(1)
		}
		for _, dst := range targets {
			_ = h.conn.SetWriteDeadline(time.Now().Add(hubSendTimeout))
			if _, err := h.conn.WriteToUnix(buf[:n], dst); err != nil {
				h.dropped.Add(1) // a machine that is down, or not reading
				continue
			}
			h.forwarded.Add(1)
		}
	}
}

// close stops the hub.
func (h *hub) close() error {
	err := h.conn.Close()
	<-h.done
	return err
}
