package vmenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAckWriterFindsLostAndForeignBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev")
	const blocks = 64
	if err := os.WriteFile(path, make([]byte, blocks*AckBlockSize), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := StartAckWriter(path, blocks, 4)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.Status().DurableBlocks < blocks/2 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %+v", w.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := w.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	st := w.Status()
	if st.Errors != 0 || st.Acks == 0 || st.Writes < st.Acks*4 {
		t.Fatalf("status %+v", st)
	}

	// Lose one acknowledged block (zeros) and put another's data in a second one.
	var lost, foreign, source = -1, -1, -1
	for b := range blocks {
		if w.durable[b] == 0 {
			continue
		}
		switch {
		case lost < 0:
			lost = b
		case source < 0:
			source = b
		case foreign < 0:
			foreign = b
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, AckBlockSize)
	if _, err := f.ReadAt(buf, int64(source)*AckBlockSize); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(buf, int64(foreign)*AckBlockSize); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, AckBlockSize), int64(lost)*AckBlockSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	rep, err := w.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if rep.BadCount != 2 || rep.Durable != st.DurableBlocks {
		t.Fatalf("report %+v, want the 2 damaged blocks of %d", rep, st.DurableBlocks)
	}
	joined := strings.Join(rep.Bad, "\n")
	for _, want := range []string{"reads zeros", "holds the data of block"} {
		if !strings.Contains(joined, want) {
			t.Errorf("report lacks %q:\n%s", want, joined)
		}
	}
}

func TestAckWriterIgnoresBatchesAcrossAMark(t *testing.T) {
	w := &AckWriter{durable: make([]uint64, 4), attempted: make([]uint64, 4)}
	w.epoch = 1
	f, err := os.Create(filepath.Join(t.TempDir(), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w.f = f
	w.sync([][2]uint64{{1, 7}}, 0) // begun in epoch 0, acknowledged in epoch 1
	if w.durable[1] != 0 || w.acks != 0 {
		t.Errorf("a batch begun before the mark counted as acknowledged: %v", w.durable)
	}
	w.sync([][2]uint64{{2, 9}}, 1)
	if w.durable[2] != 9 || w.Status().AcksThisEpoch != 1 {
		t.Errorf("a batch of the current epoch was not acknowledged: %v", w.durable)
	}
}
