// Package lvmthin is the LVM backend of pool.Pool: thin LVs in an LVM thin pool, driven through
// lvm2 commands and JSON reports (pkg/lvm), with each record kept in the LV's tags.
//
// Every operation is one lvm command, which LVM makes all-or-nothing, except a clone larger
// than its origin: lvcreate --snapshot, then lvextend. That clone carries the tag
// nvmeof.pending until it is grown; Open removes any LV a crash left pending. Group snapshots
// need one write hold over several origins, which LVM cannot give: SnapshotGroup is
// pool.ErrUnsupported.
package lvmthin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/crashpoint"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// CrashPoints are the steps after each lvm command of an operation (see pkg/crashpoint): the
// command is done, the caller has not heard of it.
var CrashPoints = map[string][]string{
	"create":   {"create/after-lvcreate"},
	"snapshot": {"snapshot/after-lvcreate"},
	"clone":    {"clone/after-snapshot", "clone/after-extend"},
	"delete":   {"delete/after-lvremove"},
	"expand":   {"expand/after-lvextend"},
}

// Options name the thin pool.
type Options struct {
	// VolumeGroup and ThinPool name the LVM thin pool, which must exist.
	VolumeGroup, ThinPool string
	// Config is passed to every lvm command as --config (device filter, udev settings).
	Config string
	// Runner runs lvm; nil is command.Exec{}.
	Runner command.Runner
}

// Pool implements pool.Pool over an LVM thin pool.
type Pool struct {
	lvm *lvm.Pool
}

var _ pool.Pool = (*Pool)(nil)

// Open checks the thin pool answers and removes what a crash left half-made (clones still
// tagged pending).
func Open(ctx context.Context, o Options) (*Pool, error) {
	runner := o.Runner
	if runner == nil {
		runner = command.Exec{}
	}
	p := &Pool{lvm: &lvm.Pool{VG: o.VolumeGroup, ThinPool: o.ThinPool, Runner: runner, ExtraConfig: o.Config}}
	if _, err := p.lvm.Usage(ctx); err != nil {
		return nil, fmt.Errorf("thin pool %s/%s: %w", o.VolumeGroup, o.ThinPool, mapErr(err))
	}
	lvs, err := p.lvm.List(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	for _, lv := range lvs {
		if _, pending := lvm.TagValue(lv.Tags, tagPending); pending {
			if err := p.lvm.Remove(ctx, lv.Name); err != nil && !errors.Is(err, lvm.ErrNotFound) {
				return nil, fmt.Errorf("removing %s, left half-made by a crash: %w", lv.Name, mapErr(err))
			}
		}
	}
	return p, nil
}

// Create implements pool.Pool.
func (p *Pool) Create(ctx context.Context, rec pool.Record) (pool.Volume, error) {
	tags, err := encode(rec)
	if err != nil {
		return pool.Volume{}, err
	}
	lv, err := p.lvm.Create(ctx, rec.ID, rec.SizeBytes, tags)
	crashpoint.Hit("create/after-lvcreate")
	return p.created(lv, err)
}

// created turns the answer of a create into the pool's terms: ErrExists comes with the
// existing volume when it is a thin LV of this pool.
func (p *Pool) created(lv lvm.LV, err error) (pool.Volume, error) {
	if errors.Is(err, lvm.ErrExists) && lv.Name != "" {
		v, derr := decode(lv)
		if derr != nil {
			return pool.Volume{}, derr
		}
		return v, fmt.Errorf("%s: %w", lv.Name, pool.ErrExists)
	}
	if err != nil {
		return pool.Volume{}, mapErr(err)
	}
	return decode(lv)
}

// Snapshot implements pool.Pool.
func (p *Pool) Snapshot(ctx context.Context, origin string, rec pool.Record, readOnly bool) (pool.Volume, error) {
	src, err := p.lvm.Get(ctx, origin)
	if err != nil {
		return pool.Volume{}, fmt.Errorf("origin: %w", mapErr(err))
	}
	if rec.SizeBytes < src.SizeBytes {
		return pool.Volume{}, fmt.Errorf("%w: %s would be %d bytes, smaller than its origin %s (%d bytes)",
			pool.ErrInvalid, rec.ID, rec.SizeBytes, origin, src.SizeBytes)
	}
	tags, err := encode(rec)
	if err != nil {
		return pool.Volume{}, err
	}
	grow := rec.SizeBytes > src.SizeBytes
	if grow {
		tags = append(tags, lvm.EncodeTag(tagPending, "grow"))
	}
	lv, err := p.lvm.Snapshot(ctx, origin, rec.ID, readOnly, tags)
	if err != nil || !grow {
		if readOnly {
			crashpoint.Hit("snapshot/after-lvcreate")
		}
		return p.created(lv, err)
	}
	crashpoint.Hit("clone/after-snapshot")
	undo := func(err error) (pool.Volume, error) {
		// The clone goes even when the request has ended, within a bound of its own.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		return pool.Volume{}, errors.Join(mapErr(err), p.lvm.Remove(cctx, rec.ID))
	}
	if _, err := p.lvm.Extend(ctx, rec.ID, rec.SizeBytes); err != nil {
		return undo(err)
	}
	crashpoint.Hit("clone/after-extend")
	if err := p.lvm.DelTags(ctx, rec.ID, lvm.EncodeTag(tagPending, "grow")); err != nil {
		return undo(err)
	}
	return p.Get(ctx, rec.ID)
}

// SnapshotGroup implements pool.Pool: LVM cannot hold writes to several origins at once.
func (p *Pool) SnapshotGroup(context.Context, []pool.SnapshotSpec) ([]pool.Volume, error) {
	return nil, fmt.Errorf("%w: LVM snapshots one origin at a time, so a group would not be crash-consistent; use pool.backend: dmthin", pool.ErrUnsupported)
}

// Delete implements pool.Pool.
func (p *Pool) Delete(ctx context.Context, id string) error {
	err := p.lvm.Remove(ctx, id)
	crashpoint.Hit("delete/after-lvremove")
	return mapErr(err)
}

// Resize implements pool.Pool.
func (p *Pool) Resize(ctx context.Context, id string, sizeBytes int64) (pool.Volume, error) {
	lv, err := p.lvm.Extend(ctx, id, sizeBytes)
	crashpoint.Hit("expand/after-lvextend")
	if err != nil {
		return pool.Volume{}, mapErr(err)
	}
	return decode(lv)
}

// SetHosts implements pool.Pool with one lvchange.
func (p *Pool) SetHosts(ctx context.Context, id string, hosts []pool.Host, transports []string) (pool.Volume, error) {
	lv, err := p.lvm.Get(ctx, id)
	if err != nil {
		return pool.Volume{}, mapErr(err)
	}
	var have, want []string
	for _, t := range lv.Tags {
		if k, _, err := lvm.ParseTag(t); err == nil && (k == tagHost || k == tagTransport) {
			have = append(have, t)
		}
	}
	want = append(hostTags(hosts), transportTags(transports)...)
	add := slices.DeleteFunc(slices.Clone(want), func(t string) bool { return slices.Contains(have, t) })
	del := slices.DeleteFunc(slices.Clone(have), func(t string) bool { return slices.Contains(want, t) })
	if err := p.lvm.ChangeTags(ctx, id, add, del); err != nil {
		return pool.Volume{}, mapErr(err)
	}
	return p.Get(ctx, id)
}

// Activate implements pool.Pool.
func (p *Pool) Activate(ctx context.Context, id string) (pool.Volume, error) {
	lv, err := p.lvm.Get(ctx, id)
	if err != nil {
		return pool.Volume{}, mapErr(err)
	}
	if !lv.Active {
		if err := p.lvm.Activate(ctx, id); err != nil {
			return pool.Volume{}, mapErr(err)
		}
		lv.Active = true
	}
	return decode(lv)
}

// Get implements pool.Pool.
func (p *Pool) Get(ctx context.Context, id string) (pool.Volume, error) {
	lv, err := p.lvm.Get(ctx, id)
	if err != nil {
		return pool.Volume{}, mapErr(err)
	}
	return decode(lv)
}

// List implements pool.Pool: the pool's thin LVs that carry a record.
func (p *Pool) List(ctx context.Context) ([]pool.Volume, error) {
	lvs, err := p.lvm.List(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	var out []pool.Volume
	for _, lv := range lvs {
		if _, ok := lvm.TagValue(lv.Tags, tagName); !ok {
			continue // not ours
		}
		v, err := decode(lv)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Usage implements pool.Pool.
func (p *Pool) Usage(ctx context.Context) (pool.Usage, error) {
	u, err := p.lvm.Usage(ctx)
	if err != nil {
		return pool.Usage{}, mapErr(err)
	}
	return pool.Usage{
		DataBytes: u.DataBytes, DataUsedBytes: u.DataUsedBytes,
		MetadataBytes: u.MetadataBytes, MetadataUsedBytes: u.MetadataUsedBytes,
		Health: u.Health,
	}, nil
}

// Close implements pool.Pool; there is nothing to release.
func (p *Pool) Close() error { return nil }

// mapErr wraps the pool sentinel for an lvm sentinel, keeping the original error.
func mapErr(err error) error {
	for _, m := range []struct{ from, to error }{
		{lvm.ErrNotFound, pool.ErrNotFound},
		{lvm.ErrExists, pool.ErrExists},
		{lvm.ErrNoSpace, pool.ErrNoSpace},
		{lvm.ErrInUse, pool.ErrInUse},
		{lvm.ErrInvalidName, pool.ErrInvalid},
		{lvm.ErrInvalidTag, pool.ErrInvalid},
		{lvm.ErrInvalidSize, pool.ErrInvalid},
	} {
		if errors.Is(err, m.from) {
			return fmt.Errorf("%w: %w", m.to, err)
		}
	}
	return err
}

// undoTimeout bounds removing a half-made clone, which runs even when the request has ended.
const undoTimeout = 60 * time.Second

// Tag keys of the record (values are encoded by lvm.EncodeTag). Pools made before this
// package carry the same keys.
const (
	tagName      = "nvmeof.name"      // the CSI name the ID was derived from
	tagUUID      = "nvmeof.uuid"      // namespace UUID (volumes)
	tagSource    = "nvmeof.source"    // content source ID (clones, snapshots)
	tagCreated   = "nvmeof.created"   // creation time, Unix nanoseconds (snapshots)
	tagLabel     = "nvmeof.label"     // "key\nvalue", one tag per label
	tagHost      = "nvmeof.host"      // "hostNQN\nnodeID\nrw|ro", one tag per published host
	tagTransport = "nvmeof.transport" // "tcp" or "rdma", one tag per transport in use
	tagPending   = "nvmeof.pending"   // set while a clone is being grown
)

// encode turns a record, hosts and transports aside, into tags.
func encode(rec pool.Record) ([]string, error) {
	tags := []string{lvm.EncodeTag(tagName, rec.Name)}
	if rec.UUID != "" {
		tags = append(tags, lvm.EncodeTag(tagUUID, rec.UUID))
	}
	if rec.Source != "" {
		tags = append(tags, lvm.EncodeTag(tagSource, rec.Source))
	}
	if rec.CreatedUnixNano != 0 {
		tags = append(tags, lvm.EncodeTag(tagCreated, strconv.FormatInt(rec.CreatedUnixNano, 10)))
	}
	var labels []string
	for k, v := range rec.Labels {
		labels = append(labels, lvm.EncodeTag(tagLabel, k+"\n"+v))
	}
	slices.Sort(labels)
	tags = append(tags, labels...)
	tags = append(tags, hostTags(rec.Hosts)...)
	tags = append(tags, transportTags(rec.Transports)...)
	for _, t := range tags {
		if err := lvm.ValidateTag(t); err != nil {
			return nil, fmt.Errorf("%w: %w", pool.ErrInvalid, err)
		}
	}
	return tags, nil
}

func hostTags(hosts []pool.Host) []string {
	var out []string
	for _, h := range hosts {
		mode := "rw"
		if h.ReadOnly {
			mode = "ro"
		}
		v := h.NQN + "\n" + h.NodeID + "\n" + mode
		if h.DHCHAPKey != "" {
			v += "\n" + h.DHCHAPKey + "\n" + h.DHCHAPCtrlKey + "\n" + strconv.FormatInt(h.KeysSetUnixNano, 10)
		}
		out = append(out, lvm.EncodeTag(tagHost, v))
	}
	return out
}

func transportTags(ts []string) []string {
	var out []string
	for _, t := range ts {
		out = append(out, lvm.EncodeTag(tagTransport, t))
	}
	return out
}

// decode reads an LV's record.
func decode(lv lvm.LV) (pool.Volume, error) {
	v := pool.Volume{Record: pool.Record{ID: lv.Name, SizeBytes: lv.SizeBytes}}
	if lv.Active {
		v.Path = lv.Path
	}
	v.Name, _ = lvm.TagValue(lv.Tags, tagName)
	v.UUID, _ = lvm.TagValue(lv.Tags, tagUUID)
	v.Source, _ = lvm.TagValue(lv.Tags, tagSource)
	if c, ok := lvm.TagValue(lv.Tags, tagCreated); ok {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return pool.Volume{}, fmt.Errorf("%s: tag %s=%q: %w", lv.Name, tagCreated, c, err)
		}
		v.CreatedUnixNano = n
	}
	for _, kv := range lvm.TagValues(lv.Tags, tagLabel) {
		k, val, _ := strings.Cut(kv, "\n")
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
		v.Labels[k] = val
	}
	for _, h := range lvm.TagValues(lv.Tags, tagHost) {
		// nqn, node ID, mode, then with DH-HMAC-CHAP: host key, controller key, time set.
		parts := strings.SplitN(h, "\n", 6)
		host := pool.Host{NQN: parts[0]}
		if len(parts) > 1 {
			host.NodeID = parts[1]
		}
		host.ReadOnly = len(parts) > 2 && parts[2] == "ro"
		if len(parts) == 6 {
			n, err := strconv.ParseInt(parts[5], 10, 64)
			if err != nil {
				return pool.Volume{}, fmt.Errorf("%s: host %s: bad key time %q", lv.Name, host.NQN, parts[5])
			}
			host.DHCHAPKey, host.DHCHAPCtrlKey, host.KeysSetUnixNano = parts[3], parts[4], n
		}
		v.Hosts = append(v.Hosts, host)
	}
	v.Transports = lvm.TagValues(lv.Tags, tagTransport)
	return v, nil
}

// Used implements pool.UsedReporter from one report of the thin LVs: LVM's data_percent of
// each active one (LVM reports none for inactive LVs).
func (p *Pool) Used(ctx context.Context, ids []string) (map[string]int64, error) {
	lvs, err := p.lvm.List(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]int64{}
	for _, lv := range lvs {
		if want[lv.Name] && lv.Active {
			out[lv.Name] = int64(lv.DataPercent / 100 * float64(lv.SizeBytes))
		}
	}
	return out, nil
}
