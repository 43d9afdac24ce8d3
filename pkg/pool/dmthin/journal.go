package dmthin

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// Journal entry and checkpoint framing (see the package documentation).
const (
	entryMagic      = "NVMEOFJ1"
	checkpointMagic = "NVMEOFC1"
	frameHeader     = 64

	entryChange = 1 // payload: one change (JSON)
	entryWrap   = 2 // no payload: the next entry is at the start of the ring

	// Byte offsets in an entry's first block.
	entMagic   = 0
	entUUID    = 8
	entSeq     = 24
	entKind    = 32
	entBlocks  = 36
	entLen     = 40
	entCRC     = 44
	entPayload = frameHeader

	// Byte offsets in a checkpoint's first block.
	cpMagic   = 0
	cpUUID    = 8
	cpGen     = 24
	cpSeq     = 32
	cpPos     = 40
	cpLen     = 48
	cpCRC     = 56
	cpPayload = frameHeader
)

// storeRegion is where the record store lives on the metadata device.
type storeRegion struct {
	slot      [2]int64
	slotBytes int64
	jOff      int64
	jBytes    int64
}

func regionOf(l layout) storeRegion {
	return storeRegion{slot: [2]int64{l.Slot0, l.Slot1}, slotBytes: l.SlotBytes, jOff: l.JournalOff, jBytes: l.JournalBytes}
}

// maxEntryBytes is the largest journal entry: a quarter of the ring, so that a checkpoint
// always frees room for one.
func (r storeRegion) maxEntryBytes() int64 { return r.jBytes / 4 }

// ckptInfo says what a checkpoint covers: generation gen, every entry up to seq, and that the
// journal goes on at logical position pos.
type ckptInfo struct{ gen, seq, pos uint64 }

// store is the record store: a journal ring of checksummed entries and two checkpoint slots.
// Each change is one entry, written (durably) before it is applied to the in-memory state;
// checkpoints are written in the background, so the cost of a change does not grow with the
// number of records.
type store struct {
	dev  blockIO
	r    storeRegion
	uuid poolUUID
	// onCheckpoint, if set, is called after each checkpoint (tests).
	onCheckpoint func(ckptInfo, error)

	// wmu orders writers: one entry is written at a time, in sequence order.
	wmu sync.Mutex
	// Guarded by wmu:
	seq     uint64   // last entry written
	head    uint64   // logical position of the next entry
	newest  ckptInfo // the newest checkpoint on disk
	older   ckptInfo // the one before it: the journal is kept from older.pos on
	running chan struct{}
	ckptErr error // the last checkpoint's failure, if it failed
	failed  error // a journal write failed: no more changes

	// smu guards the state; apply takes it for writing, readers for reading.
	smu      sync.RWMutex
	st       *state
	reserved map[uint32]bool // thin ids handed out and not yet in an intent
	foreign  map[uint32]bool // thin ids the pool has though no record does: never handed out
	cursor   uint32          // where the allocator looks next
	wg       sync.WaitGroup  // background checkpoints
}

// formatStore writes an empty record store: checkpoint generation 1 (no records) in slot 1,
// slot 0 and the first journal block zeroed.
func formatStore(dev blockIO, r storeRegion, uuid poolUUID) error {
	zero := alignedBuf(blockSize)
	if _, err := dev.WriteAt(zero, r.slot[0]); err != nil {
		return err
	}
	if _, err := dev.WriteAt(zero, r.jOff); err != nil {
		return err
	}
	s := &store{dev: dev, r: r, uuid: uuid, st: newState()}
	return s.writeCheckpoint(ckptInfo{gen: 1}, s.st.snapshot())
}

// openStore loads the record store: the newest valid checkpoint, then every journal entry
// after it.
func openStore(dev blockIO, r storeRegion, uuid poolUUID) (*store, error) {
	s := &store{dev: dev, r: r, uuid: uuid, reserved: map[uint32]bool{}, foreign: map[uint32]bool{}}
	var cps [2]*checkpointData
	var infos [2]ckptInfo
	var errs [2]error
	for i := range 2 {
		cps[i], infos[i], errs[i] = s.readCheckpoint(i)
	}
	use := -1
	for i := range 2 {
		if cps[i] != nil && (use < 0 || infos[i].gen > infos[use].gen) {
			use = i
		}
	}
	if use < 0 {
		return nil, fmt.Errorf("record store: no valid checkpoint (slot 0: %v; slot 1: %v)", errs[0], errs[1])
	}
	st, err := stateFrom(cps[use])
	if err != nil {
		return nil, fmt.Errorf("record store: checkpoint %d: %w", infos[use].gen, err)
	}
	s.st, s.newest, s.older = st, infos[use], infos[use]
	if other := 1 - use; cps[other] != nil && infos[other].gen < infos[use].gen {
		s.older = infos[other]
	}
	if err := s.replay(); err != nil {
		return nil, err
	}
	s.cursor = s.st.nextThin
	return s, nil
}

// readCheckpoint reads and verifies checkpoint slot i.
func (s *store) readCheckpoint(i int) (*checkpointData, ckptInfo, error) {
	head := alignedBuf(blockSize)
	if _, err := s.dev.ReadAt(head, s.r.slot[i]); err != nil {
		return nil, ckptInfo{}, err
	}
	if string(head[cpMagic:cpMagic+8]) != checkpointMagic {
		return nil, ckptInfo{}, errors.New("no checkpoint")
	}
	if poolUUID(head[cpUUID:cpUUID+16]) != s.uuid {
		return nil, ckptInfo{}, errors.New("checkpoint of another pool")
	}
	le := binary.LittleEndian
	info := ckptInfo{gen: le.Uint64(head[cpGen:]), seq: le.Uint64(head[cpSeq:]), pos: le.Uint64(head[cpPos:])}
	n := int64(le.Uint64(head[cpLen:]))
	if n < 0 || cpPayload+n > s.r.slotBytes {
		return nil, info, fmt.Errorf("checkpoint %d of %d bytes", info.gen, n)
	}
	buf := head
	if total := roundUp(cpPayload + n); total > blockSize {
		buf = alignedBuf(int(total))
		if _, err := s.dev.ReadAt(buf, s.r.slot[i]); err != nil {
			return nil, info, err
		}
	}
	if got, want := le.Uint32(buf[cpCRC:]), frameCRC(buf[:cpPayload+n], cpCRC); got != want {
		return nil, info, fmt.Errorf("checkpoint %d: checksum %08x, want %08x", info.gen, got, want)
	}
	var cp checkpointData
	if err := json.Unmarshal(buf[cpPayload:cpPayload+n], &cp); err != nil {
		return nil, info, fmt.Errorf("checkpoint %d: %w", info.gen, err)
	}
	return &cp, info, nil
}

// writeCheckpoint writes cp as checkpoint info into slot gen%2, in one write.
func (s *store) writeCheckpoint(info ckptInfo, cp *checkpointData) error {
	payload, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if cpPayload+int64(len(payload)) > s.r.slotBytes {
		return fmt.Errorf("%w: the records take %d bytes, more than a checkpoint slot holds (%d)",
			pool.ErrNoSpace, len(payload), s.r.slotBytes-cpPayload)
	}
	buf := alignedBuf(int(roundUp(cpPayload + int64(len(payload)))))
	le := binary.LittleEndian
	copy(buf[cpMagic:], checkpointMagic)
	copy(buf[cpUUID:], s.uuid[:])
	le.PutUint64(buf[cpGen:], info.gen)
	le.PutUint64(buf[cpSeq:], info.seq)
	le.PutUint64(buf[cpPos:], info.pos)
	le.PutUint64(buf[cpLen:], uint64(len(payload)))
	copy(buf[cpPayload:], payload)
	le.PutUint32(buf[cpCRC:], frameCRC(buf[:cpPayload+len(payload)], cpCRC))
	_, err = s.dev.WriteAt(buf, s.r.slot[info.gen%2])
	return err
}

// frameCRC is the CRC-32C of a frame (header and payload) with its checksum field as zero.
func frameCRC(frame []byte, crcOff int) uint32 {
	c := crc32.Update(0, castagnoli, frame[:crcOff])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	return crc32.Update(c, castagnoli, frame[crcOff+4:])
}

func roundUp(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

// phys is the device offset of logical journal position pos.
func (s *store) phys(pos uint64) int64 { return s.r.jOff + int64(pos%uint64(s.r.jBytes)) }

// replay applies the journal entries after the newest checkpoint, in order, up to the first
// block that is not the next entry (never written, an older lap of the ring, torn or
// corrupt): that is where the next entry goes.
func (s *store) replay() error {
	seq, pos := s.newest.seq, s.newest.pos
	for pos-s.newest.pos < uint64(s.r.jBytes) {
		kind, payload, blocks, ok := s.readEntry(pos, seq+1)
		if !ok {
			break
		}
		if kind == entryWrap {
			seq++
			pos = (pos/uint64(s.r.jBytes) + 1) * uint64(s.r.jBytes)
			continue
		}
		var c change
		if err := json.Unmarshal(payload, &c); err != nil {
			return fmt.Errorf("record store: journal entry %d: %w", seq+1, err)
		}
		if err := s.st.check(seq+1, &c); err != nil {
			return fmt.Errorf("record store: journal entry %d at %d: %w", seq+1, s.phys(pos), err)
		}
		s.st.apply(&c)
		seq++
		pos += uint64(blocks) * blockSize
	}
	s.seq, s.head = seq, pos
	return nil
}

// readEntry reads the entry at pos and reports whether it is entry seq of this pool, whole
// and intact.
func (s *store) readEntry(pos, seq uint64) (kind uint32, payload []byte, blocks uint32, ok bool) {
	off := s.phys(pos)
	head := alignedBuf(blockSize)
	if _, err := s.dev.ReadAt(head, off); err != nil {
		return 0, nil, 0, false
	}
	le := binary.LittleEndian
	if string(head[entMagic:entMagic+8]) != entryMagic || poolUUID(head[entUUID:entUUID+16]) != s.uuid ||
		le.Uint64(head[entSeq:]) != seq {
		return 0, nil, 0, false
	}
	kind, blocks, n := le.Uint32(head[entKind:]), le.Uint32(head[entBlocks:]), int64(le.Uint32(head[entLen:]))
	size := int64(blocks) * blockSize
	if blocks == 0 || size > s.r.maxEntryBytes() || off+size > s.r.jOff+s.r.jBytes || entPayload+n > size ||
		(kind != entryChange && kind != entryWrap) {
		return 0, nil, 0, false
	}
	buf := head
	if blocks > 1 {
		buf = alignedBuf(int(size))
		if _, err := s.dev.ReadAt(buf, off); err != nil {
			return 0, nil, 0, false
		}
	}
	if le.Uint32(buf[entCRC:]) != frameCRC(buf[:entPayload+n], entCRC) {
		return 0, nil, 0, false
	}
	return kind, buf[entPayload : entPayload+n], blocks, true
}

// encodeEntry frames one entry.
func (s *store) encodeEntry(seq uint64, kind uint32, payload []byte) []byte {
	size := roundUp(entPayload + int64(len(payload)))
	buf := alignedBuf(int(size))
	le := binary.LittleEndian
	copy(buf[entMagic:], entryMagic)
	copy(buf[entUUID:], s.uuid[:])
	le.PutUint64(buf[entSeq:], seq)
	le.PutUint32(buf[entKind:], kind)
	le.PutUint32(buf[entBlocks:], uint32(size/blockSize))
	le.PutUint32(buf[entLen:], uint32(len(payload)))
	copy(buf[entPayload:], payload)
	le.PutUint32(buf[entCRC:], frameCRC(buf[:entPayload+len(payload)], entCRC))
	return buf
}

// errStoreFailed wraps the write failure after which the store takes no more changes.
var errStoreFailed = errors.New("record store: an earlier write failed; reopen the pool")

// append writes the change mk returns as the next journal entry, then applies it, and
// returns the entry's sequence number (mk gets it: intents carry it). It waits, bounded by
// ctx, only when the journal is full, until a checkpoint frees room.
func (s *store) append(ctx context.Context, mk func(seq uint64) *change) (uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ring := uint64(s.r.jBytes)
	for {
		if s.failed != nil {
			return 0, fmt.Errorf("%w: %w", errStoreFailed, s.failed)
		}
		seq, pad := s.seq+1, uint64(0)
		c, payload, size, err := s.frame(mk, seq)
		if err != nil {
			return 0, err
		}
		if off := s.head % ring; off+size > ring {
			// The entry does not fit before the end of the ring: a wrap entry fills the
			// rest, and the entry goes at the start (one sequence number later).
			pad, seq = ring-off, seq+1
			if c, payload, size, err = s.frame(mk, seq); err != nil {
				return 0, err
			}
		}
		if s.head+pad+size-s.older.pos > ring {
			if err := s.waitCheckpoint(ctx); err != nil {
				return 0, err
			}
			continue
		}
		s.smu.RLock()
		err = s.st.check(seq, c)
		s.smu.RUnlock()
		if err != nil {
			return 0, fmt.Errorf("record store: %w", err)
		}
		if pad > 0 {
			if _, err := s.dev.WriteAt(s.encodeEntry(s.seq+1, entryWrap, nil), s.phys(s.head)); err != nil {
				s.failed = err
				return 0, err
			}
			s.seq++
			s.head += pad
		}
		if _, err := s.dev.WriteAt(s.encodeEntry(seq, entryChange, payload), s.phys(s.head)); err != nil {
			s.failed = err
			return 0, err
		}
		s.seq = seq
		s.head += size
		s.smu.Lock()
		s.st.apply(c)
		s.releaseLocked(c)
		s.smu.Unlock()
		if s.head-s.newest.pos >= ring/4 && s.running == nil {
			s.startCheckpoint()
		}
		return seq, nil
	}
}

// frame builds the change for entry seq and its encoding.
func (s *store) frame(mk func(seq uint64) *change, seq uint64) (*change, []byte, uint64, error) {
	c := mk(seq)
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, nil, 0, err
	}
	size := roundUp(entPayload + int64(len(payload)))
	if size > s.r.maxEntryBytes() {
		return nil, nil, 0, fmt.Errorf("%w: journal entry of %d bytes, more than %d", pool.ErrInvalid, size, s.r.maxEntryBytes())
	}
	return c, payload, uint64(size), nil
}

// waitCheckpoint starts a checkpoint if none runs and waits for it; wmu is held and released
// while waiting.
func (s *store) waitCheckpoint(ctx context.Context) error {
	if s.ckptErr != nil && s.running == nil {
		err := s.ckptErr
		s.ckptErr = nil
		return fmt.Errorf("record store: the journal is full and no checkpoint can be written: %w", err)
	}
	if s.running == nil {
		s.startCheckpoint()
	}
	done := s.running
	s.wmu.Unlock()
	defer s.wmu.Lock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startCheckpoint writes a checkpoint of the state as it is now, in the background; wmu is
// held.
func (s *store) startCheckpoint() {
	s.smu.RLock()
	cp := s.st.snapshot()
	s.smu.RUnlock()
	info := ckptInfo{gen: s.newest.gen + 1, seq: s.seq, pos: s.head}
	done := make(chan struct{})
	s.running = done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.writeCheckpoint(info, cp)
		s.wmu.Lock()
		if err == nil {
			s.older, s.newest = s.newest, info
			s.ckptErr = nil
		} else {
			s.ckptErr = err
		}
		s.running = nil
		hook := s.onCheckpoint
		s.wmu.Unlock()
		close(done)
		if hook != nil {
			hook(info, err)
		}
	}()
}

// checkpointNow writes a checkpoint and waits for it (Close, tests).
func (s *store) checkpointNow(ctx context.Context) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	for s.running != nil { // one already running covers less than now: wait, then write ours
		if err := s.waitCheckpoint(ctx); err != nil {
			return err
		}
	}
	s.startCheckpoint()
	if err := s.waitCheckpoint(ctx); err != nil {
		return err
	}
	return s.ckptErr
}

// close waits for the background checkpoint.
func (s *store) close() { s.wg.Wait() }

// view runs fn with the state, read-only.
func (s *store) view(fn func(st *state)) {
	s.smu.RLock()
	defer s.smu.RUnlock()
	fn(s.st)
}

// capacity is how many bytes of records a checkpoint holds.
func (s *store) capacity() int64 { return s.r.slotBytes - cpPayload - 4096 }

// allocThin reserves n thin ids: free in the records, in pending intents and in other
// reservations. They stay reserved until an intent that creates them is applied, or release.
func (s *store) allocThin(n int, extra int64) ([]uint32, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.st.bytes+extra > s.capacity() {
		return nil, fmt.Errorf("%w: the record store is full (%d of %d bytes)", pool.ErrNoSpace, s.st.bytes, s.capacity())
	}
	if len(s.st.thins)+len(s.st.pendingThins)+len(s.reserved)+len(s.foreign)+n > int(maxThinID) {
		return nil, errNoThinIDs
	}
	ids := make([]uint32, 0, n)
	for id := s.cursor; len(ids) < n; id = nextThinID(id) {
		if !s.st.usedThin(id) && !s.reserved[id] && !s.foreign[id] {
			s.reserved[id] = true
			ids = append(ids, id)
		}
	}
	s.cursor = nextThinID(ids[len(ids)-1])
	return ids, nil
}

// release drops reservations that no intent took.
func (s *store) release(ids []uint32) {
	s.smu.Lock()
	defer s.smu.Unlock()
	for _, id := range ids {
		delete(s.reserved, id)
	}
}

// quarantine keeps a thin id from ever being handed out again (by this process).
func (s *store) quarantine(id uint32) {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.foreign[id] = true
}

// releaseLocked drops the reservations an applied intent took over; smu is held.
func (s *store) releaseLocked(c *change) {
	if c.Intent != nil {
		for _, v := range c.Intent.New {
			delete(s.reserved, v.Thin)
		}
	}
}
