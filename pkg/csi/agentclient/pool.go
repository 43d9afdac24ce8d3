package agentclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// ErrUnknownNode reports a storage node name that is not in the configuration.
var ErrUnknownNode = rpcerr.Sentinel(rpcerr.ErrNotFound, "unknown storage node")

// Source hands out agent API clients by storage node name. Getting a client does no I/O:
// an unreachable agent shows up as codes.Unavailable on the first call. Implementations are
// safe for concurrent use.
type Source interface {
	// Client returns the client of the storage node called name, or an error wrapping
	// ErrUnknownNode.
	Client(name string) (agentapi.AgentClient, error)
}

// Pool is the Source of real agents: one lazily created, cached gRPC connection per storage
// node, authenticated with mTLS where configured.
type Pool struct {
	nodes    map[string]StorageNode
	creds    map[string]credentials.TransportCredentials
	dialOpts []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

var _ Source = (*Pool)(nil)

// NewPool validates cfg and loads every TLS configuration now, so that a bad certificate path
// fails at start-up rather than on the first volume operation. opts are added to every
// connection (tests, interceptors).
func NewPool(cfg Config, opts ...grpc.DialOption) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{
		nodes:    map[string]StorageNode{},
		creds:    map[string]credentials.TransportCredentials{},
		dialOpts: opts,
		conns:    map[string]*grpc.ClientConn{},
	}
	for _, n := range cfg.StorageNodes {
		p.nodes[n.Name] = n
		if n.TLS.Empty() {
			p.creds[n.Name] = insecure.NewCredentials()
			continue
		}
		tc, err := mtls.Client(n.TLS.Files, n.TLS.ServerName)
		if err != nil {
			return nil, fmt.Errorf("storage node %s: %w", n.Name, err)
		}
		p.creds[n.Name] = credentials.NewTLS(tc)
	}
	return p, nil
}

// Client implements Source.
func (p *Pool) Client(name string) (agentapi.AgentClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn, ok := p.conns[name]; ok {
		return agentapi.NewAgentClient(conn), nil
	}
	n, ok := p.nodes[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownNode, name)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(p.creds[name])}, p.dialOpts...)
	conn, err := grpc.NewClient(target(n.Address), opts...)
	if err != nil {
		return nil, fmt.Errorf("storage node %s: %w", name, err)
	}
	p.conns[name] = conn
	return agentapi.NewAgentClient(conn), nil
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for name, conn := range p.conns {
		errs = append(errs, conn.Close())
		delete(p.conns, name)
	}
	return errors.Join(errs...)
}

// target turns a configured address into a gRPC target.
func target(address string) string {
	if strings.HasPrefix(address, "unix://") {
		return address
	}
	return "dns:///" + address
}

// CallTimeout bounds every call made through the connections of a Pool to d (the
// controller's --agent-timeout): a call whose context has no earlier deadline gets one, so a
// hung agent turns into codes.DeadlineExceeded for that call only. d ≤ 0 adds no bound.
func CallTimeout(d time.Duration) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	})
}
