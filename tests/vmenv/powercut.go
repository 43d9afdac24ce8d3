package vmenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// AckBlockSize is the size of an AckWriter block.
const AckBlockSize = 4096

const ackMagic = "ACKWRITE"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AckWriter is an application that knows exactly which of its writes the storage acknowledged
// as durable: it writes 4 KiB blocks at random over the first Blocks blocks of a block device
// (O_DIRECT, one at a time), and after every Batch writes calls fsync. When an fsync returns,
// every write of that batch is acknowledged: the storage must never lose it. Each block it
// writes carries its block number, a sequence number and a CRC-32C, so a read tells a block
// this writer wrote from zeros, garbage or another block's data.
//
// A power cut of the storage loses what the storage had not made durable, and the kernel
// retries, after reconnecting, the writes and flushes that had not completed. An fsync that
// returns after the storage came back therefore says nothing about writes issued before the
// cut (the cut may have lost them while a later flush found nothing left to flush), so Mark,
// called once the storage is known to be down, starts a new epoch: a batch acknowledges its
// writes only if it began in the epoch its fsync returns in.
type AckWriter struct {
	f              *os.File
	blocks, batch  int
	stop, finished chan struct{}

	mu        sync.Mutex
	epoch     int
	seq       uint64
	attempted []uint64 // per block, the newest sequence number written (or tried)
	durable   []uint64 // per block, the newest sequence number an fsync acknowledged
	writes    int
	acks      int
	errCount  int
	errs      []error // the first 5
	// The acknowledging fsyncs since the last Mark: how many, the time of the first, and the
	// time of the last one before the Mark.
	epochAcks                    int
	firstEpochAck, lastAckBefore time.Time
	lastAck                      time.Time
}

// AckStatus is an AckWriter's progress.
type AckStatus struct {
	Epoch, Writes, Acks, Errors int
	// DurableBlocks is how many blocks hold acknowledged data.
	DurableBlocks int
	// AcksThisEpoch counts the fsyncs acknowledged since the last Mark; FirstAckThisEpoch
	// and LastAckBefore are the times of the first of them and of the last one before it.
	AcksThisEpoch                    int
	FirstAckThisEpoch, LastAckBefore time.Time
	FirstErrors                      []string
}

// StartAckWriter opens dev and starts writing over its first blocks blocks, with an fsync
// after every batch writes. The caller ends it with Stop.
func StartAckWriter(dev string, blocks, batch int) (*AckWriter, error) {
	f, err := os.OpenFile(dev, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	w := &AckWriter{
		f: f, blocks: blocks, batch: batch,
		stop: make(chan struct{}), finished: make(chan struct{}),
		attempted: make([]uint64, blocks), durable: make([]uint64, blocks),
	}
	buf, err := alignedBlock()
	if err != nil {
		f.Close()
		return nil, err
	}
	go w.run(buf)
	return w, nil
}

// alignedBlock returns a page-aligned block buffer, as O_DIRECT needs.
func alignedBlock() ([]byte, error) {
	return syscall.Mmap(-1, 0, AckBlockSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

func (w *AckWriter) run(buf []byte) {
	defer close(w.finished)
	type write struct {
		block int
		seq   uint64
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		epoch := w.epoch
		w.mu.Unlock()
		var batch []write
		for range w.batch {
			b := rng.IntN(w.blocks)
			w.mu.Lock()
			w.seq++
			s := w.seq
			w.attempted[b] = s
			w.mu.Unlock()
			fillBlock(buf, b, s)
			if _, err := w.f.WriteAt(buf, int64(b)*AckBlockSize); err != nil {
				w.fail(fmt.Errorf("write of block %d: %w", b, err))
				continue
			}
			batch = append(batch, write{b, s})
			w.mu.Lock()
			w.writes++
			w.mu.Unlock()
		}
		blocks := make([][2]uint64, len(batch))
		for i, wr := range batch {
			blocks[i] = [2]uint64{uint64(wr.block), wr.seq}
		}
		w.sync(blocks, epoch)
	}
}

// sync calls fsync and, if it succeeds within the epoch the batch began in, records the
// batch's writes as durable.
func (w *AckWriter) sync(batch [][2]uint64, epoch int) {
	if err := w.f.Sync(); err != nil {
		w.fail(fmt.Errorf("fsync: %w", err))
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if epoch != w.epoch {
		return // begun before a Mark: see AckWriter
	}
	for _, bs := range batch {
		w.durable[bs[0]] = max(w.durable[bs[0]], bs[1])
	}
	w.acks++
	w.epochAcks++
	if w.epochAcks == 1 {
		w.firstEpochAck = now
	}
	w.lastAck = now
}

func (w *AckWriter) fail(err error) {
	w.mu.Lock()
	w.errCount++
	if len(w.errs) < 5 {
		w.errs = append(w.errs, fmt.Errorf("%s: %w", time.Now().Format(time.TimeOnly), err))
	}
	w.mu.Unlock()
	// A device that fails every request must not turn this loop into a spin.
	time.Sleep(10 * time.Millisecond)
}

// Mark starts a new epoch (call it once the storage is down) and returns the status before it.
func (w *AckWriter) Mark() AckStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.statusLocked()
	w.epoch++
	w.epochAcks, w.firstEpochAck, w.lastAckBefore = 0, time.Time{}, w.lastAck
	return st
}

// Status returns the writer's progress.
func (w *AckWriter) Status() AckStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.statusLocked()
}

func (w *AckWriter) statusLocked() AckStatus {
	st := AckStatus{Epoch: w.epoch, Writes: w.writes, Acks: w.acks, Errors: w.errCount}
	for _, d := range w.durable {
		if d > 0 {
			st.DurableBlocks++
		}
	}
	st.AcksThisEpoch, st.FirstAckThisEpoch, st.LastAckBefore = w.epochAcks, w.firstEpochAck, w.lastAckBefore
	for _, err := range w.errs {
		st.FirstErrors = append(st.FirstErrors, err.Error())
	}
	return st
}

// Stop ends the writer after its current batch and that batch's fsync, waiting at most
// timeout; an error says it did not end.
func (w *AckWriter) Stop(timeout time.Duration) error {
	close(w.stop)
	select {
	case <-w.finished:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("the writer did not stop within %s", timeout)
	}
}

// Close closes the writer's device (after Stop, in place of Verify), so that nothing holds it
// open (e.g. before NodeUnpublishVolume unmounts its bind mount).
func (w *AckWriter) Close() error {
	select {
	case <-w.finished:
	default:
		return errors.New("Close before Stop")
	}
	return w.f.Close()
}

// AckReport is what Verify found.
type AckReport struct {
	// Durable counts blocks holding acknowledged data; all of them were checked.
	Durable int
	// Newer counts blocks holding a write newer than their acknowledged one (allowed).
	Newer int
	// Bad lists the blocks that lost acknowledged data or hold data this writer never
	// wrote there (the first 20).
	Bad      []string
	BadCount int
}

// Verify reads every block back (O_DIRECT) after Stop and checks that each holds either its
// acknowledged write or a newer one, and never data that does not belong there; a block never
// acknowledged may also read zeros. It closes the device.
func (w *AckWriter) Verify() (AckReport, error) {
	defer w.f.Close()
	select {
	case <-w.finished:
	default:
		return AckReport{}, errors.New("Verify before Stop")
	}
	// Read 256 blocks at a time (O_DIRECT wants a page-aligned buffer: mmap gives one).
	const chunk = 256
	big, err := syscall.Mmap(-1, 0, chunk*AckBlockSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return AckReport{}, err
	}
	defer syscall.Munmap(big) //nolint:errcheck // an anonymous mapping
	var rep AckReport
	bad := func(b int, format string, args ...any) {
		rep.BadCount++
		if len(rep.Bad) < 20 {
			rep.Bad = append(rep.Bad, fmt.Sprintf("block %d: ", b)+fmt.Sprintf(format, args...))
		}
	}
	for b := range w.blocks {
		if b%chunk == 0 {
			n := min(chunk, w.blocks-b)
			if _, err := w.f.ReadAt(big[:n*AckBlockSize], int64(b)*AckBlockSize); err != nil {
				return rep, fmt.Errorf("reading blocks %d-%d: %w", b, b+n-1, err)
			}
		}
		buf := big[(b%chunk)*AckBlockSize : (b%chunk+1)*AckBlockSize]
		acked, tried := w.durable[b], w.attempted[b]
		if acked > 0 {
			rep.Durable++
		}
		blk, seq, ok := parseBlock(buf)
		switch {
		case !ok && isZero(buf):
			if acked > 0 {
				bad(b, "reads zeros; write %d was acknowledged", acked)
			}
		case !ok:
			bad(b, "holds data this writer never wrote (acknowledged: write %d)", acked)
		case blk != b:
			bad(b, "holds the data of block %d (write %d)", blk, seq)
		case seq < acked:
			bad(b, "holds write %d, older than acknowledged write %d", seq, acked)
		case seq > tried:
			bad(b, "holds write %d, newer than any written there (%d)", seq, tried)
		case seq > acked:
			rep.Newer++
		}
	}
	return rep, nil
}

// fillBlock writes block b's content for sequence number seq into buf.
func fillBlock(buf []byte, b int, seq uint64) {
	copy(buf, ackMagic)
	binary.LittleEndian.PutUint64(buf[8:], uint64(b))
	binary.LittleEndian.PutUint64(buf[16:], seq)
	x := seq*0x9e3779b97f4a7c15 ^ uint64(b)
	for i := 28; i+8 <= len(buf); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(buf[i:], x)
	}
	binary.LittleEndian.PutUint32(buf[24:], blockCRC(buf))
}

func blockCRC(buf []byte) uint32 {
	c := crc32.Update(0, castagnoli, buf[:24])
	return crc32.Update(c, castagnoli, buf[28:])
}

// parseBlock returns the block number and sequence number a block carries, ok=false when it
// is not a block this writer wrote whole.
func parseBlock(buf []byte) (b int, seq uint64, ok bool) {
	if string(buf[:8]) != ackMagic || binary.LittleEndian.Uint32(buf[24:]) != blockCRC(buf) {
		return 0, 0, false
	}
	return int(binary.LittleEndian.Uint64(buf[8:])), binary.LittleEndian.Uint64(buf[16:]), true
}

func isZero(buf []byte) bool {
	for _, c := range buf {
		if c != 0 {
			return false
		}
	}
	return true
}

// CheckThinMetadata runs thin_check on the dm-thin metadata of an inactive dm-thin pool (as a
// crash left it, say) and returns the thin ids thin_ls lists; a dirty check fails the test.
func CheckThinMetadata(t testing.TB, opts dmthin.Options) []uint32 {
	t.Helper()
	off, length, err := dmthin.ThinMetadataRange(opts)
	if err != nil {
		t.Fatal(err)
	}
	loop := Run(t, "losetup", "--find", "--show", "--read-only", "--offset", strconv.FormatInt(off, 10),
		"--sizelimit", strconv.FormatInt(length, 10), opts.MetadataDevice)
	defer func() { _, _ = RunE("losetup", "--detach", loop) }()
	if out, err := RunE("thin_check", loop); err != nil {
		t.Fatalf("thin_check: %v\n%s", err, out)
	}
	out, err := RunE("thin_ls", "--no-headers", "-o", "DEV", loop)
	if err != nil {
		t.Fatalf("thin_ls: %v", err)
	}
	var ids []uint32
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatalf("thin_ls line %q", f)
		}
		ids = append(ids, uint32(n))
	}
	return ids
}
