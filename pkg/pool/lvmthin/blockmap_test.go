package lvmthin

import (
	"errors"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// An lvs report in the form lvm2 2.03 writes it (every value a string).
const thinIDReport = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"snap-1", "thin_id":"4", "lv_size":"1073741824", "pool_lv":"pool", "segtype":"thin"},
                  {"lv_name":"snap-2", "thin_id":"7", "lv_size":"2147483648", "pool_lv":"pool", "segtype":"thin"},
                  {"lv_name":"other", "thin_id":"2", "lv_size":"4194304", "pool_lv":"pool2", "segtype":"thin"}
              ]
          }
      ]
  }
`

func TestParseThinIDsReadsTheIDsAndSizesOfThePoolsLVs(t *testing.T) {
	got, err := parseThinIDs([]byte(thinIDReport), "pool", []string{"snap-1", "snap-2"})
	if err != nil {
		t.Fatal(err)
	}
	if got["snap-1"] != (thinLV{4, 1 << 30}) || got["snap-2"] != (thinLV{7, 2 << 30}) {
		t.Fatalf("got %+v", got)
	}
	// An LV of another pool is not this pool's, whatever its name.
	if _, err := parseThinIDs([]byte(thinIDReport), "pool", []string{"other"}); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{
		`{"report":[{"lv":[{"lv_name":"snap-1","thin_id":"","lv_size":"1","pool_lv":"pool","segtype":"thin"}]}]}`,
		`{"report":[{"lv":[{"lv_name":"snap-1","thin_id":"16777216","lv_size":"1","pool_lv":"pool","segtype":"thin"}]}]}`,
		`{"report":[{"lv":[{"lv_name":"snap-1","thin_id":"3","lv_size":"-1","pool_lv":"pool","segtype":"thin"}]}]}`,
		`not json`,
	} {
		if _, err := parseThinIDs([]byte(bad), "pool", []string{"snap-1"}); err == nil || errors.Is(err, pool.ErrNotFound) {
			t.Errorf("parseThinIDs(%s) = %v, want a parse error", bad, err)
		}
	}
}

func TestDMNamesDoubleTheDashes(t *testing.T) {
	if got := dmName("vg-a", "pool-1"); got != "vg--a-pool--1" {
		t.Fatalf("dmName = %q", got)
	}
}
