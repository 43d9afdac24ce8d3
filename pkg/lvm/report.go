package lvm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// LV is a thin logical volume of the pool, as lvs reports it.
type LV struct {
	// Name is the LV name within the volume group; UUID is LVM's own identifier.
	Name string
	UUID string
	// SizeBytes is the virtual size: the requested size rounded up to the extent size.
	SizeBytes int64
	// Tags are the LV's tags, in LVM's order; see EncodeTag.
	Tags []string
	// Origin is the LV this one is a thin snapshot of ("" when none, or when it was removed).
	Origin string
	// Active: the device exists. ReadOnly: the LV's permission is read-only. Open: something
	// holds the device open (a mount, an nvmet namespace, a process).
	Active   bool
	ReadOnly bool
	Open     bool
	// SkipActivation: LVM skips the LV on plain activation (thin snapshots' default); Activate
	// activates it anyway.
	SkipActivation bool
	// Path is the device path, /dev/<vg>/<lv>.
	Path string
	// DataPercent is how much of the virtual size is provisioned in the pool (0 when inactive).
	DataPercent float64
}

// lvFields are the lvs columns every report of this package asks for.
const lvFields = "lv_name,vg_name,lv_uuid,lv_size,lv_tags,origin,pool_lv,segtype,lv_attr," +
	"data_percent,metadata_percent,lv_metadata_size,lv_path"

// lvRow is one row of `lvs --reportformat json --units b --nosuffix -o lvFields`. LVM's json
// format reports every value as a string.
type lvRow struct {
	Name            string `json:"lv_name"`
	VG              string `json:"vg_name"`
	UUID            string `json:"lv_uuid"`
	Size            string `json:"lv_size"`
	Tags            string `json:"lv_tags"`
	Origin          string `json:"origin"`
	Pool            string `json:"pool_lv"`
	Segtype         string `json:"segtype"`
	Attr            string `json:"lv_attr"`
	DataPercent     string `json:"data_percent"`
	MetadataPercent string `json:"metadata_percent"`
	MetadataSize    string `json:"lv_metadata_size"`
	Path            string `json:"lv_path"`
}

// report is the envelope of lvm's json report format.
type report struct {
	Report []struct {
		LV []lvRow `json:"lv"`
		VG []vgRow `json:"vg"`
	} `json:"report"`
}

// vgRow is one row of `vgs --reportformat json -o vg_name`.
type vgRow struct {
	Name string `json:"vg_name"`
}

func parseReport(out []byte) (report, error) {
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return report{}, fmt.Errorf("parsing lvm json report: %w", err)
	}
	return r, nil
}

// parseLVRows returns the LV rows of an lvs json report.
func parseLVRows(out []byte) ([]lvRow, error) {
	r, err := parseReport(out)
	if err != nil {
		return nil, err
	}
	var rows []lvRow
	for _, part := range r.Report {
		rows = append(rows, part.LV...)
	}
	return rows, nil
}

// lv_attr positions (lvs(8)): 0 volume type, 1 permissions, 4 state, 5 device open,
// 8 volume health, 9 skip activation.
const (
	attrPermissions = 1
	attrState       = 4
	attrOpen        = 5
	attrHealth      = 8
	attrSkip        = 9
)

// attrAt returns the lv_attr character at i, or '-' when the attribute string is short.
func attrAt(attr string, i int) byte {
	if i < len(attr) {
		return attr[i]
	}
	return '-'
}

// isThinIn reports whether the row is a thin LV of the given pool.
func (r lvRow) isThinIn(pool string) bool { return r.Segtype == "thin" && r.Pool == pool }

func (r lvRow) toLV() (LV, error) {
	size, err := parseBytes(r.Size)
	if err != nil {
		return LV{}, fmt.Errorf("lv %s: lv_size: %w", r.Name, err)
	}
	pct, err := parsePercent(r.DataPercent)
	if err != nil {
		return LV{}, fmt.Errorf("lv %s: data_percent: %w", r.Name, err)
	}
	lv := LV{
		Name:           r.Name,
		UUID:           r.UUID,
		SizeBytes:      size,
		Origin:         r.Origin,
		Active:         attrAt(r.Attr, attrState) == 'a',
		ReadOnly:       attrAt(r.Attr, attrPermissions) == 'r',
		Open:           attrAt(r.Attr, attrOpen) == 'o',
		SkipActivation: attrAt(r.Attr, attrSkip) == 'k',
		Path:           r.Path,
		DataPercent:    pct,
	}
	if lv.Path == "" {
		lv.Path = "/dev/" + r.VG + "/" + r.Name
	}
	if r.Tags != "" {
		lv.Tags = strings.Split(r.Tags, ",")
	}
	return lv, nil
}

// parseBytes parses a size printed with --units b --nosuffix.
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a byte count: %q", s)
	}
	return n, nil
}

// parsePercent parses a percentage column; LVM leaves it empty when unknown (inactive LV).
func parsePercent(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("not a percentage: %q", s)
	}
	return f, nil
}
