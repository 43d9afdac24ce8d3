package dmthin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Pool is a dm-thin pool driven in-process. It implements pool.Pool; see the package
// documentation for its on-disk format and recovery protocol.
type Pool struct {
	opts Options
	log  klog.Logger
	ctl  *dm.Control
	meta *device
	data *device
	hdr  header // the metadata device's header: the pool's UUID and layout
	st   *store

	// Set by buildStack.
	tp      thin.Pool // messages to the pool device
	poolDev uint64

	// locks serialize operations per ID (an operation takes every ID it touches).
	locks keylock.Locks

	// txMu orders set_transaction_id messages; txid is the pool's transaction id.
	txMu sync.Mutex
	txid uint64

	mu     sync.Mutex
	active map[string]activeDev // by ID
	closed bool
	ops    sync.WaitGroup
}

var _ pool.Pool = (*Pool)(nil)

// activeDev is a thin device's dm device.
type activeDev struct {
	name     string
	dev      uint64
	sectors  uint64
	readOnly bool
}

// Errors of Open beyond the pool sentinels.
var (
	// ErrForeignDevice: a device holds something Open will not format over (a file system,
	// an LVM label, a partition table, ...), or belongs to another pool.
	ErrForeignDevice = rpcerr.Sentinel(rpcerr.ErrPrecondition, "device is not this pool's")
	// ErrStale: the thin metadata is older than the records say it must be.
	ErrStale = rpcerr.Sentinel(rpcerr.ErrPrecondition, "thin metadata is older than the pool's records")
	// ErrPoolBusy: another process (or another Pool in this one) has the pool open.
	ErrPoolBusy = rpcerr.Sentinel(rpcerr.ErrUnavailable, "pool is open elsewhere")
	// ErrHoldExpired: a snapshot could not be made within HoldTimeout (or its context
	// ended while the origins were held); none was made.
	ErrHoldExpired = rpcerr.Sentinel(rpcerr.ErrUnavailable, "snapshot write hold expired")
)

// Device names and UUIDs.
func (p *Pool) poolName() string          { return p.opts.Name + "-pool" }
func (p *Pool) metaName() string          { return p.opts.Name + "-pool_tmeta" }
func (p *Pool) dataName() string          { return p.opts.Name + "-pool_tdata" }
func (p *Pool) thinName(id string) string { return p.opts.Name + "-" + id }
func (p *Pool) uuidPrefix() string        { return "NVMEOF-" + p.hdr.UUID.hex32() + "-" }
func (p *Pool) thinUUID(thinID uint32) string {
	return p.uuidPrefix() + "thin-" + strconv.FormatUint(uint64(thinID), 10)
}

// thinIDOfUUID returns the thin id a device UUID of this pool names, if it names one.
func (p *Pool) thinIDOfUUID(uuid string) (uint32, bool) {
	s, ok := strings.CutPrefix(uuid, p.uuidPrefix()+"thin-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n > thin.MaxDevID {
		return 0, false
	}
	return uint32(n), true
}

// nodeDir is the directory of the pool's device nodes; nodePath one thin device's node.
func (p *Pool) nodeDir() string           { return filepath.Join(p.opts.NodeDir, p.opts.Name) }
func (p *Pool) nodePath(id string) string { return filepath.Join(p.nodeDir(), id) }

// volume is v as a pool.Volume, with its path if it is active.
func (p *Pool) volume(v *volRec) pool.Volume {
	vol := pool.Volume{Record: v.record()}
	p.mu.Lock()
	if _, ok := p.active[v.ID]; ok {
		vol.Path = p.nodePath(v.ID)
	}
	p.mu.Unlock()
	return vol
}

// lookup returns the record of id.
func (p *Pool) lookup(id string) (*volRec, bool) {
	var v *volRec
	var ok bool
	p.st.view(func(st *state) { v, ok = st.recordOf(id) })
	return v, ok
}

// target returns the record of id for an operation that changes it: ErrNotFound if there is
// none, and an error if an interrupted operation on it is still pending (a delete whose
// device was open when recovery ran: only Delete may go on with it).
func (p *Pool) target(id string) (*volRec, error) {
	var v *volRec
	var it *intent
	p.st.view(func(st *state) {
		v = st.vols[id]
		it, _ = st.pendingFor(id)
	})
	switch {
	case v == nil:
		return nil, fmt.Errorf("%w: %s", pool.ErrNotFound, id)
	case it != nil:
		return nil, rpcerr.Unavailablef("dmthin: %s: an interrupted %s is pending for it (Delete it again, or reopen the pool)", id, it.Op)
	}
	return v, nil
}

// writable refuses to make new thin devices in a pool that cannot take them: out of data
// space, read-only (out of metadata space, or damaged) or failed.
func (p *Pool) writable() error {
	s, err := p.tp.Status(true)
	if err != nil {
		return fmt.Errorf("dmthin: pool status: %w", err)
	}
	switch h := health(s); {
	case h == "":
		return nil
	case s.Mode == thin.PoolOutOfDataSpace || (s.Mode == thin.PoolReadOnly && s.UsedMetadataBlocks+1 >= s.TotalMetadataBlocks):
		return fmt.Errorf("%w: the pool is %s", pool.ErrNoSpace, h)
	default:
		return rpcerr.Unavailablef("dmthin: the pool cannot take new devices: %s", h)
	}
}

// Get returns one volume or snapshot.
func (p *Pool) Get(ctx context.Context, id string) (pool.Volume, error) {
	if err := ctx.Err(); err != nil {
		return pool.Volume{}, err
	}
	v, ok := p.lookup(id)
	if !ok {
		return pool.Volume{}, fmt.Errorf("%w: %s", pool.ErrNotFound, id)
	}
	return p.volume(v), nil
}

// List returns every volume and snapshot, by ID.
func (p *Pool) List(ctx context.Context) ([]pool.Volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var vs []*volRec
	p.st.view(func(st *state) {
		vs = make([]*volRec, 0, len(st.vols))
		for _, v := range st.vols {
			vs = append(vs, v)
		}
	})
	slices.SortFunc(vs, func(a, b *volRec) int { return strings.Compare(a.ID, b.ID) })
	out := make([]pool.Volume, len(vs))
	for i, v := range vs {
		out[i] = p.volume(v)
	}
	return out, nil
}

// Usage reports the pool's capacity from its status (without a metadata commit).
func (p *Pool) Usage(ctx context.Context) (pool.Usage, error) {
	if err := ctx.Err(); err != nil {
		return pool.Usage{}, err
	}
	s, err := p.tp.Status(true)
	if err != nil {
		return pool.Usage{}, fmt.Errorf("dmthin: pool status: %w", err)
	}
	block := int64(p.hdr.BlockSectors) * sector
	u := pool.Usage{
		DataBytes:         int64(s.TotalDataBlocks) * block,
		DataUsedBytes:     int64(s.UsedDataBlocks) * block,
		MetadataBytes:     int64(s.TotalMetadataBlocks) * blockSize,
		MetadataUsedBytes: int64(s.UsedMetadataBlocks) * blockSize,
		Health:            health(s),
	}
	return u, nil
}

// health says why a pool cannot take writes ("" if it can).
func health(s thin.PoolStatus) string {
	switch {
	case s.Mode == thin.PoolFail || s.Mode == thin.PoolError:
		return "failed"
	case s.NeedsCheck:
		return "metadata needs check"
	case s.Mode == thin.PoolReadOnly:
		return "metadata read only"
	case s.Mode == thin.PoolOutOfDataSpace:
		return "out of data space"
	}
	return ""
}

// errClosed is returned by calls after Close.
var errClosed = rpcerr.Unavailablef("dmthin: the pool is closed")

// run runs an operation that changes the pool, holding the locks of every ID it touches
// (taken in order, waiting bounded by ctx). The operation runs in its own goroutine and the
// call returns when it ends or when ctx ends, whichever is first: an operation that has
// started changing the kernel goes on to its end (complete or rolled back) even if the caller
// stopped waiting, and keeps its locks — and, through keylock.Outlive, the caller's — until
// then. A panic in the operation is returned as an error (its deferred resumes have run).
func run[T any](ctx context.Context, p *Pool, ids []string, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	ids, err := p.enter(ctx, ids)
	if err != nil {
		return zero, err
	}
	ended := keylock.Outlive(ctx)
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			p.leave(ids)
			ended()
		}()
		defer func() {
			if r := recover(); r != nil {
				p.log.Error(nil, "Operation panicked", "ids", ids, "panic", r)
				ch <- result{err: fmt.Errorf("dmthin: operation on %v panicked: %v", ids, r)}
			}
		}()
		v, err := fn(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// enter starts an operation on ids: it counts it (Close waits for it) and takes the locks of
// ids in order, waiting bounded by ctx. It returns the IDs sorted and without repeats; the
// operation ends with leave.
func (p *Pool) enter(ctx context.Context, ids []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errClosed
	}
	p.ops.Add(1)
	p.mu.Unlock()
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	for i, id := range ids {
		if err := p.locks.Lock(ctx, id); err != nil {
			p.leave(ids[:i])
			return nil, err
		}
	}
	return ids, nil
}

// leave ends an operation that enter started on ids.
func (p *Pool) leave(ids []string) {
	for _, id := range ids {
		p.locks.Unlock(id)
	}
	p.ops.Done()
}

// settleTimeout bounds the wait for journal room of the entries that end an operation,
// which must not be cut short by the caller's context.
const settleTimeout = time.Minute

// detached is a context for the steps that finish an operation once it changed the kernel.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// intend journals an intent and returns it with its sequence number.
func (p *Pool) intend(ctx context.Context, it intent) (*intent, error) {
	var out *intent
	_, err := p.st.append(ctx, func(seq uint64) *change {
		c := it
		c.Seq = seq
		out = &c
		return &change{Intent: out}
	})
	if err != nil {
		return nil, fmt.Errorf("dmthin: journal %s intent: %w", it.Op, err)
	}
	return out, nil
}

// settle journals the end of an intent.
func (p *Pool) settle(ctx context.Context, it *intent, commit bool) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	p.txMu.Lock()
	txid := p.txid
	p.txMu.Unlock()
	_, err := p.st.append(ctx, func(uint64) *change {
		return &change{Settle: &settle{Intent: it.Seq, Commit: commit, TxID: txid}}
	})
	if err != nil {
		return fmt.Errorf("dmthin: journal the end of %s intent %d: %w", it.Op, it.Seq, err)
	}
	return nil
}

// bumpTxID moves the pool's transaction id one on (a metadata commit), after a change of
// the thin metadata.
func (p *Pool) bumpTxID() error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if err := p.tp.SetTransactionID(p.txid, p.txid+1); err != nil {
		return fmt.Errorf("dmthin: %w", kernelErr(err))
	}
	p.txid++
	return nil
}

// kernelErr classifies a failed device-mapper call for the pool's callers.
func kernelErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%w: %w", pool.ErrNoSpace, err)
	case errors.Is(err, dm.ErrBusy):
		return fmt.Errorf("%w: %w", pool.ErrInUse, err)
	}
	return err
}

// resume resumes a dm device, logging a failure (there is nothing better to do with it: the
// next Open resumes every suspended device of the pool).
func (p *Pool) resume(name string) {
	if _, err := p.ctl.Resume(name); err != nil {
		p.log.Error(err, "Cannot resume a device", "device", name)
	}
}

// Close releases the control device and the pool's devices; the dm devices stay active. It
// waits for running operations first (they are bounded except by the kernel).
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.ops.Wait()
	return p.closeFiles()
}

func (p *Pool) closeFiles() error {
	var errs []error
	if p.st != nil {
		p.st.close()
	}
	for _, c := range []interface{ Close() error }{p.meta, p.data, p.ctl} {
		if c != nil && !isNilCloser(c) {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *device:
		return v == nil
	case *dm.Control:
		return v == nil
	}
	return false
}

// ThinIDs maps the ID of every record to its thin device id (tests, operator tools: thin_ls
// lists the same ids).
func (p *Pool) ThinIDs() map[string]uint32 {
	out := map[string]uint32{}
	p.st.view(func(st *state) {
		for id, v := range st.vols {
			out[id] = v.Thin
		}
	})
	return out
}

// UUID is the pool's UUID, which both its devices carry.
func (p *Pool) UUID() string { return p.hdr.UUID.String() }

// Used implements pool.UsedReporter: the provisioned sectors of each active thin device, from
// its status (one ioctl each; inactive devices are absent).
func (p *Pool) Used(ctx context.Context, ids []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.mu.Lock()
		_, active := p.active[id]
		p.mu.Unlock()
		if !active {
			continue
		}
		targets, err := p.ctl.Status(p.thinName(id), true)
		if errors.Is(err, dm.ErrNotFound) {
			continue // deactivated meanwhile
		}
		if err != nil {
			return nil, kernelErr(err)
		}
		if len(targets) != 1 {
			continue
		}
		s, err := thin.ParseThinStatus(targets[0].Params)
		if err != nil || s.Fail || s.Error {
			continue
		}
		out[id] = int64(s.MappedSectors) * 512
	}
	return out, nil
}
