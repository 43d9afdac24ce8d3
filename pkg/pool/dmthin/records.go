package dmthin

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// Limits on what a record may hold. They keep every record, and so every journal entry, small
// (the checkpoint must hold them all).
const (
	maxIDLen     = 64
	maxRecordLen = 32 << 10 // encoded
	// maxSizeBytes keeps the size in sectors within what a table line takes.
	maxSizeBytes = 1 << 62
)

// volRec is the on-disk form of one thin device: its pool.Record, its thin device id and
// whether it is activated read-only (snapshots). Its JSON names are part of the on-disk format
// (see the package documentation). A volRec in the state is never changed in place: a change
// replaces it, so that checkpoints and readers can hold one without a lock.
type volRec struct {
	ID         string            `json:"id"`
	Thin       uint32            `json:"thin"`
	SizeBytes  int64             `json:"size"`
	ReadOnly   bool              `json:"ro,omitempty"`
	Name       string            `json:"name,omitempty"`
	UUID       string            `json:"uuid,omitempty"`
	Source     string            `json:"source,omitempty"`
	Created    int64             `json:"created,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Hosts      []diskHost        `json:"hosts,omitempty"`
	Transports []string          `json:"transports,omitempty"`
}

// diskHost is the on-disk form of a pool.Host.
type diskHost struct {
	NQN      string `json:"nqn"`
	NodeID   string `json:"node,omitempty"`
	ReadOnly bool   `json:"ro,omitempty"`
	Key      string `json:"key,omitempty"`
	CtrlKey  string `json:"ckey,omitempty"`
	KeysSet  int64  `json:"kset,omitempty"`
}

// newVolRec is the on-disk form of rec for thin device id.
func newVolRec(rec pool.Record, id uint32, readOnly bool) *volRec {
	v := &volRec{
		ID:         rec.ID,
		Thin:       id,
		SizeBytes:  rec.SizeBytes,
		ReadOnly:   readOnly,
		Name:       rec.Name,
		UUID:       rec.UUID,
		Source:     rec.Source,
		Created:    rec.CreatedUnixNano,
		Labels:     maps.Clone(rec.Labels),
		Transports: slices.Clone(rec.Transports),
	}
	v.Hosts = diskHosts(rec.Hosts)
	return v
}

func diskHosts(hosts []pool.Host) []diskHost {
	var out []diskHost
	for _, h := range hosts {
		out = append(out, diskHost{NQN: h.NQN, NodeID: h.NodeID, ReadOnly: h.ReadOnly, Key: h.DHCHAPKey, CtrlKey: h.DHCHAPCtrlKey, KeysSet: h.KeysSetUnixNano})
	}
	return out
}

// record is the pool.Record v holds (a copy).
func (v *volRec) record() pool.Record {
	r := pool.Record{
		ID:              v.ID,
		SizeBytes:       v.SizeBytes,
		Name:            v.Name,
		UUID:            v.UUID,
		Source:          v.Source,
		CreatedUnixNano: v.Created,
		Labels:          maps.Clone(v.Labels),
		Transports:      slices.Clone(v.Transports),
	}
	for _, h := range v.Hosts {
		r.Hosts = append(r.Hosts, pool.Host{NQN: h.NQN, NodeID: h.NodeID, ReadOnly: h.ReadOnly,
			DHCHAPKey: h.Key, DHCHAPCtrlKey: h.CtrlKey, KeysSetUnixNano: h.KeysSet})
	}
	return r
}

// with returns a copy of v changed by fn.
func (v *volRec) with(fn func(*volRec)) *volRec {
	c := *v
	c.Labels = maps.Clone(v.Labels)
	c.Hosts = slices.Clone(v.Hosts)
	c.Transports = slices.Clone(v.Transports)
	fn(&c)
	return &c
}

// sectors is the thin device's size in sectors.
func (v *volRec) sectors() uint64 { return uint64(v.SizeBytes) / sector }

// validID checks an ID: 1 to 64 bytes of letters, digits and "._+-", starting with a letter
// or digit (it becomes part of a device-mapper name and a file name), and not a name of the
// pool's own devices.
func validID(id string) error {
	if id == "" || len(id) > maxIDLen || !nameChars(id) {
		return fmt.Errorf("%w: ID %q is not 1 to %d letters, digits and ._+- (not first)", pool.ErrInvalid, id, maxIDLen)
	}
	if id == "pool" || id == "pool_tmeta" || id == "pool_tdata" {
		return fmt.Errorf("%w: ID %q is the name of one of the pool's own devices", pool.ErrInvalid, id)
	}
	return nil
}

// nameChars reports whether s is letters, digits and "._+-", starting with a letter or digit.
func nameChars(s string) bool {
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '+' && c != '-')) {
			return false
		}
	}
	return true
}

// validSize checks a device size: positive, whole sectors.
func validSize(size int64) error {
	if size <= 0 || size%sector != 0 || size > maxSizeBytes {
		return fmt.Errorf("%w: size %d is not a positive multiple of %d bytes up to %d", pool.ErrInvalid, size, sector, int64(maxSizeBytes))
	}
	return nil
}

// validRecord checks a record to create.
func validRecord(rec pool.Record) error {
	if err := validID(rec.ID); err != nil {
		return err
	}
	if err := validSize(rec.SizeBytes); err != nil {
		return err
	}
	b, err := json.Marshal(newVolRec(rec, thin.MaxDevID, true))
	if err != nil {
		return fmt.Errorf("%w: record of %s: %w", pool.ErrInvalid, rec.ID, err)
	}
	if len(b) > maxRecordLen {
		return fmt.Errorf("%w: record of %s is %d bytes encoded, more than %d", pool.ErrInvalid, rec.ID, len(b), maxRecordLen)
	}
	return nil
}
