package dmthin

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// Open opens the pool on the two devices of o: it formats them if both are blank, or checks
// that they are the two devices of one pool, loads the records, builds the device-mapper
// stack or re-attaches to the one a previous process left active, and finishes or rolls back
// every operation a crash interrupted (see the package documentation). It takes a while only
// the first time (formatting writes the record store) and after a crash with pending work.
func Open(ctx context.Context, o Options) (_ *Pool, err error) {
	o, err = o.withDefaults()
	if err != nil {
		return nil, err
	}
	log := klog.FromContext(ctx).WithValues("pool", o.Name)
	start := time.Now()
	ctl, err := dm.Open()
	if err != nil {
		return nil, fmt.Errorf("dmthin: %w", err)
	}
	p := &Pool{opts: o, log: log, ctl: ctl, active: map[string]activeDev{}}
	defer func() {
		if err != nil {
			_ = p.closeFiles() // the error that made Open fail is the one to report
		}
	}()
	if err := p.openDevices(ctx); err != nil {
		return nil, err
	}
	if err := p.buildStack(ctx); err != nil {
		return nil, err
	}
	if err := p.adoptThins(ctx); err != nil {
		return nil, err
	}
	if err := p.recoverIntents(ctx); err != nil {
		return nil, err
	}
	p.cleanNodes()
	var n int
	p.st.view(func(st *state) { n = len(st.vols) })
	log.V(2).Info("Pool open", "uuid", p.hdr.UUID, "volumes", n, "active", len(p.active), "txid", p.txid,
		"duration", time.Since(start))
	return p, nil
}

// openDevices opens the two devices, formats them if both are blank, checks that they are
// the metadata and data devices of one pool, and loads the record store.
func (p *Pool) openDevices(ctx context.Context) error {
	var err error
	if p.meta, err = openDevice(p.opts.MetadataDevice, false); err != nil {
		return fmt.Errorf("dmthin: metadata device: %w", err)
	}
	if err := p.meta.lock(); err != nil {
		return err
	}
	if p.data, err = openDevice(p.opts.DataDevice, false); err != nil {
		return fmt.Errorf("dmthin: data device: %w", err)
	}
	if p.meta.dev != 0 && p.meta.dev == p.data.dev {
		return fmt.Errorf("%w: %s and %s are the same device", pool.ErrInvalid, p.meta.path, p.data.path)
	}
	mp, err := probeDevice(p.meta, roleMetadata)
	if err != nil {
		return err
	}
	dp, err := probeDevice(p.data, roleData)
	if err != nil {
		return err
	}
	if err := p.pair(ctx, mp, dp); err != nil {
		return err
	}
	if p.opts.BlockSectors != 0 && p.opts.BlockSectors != p.hdr.BlockSectors {
		return fmt.Errorf("%w: the pool on %s has data blocks of %d sectors, not %d",
			pool.ErrInvalid, p.meta.path, p.hdr.BlockSectors, p.opts.BlockSectors)
	}
	if p.st, err = openStore(p.meta, regionOf(p.hdr.layout), p.hdr.UUID); err != nil {
		return fmt.Errorf("dmthin: %s: %w", p.meta.path, err)
	}
	if !mp.blank && dp.blank {
		// The metadata device is ours and the data device blank: a format that stopped
		// before writing the data header, if the pool never held anything.
		return p.finishFormat()
	}
	return nil
}

// pair decides what the two devices are: both blank (formatted now), or the two devices of
// one pool, or a metadata device of ours with a blank data device (checked once the records
// are loaded); anything else is refused.
func (p *Pool) pair(ctx context.Context, mp, dp probe) error {
	switch {
	case mp.blank && dp.blank:
		return p.format(ctx)
	case mp.blank:
		return fmt.Errorf("%w: data device %s belongs to pool %s, but metadata device %s has no pool header: "+
			"refusing to format it (the pool's records and thin metadata would be lost); give the pool's own metadata device",
			ErrForeignDevice, p.data.path, dp.hdr.UUID, p.meta.path)
	case dp.blank:
		p.hdr = mp.hdr
		return nil
	case mp.hdr.UUID != dp.hdr.UUID:
		return fmt.Errorf("%w: metadata device %s belongs to pool %s but data device %s to pool %s",
			ErrForeignDevice, p.meta.path, mp.hdr.UUID, p.data.path, dp.hdr.UUID)
	case dp.hdr.DataOff != mp.hdr.DataOff || dp.hdr.BlockSectors != mp.hdr.BlockSectors:
		return fmt.Errorf("%w: the headers of %s and %s disagree on the data layout", ErrForeignDevice, p.meta.path, p.data.path)
	}
	p.hdr = mp.hdr
	return nil
}

// probeDevice reads what a device holds and refuses anything but a blank device or one with
// our header in the given role.
func probeDevice(d *device, role uint32) (probe, error) {
	b, err := d.readHead()
	if err != nil {
		return probe{}, fmt.Errorf("dmthin: %w", err)
	}
	pr := probeContent(b)
	switch {
	case pr.foreign != "":
		return pr, fmt.Errorf("%w: %s holds %s: refusing to use it as the pool's %s (wipe it first if it is really free)",
			ErrForeignDevice, d.path, pr.foreign, roleName(role))
	case !pr.ours && pr.hdrErr != nil:
		return pr, fmt.Errorf("%w: %s has a damaged pool header: %v", ErrForeignDevice, d.path, pr.hdrErr)
	case pr.ours && pr.hdr.Role != role:
		return pr, fmt.Errorf("%w: %s is the %s of pool %s, not a %s", ErrForeignDevice, d.path, roleName(pr.hdr.Role),
			pr.hdr.UUID, roleName(role))
	}
	return pr, nil
}

// format makes a new pool on two blank devices: the thin metadata's superblock zeroed (the
// kernel formats it when the pool is first built), an empty record store, then the metadata
// device's header, then the data device's. Both devices are opened exclusively first, so
// that nothing else may be using them.
func (p *Pool) format(ctx context.Context) error {
	for _, d := range []*device{p.meta, p.data} {
		if d.dev == 0 {
			continue
		}
		x, err := openDevice(d.path, true)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrForeignDevice, err)
		}
		_ = x.Close()
	}
	bs := p.opts.BlockSectors
	if bs == 0 {
		bs = DefaultBlockSectors
	}
	l, err := newLayout(p.meta.size, bs)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", pool.ErrInvalid, p.meta.path, err)
	}
	if int64(l.dataSectors(p.data.size)) < minDataBlocks*int64(bs) {
		return fmt.Errorf("%w: data device %s of %d bytes is too small (it needs %d data blocks of %d bytes after %d)",
			pool.ErrInvalid, p.data.path, p.data.size, minDataBlocks, int64(bs)*sector, l.DataOff)
	}
	uuid, err := newPoolUUID()
	if err != nil {
		return err
	}
	p.hdr = header{Role: roleMetadata, UUID: uuid, Created: time.Now().UnixNano(), Name: p.opts.Name, layout: l}
	if _, err := p.meta.WriteAt(alignedBuf(blockSize), l.ThinOff); err != nil {
		return fmt.Errorf("dmthin: format: %w", err)
	}
	if err := formatStore(p.meta, regionOf(l), uuid); err != nil {
		return fmt.Errorf("dmthin: format: %w", err)
	}
	if err := writeHeader(p.meta, p.hdr); err != nil {
		return err
	}
	d := p.hdr
	d.Role = roleData
	if err := writeHeader(p.data, d); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Formatted a new pool", "pool", p.opts.Name, "uuid", uuid,
		"metadataDevice", p.meta.path, "dataDevice", p.data.path, "blockSectors", bs)
	return nil
}

// finishFormat writes the data device's header when the metadata device has ours and the
// data device is blank, provided the pool has never held anything (a format interrupted
// between the two headers); else the data device is not this pool's.
func (p *Pool) finishFormat() error {
	empty := true
	p.st.view(func(st *state) { empty = len(st.vols) == 0 && len(st.intents) == 0 && st.txid == 0 })
	if !empty {
		return fmt.Errorf("%w: metadata device %s belongs to pool %s, which holds volumes, but data device %s has no pool header",
			ErrForeignDevice, p.meta.path, p.hdr.UUID, p.data.path)
	}
	if int64(p.hdr.dataSectors(p.data.size)) < minDataBlocks*int64(p.hdr.BlockSectors) {
		return fmt.Errorf("%w: data device %s of %d bytes is too small", pool.ErrInvalid, p.data.path, p.data.size)
	}
	d := p.hdr
	d.Role = roleData
	return writeHeader(p.data, d)
}

// writeHeader writes both copies of a header.
func writeHeader(d *device, h header) error {
	b := aligned(h.encode())
	for i := headerCopies - 1; i >= 0; i-- {
		if _, err := d.WriteAt(b, int64(i)*blockSize); err != nil {
			return fmt.Errorf("dmthin: write the header of %s: %w", d.path, err)
		}
	}
	return nil
}

// ThinMetadataRange returns where the dm-thin metadata lives on the metadata device of
// opts (an offset and a length in bytes), for tools that check it (thin_check, thin_ls over
// a loop device with that offset) while the pool is not active.
func ThinMetadataRange(opts Options) (offset, length int64, err error) {
	d, err := openDevice(opts.MetadataDevice, false)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = d.Close() }()
	pr, err := probeDevice(d, roleMetadata)
	if err != nil {
		return 0, 0, err
	}
	if !pr.ours {
		return 0, 0, fmt.Errorf("%w: %s has no pool header", pool.ErrNotFound, d.path)
	}
	return pr.hdr.ThinOff, int64(pr.hdr.thinSectors(d.size)) * sector, nil
}
