package dmthin

import (
	"sync"
	"testing"
)

// FuzzJournalSurvivesCorruption: the record store is read from disk at every start. Whatever
// bytes land in its checkpoints or journal (a bad sector, another program), opening it
// returns an error or a state, never a panic or a hang.
func FuzzJournalSurvivesCorruption(f *testing.F) {
	f.Add(uint32(0), []byte{0xff})
	f.Add(uint32(2*mib), []byte("garbage in the journal's first entry"))
	f.Add(uint32(mib+100), make([]byte, 512))
	f.Add(uint32(2*mib+4096), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f})
	var once sync.Once
	var image []byte
	f.Fuzz(func(t *testing.T, off uint32, data []byte) {
		once.Do(func() {
			d, s := newTestStore(t)
			history(t, s, 40)
			image = d.reboot().b
		})
		d := &memDisk{b: append([]byte(nil), image...)}
		at := int(off) % len(d.b)
		copy(d.b[at:], data)
		s, err := openStore(d, testRegion, testUUID)
		if err != nil {
			return
		}
		s.view(func(st *state) { _ = st.snapshot() })
		s.close()
	})
}
