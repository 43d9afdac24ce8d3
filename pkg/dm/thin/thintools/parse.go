package thintools

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Extent is a run of a thin device's blocks: Length blocks (of the pool's data block size)
// from block Begin of the device.
type Extent struct{ Begin, Length uint64 }

// End is the block after the extent.
func (e Extent) End() uint64 { return e.Begin + e.Length }

// Superblock is what the tools print of the metadata's superblock that matters here.
type Superblock struct {
	// Transaction is the pool's transaction id.
	Transaction uint64
	// DataBlockSectors is the data block size, in 512-byte sectors.
	DataBlockSectors uint64
}

// maxDataBlockSectors bounds data_block_size (dm-thin's limit is 1 GiB, 2097152 sectors).
const maxDataBlockSectors = 2097152

// ErrNoDevice: the metadata has no thin device of the id asked for.
var ErrNoDevice = rpcerr.Sentinel(rpcerr.ErrNotFound, "thintools: no thin device of that id in the metadata")

// Emit is told each extent, in ascending order, adjacent extents coalesced, with the pool's
// data block size (the same in every call). An error it returns stops the parse and is
// returned as is.
type Emit func(blockSectors uint64, e Extent) error

// ParseDump reads thin_dump's XML (format xml, as `thin_dump --dev-id N` prints it) and calls
// emit with the mapped extents of thin device dev. The dump must hold dev alone: another
// device, or dev twice, is an error; no device at all is ErrNoDevice. Mappings must come in
// ascending order of their origin block without overlap (as thin_dump walks the device's
// btree), else the output is refused.
//
//	<superblock uuid="" time="1" transaction="5" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
//	  <device dev_id="2" mapped_blocks="6" transaction="0" creation_time="1" snap_time="1">
//	    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>
//	    <single_mapping origin_block="2" data_block="30" time="1"/>
//	  </device>
//	</superblock>
func ParseDump(r io.Reader, dev uint32, emit Emit) (Superblock, error) {
	p := newParser(r, emit)
	sb, err := p.superblock()
	if err != nil {
		return sb, err
	}
	devices := 0
	err = p.children(func(el xml.StartElement) error {
		if el.Name.Local != "device" {
			return p.unexpected(el, "device")
		}
		id, err := p.uintAttr(el, "dev_id", 32)
		if err != nil {
			return err
		}
		if devices++; devices > 1 || id != uint64(dev) {
			return fmt.Errorf("thintools: thin_dump output has device %d, want device %d alone", id, dev)
		}
		return p.children(func(m xml.StartElement) error {
			e, err := p.mapping(m)
			if err != nil {
				return err
			}
			if err := p.out.add(e); err != nil {
				return err
			}
			return p.skip()
		})
	})
	if err != nil {
		return sb, err
	}
	if err := p.end(); err != nil {
		return sb, err
	}
	if devices == 0 {
		return sb, fmt.Errorf("%w: %d", ErrNoDevice, dev)
	}
	return sb, nil
}

// mapping reads a range_mapping or single_mapping element as an extent of the device.
func (p *parser) mapping(el xml.StartElement) (Extent, error) {
	switch el.Name.Local {
	case "range_mapping":
		begin, err := p.uintAttr(el, "origin_begin", 64)
		if err != nil {
			return Extent{}, err
		}
		length, err := p.uintAttr(el, "length", 64)
		if err != nil {
			return Extent{}, err
		}
		return p.extent(el, begin, length)
	case "single_mapping":
		begin, err := p.uintAttr(el, "origin_block", 64)
		if err != nil {
			return Extent{}, err
		}
		return p.extent(el, begin, 1)
	}
	return Extent{}, p.unexpected(el, "range_mapping or single_mapping")
}

// ParseDelta reads thin_delta's XML (without --verbose) and calls emit with the extents that
// differ between its two devices: "different" (mapped in both, to different data blocks),
// "left_only" and "right_only"; "same" extents are left out. Entries must come in ascending
// order without overlap. Any other element is refused: a format this parser does not know
// could hide changes.
//
//	<superblock uuid="" time="1" transaction="5" data_block_size="128" nr_data_blocks="1000">
//	  <diff left="1" right="2">
//	    <same begin="0" length="2"/>
//	    <different begin="2" length="1"/>
//	    <left_only begin="12" length="1"/>
//	    <right_only begin="15" length="1"/>
//	  </diff>
//	</superblock>
func ParseDelta(r io.Reader, left, right uint32, emit Emit) (Superblock, error) {
	p := newParser(r, emit)
	sb, err := p.superblock()
	if err != nil {
		return sb, err
	}
	diffs := 0
	err = p.children(func(el xml.StartElement) error {
		if el.Name.Local != "diff" {
			return p.unexpected(el, "diff")
		}
		if diffs++; diffs > 1 {
			return errors.New("thintools: thin_delta output has more than one diff")
		}
		l, err := p.uintAttr(el, "left", 32)
		if err != nil {
			return err
		}
		r, err := p.uintAttr(el, "right", 32)
		if err != nil {
			return err
		}
		if l != uint64(left) || r != uint64(right) {
			return fmt.Errorf("thintools: thin_delta output compares %d with %d, want %d with %d", l, r, left, right)
		}
		return p.children(p.deltaEntry)
	})
	if err != nil {
		return sb, err
	}
	if err := p.end(); err != nil {
		return sb, err
	}
	if diffs == 0 {
		return sb, errors.New("thintools: thin_delta output has no diff")
	}
	return sb, nil
}

// deltaEntry reads one entry of a diff.
func (p *parser) deltaEntry(el xml.StartElement) error {
	switch el.Name.Local {
	case "same", "different", "left_only", "right_only":
	default:
		return p.unexpected(el, "same, different, left_only or right_only")
	}
	begin, err := p.uintAttr(el, "begin", 64)
	if err != nil {
		return err
	}
	length, err := p.uintAttr(el, "length", 64)
	if err != nil {
		return err
	}
	e, err := p.extent(el, begin, length)
	if err != nil {
		return err
	}
	if el.Name.Local == "same" {
		err = p.out.pass(e)
	} else {
		err = p.out.add(e)
	}
	if err != nil {
		return err
	}
	return p.skip()
}

// parser reads the tools' XML as a stream of tokens: memory does not grow with the number of
// mappings.
type parser struct {
	d   *xml.Decoder
	sb  Superblock
	out coalescer
}

func newParser(r io.Reader, emit Emit) *parser {
	d := xml.NewDecoder(r)
	d.Strict = true
	p := &parser{d: d}
	p.out.emit = func(e Extent) error { return emit(p.sb.DataBlockSectors, e) }
	return p
}

// next returns the next start or end element, skipping character data, comments and the
// like; EOF before the document's end is io.ErrUnexpectedEOF.
func (p *parser) next() (xml.Token, error) {
	for {
		t, err := p.d.Token()
		if err == io.EOF {
			return nil, fmt.Errorf("thintools: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("thintools: %w", err)
		}
		switch t := t.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, fmt.Errorf("thintools: unexpected text %q", truncate(string(t)))
			}
		}
	}
}

// superblock reads the opening superblock element.
func (p *parser) superblock() (Superblock, error) {
	t, err := p.next()
	if err != nil {
		return Superblock{}, err
	}
	el, ok := t.(xml.StartElement)
	if !ok || el.Name.Local != "superblock" {
		return Superblock{}, fmt.Errorf("thintools: the output does not start with a superblock")
	}
	if p.sb.Transaction, err = p.uintAttr(el, "transaction", 64); err != nil {
		return Superblock{}, err
	}
	if p.sb.DataBlockSectors, err = p.uintAttr(el, "data_block_size", 32); err != nil {
		return Superblock{}, err
	}
	if p.sb.DataBlockSectors == 0 || p.sb.DataBlockSectors > maxDataBlockSectors {
		return Superblock{}, fmt.Errorf("thintools: data_block_size %d is not 1 to %d sectors", p.sb.DataBlockSectors, maxDataBlockSectors)
	}
	return p.sb, nil
}

// children calls fn with each child element of the element just opened, until its end. fn
// must consume the child through its end element (skip, or children).
func (p *parser) children(fn func(xml.StartElement) error) error {
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		}
	}
}

// skip consumes the end of an element that must have no children.
func (p *parser) skip() error {
	t, err := p.next()
	if err != nil {
		return err
	}
	if el, ok := t.(xml.StartElement); ok {
		return fmt.Errorf("thintools: unexpected element <%s> inside an entry", el.Name.Local)
	}
	return nil
}

// end flushes the last extent and checks nothing follows the superblock.
func (p *parser) end() error {
	for {
		t, err := p.d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("thintools: %w", err)
		}
		switch t := t.(type) {
		case xml.StartElement:
			return fmt.Errorf("thintools: element <%s> after the superblock", t.Name.Local)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return fmt.Errorf("thintools: text after the superblock")
			}
		}
	}
	return p.out.flush()
}

func (p *parser) unexpected(el xml.StartElement, want string) error {
	return fmt.Errorf("thintools: unexpected element <%s> (want %s)", el.Name.Local, want)
}

// uintAttr returns the unsigned integer attribute name of el, which must be there.
func (p *parser) uintAttr(el xml.StartElement, name string, bits int) (uint64, error) {
	for _, a := range el.Attr {
		if a.Name.Local == name {
			n, err := strconv.ParseUint(a.Value, 10, bits)
			if err != nil {
				return 0, fmt.Errorf("thintools: <%s %s=%q>: %w", el.Name.Local, name, truncate(a.Value), err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("thintools: <%s> without %s", el.Name.Local, name)
}

// extent checks an extent read from el: not empty, and its end within 64 bits.
func (p *parser) extent(el xml.StartElement, begin, length uint64) (Extent, error) {
	if length == 0 || begin+length < begin {
		return Extent{}, fmt.Errorf("thintools: <%s> of %d blocks from block %d", el.Name.Local, length, begin)
	}
	return Extent{Begin: begin, Length: length}, nil
}

// coalescer checks that extents come in ascending order without overlap, and merges
// adjacent ones before passing them on.
type coalescer struct {
	emit func(Extent) error
	cur  Extent // pending extent (Length 0: none)
	next uint64 // the least block the next extent may start at
}

// add takes an extent to emit.
func (c *coalescer) add(e Extent) error {
	if err := c.order(e); err != nil {
		return err
	}
	if c.cur.Length != 0 && c.cur.End() == e.Begin {
		c.cur.Length += e.Length
		return nil
	}
	if err := c.flush(); err != nil {
		return err
	}
	c.cur = e
	return nil
}

// pass takes an extent that is not emitted but keeps its place in the order.
func (c *coalescer) pass(e Extent) error { return c.order(e) }

func (c *coalescer) order(e Extent) error {
	if e.Begin < c.next {
		return fmt.Errorf("thintools: extent of %d blocks from block %d overlaps or precedes the one before (which ends at %d)", e.Length, e.Begin, c.next)
	}
	c.next = e.End()
	return nil
}

// flush emits the pending extent.
func (c *coalescer) flush() error {
	if c.cur.Length == 0 {
		return nil
	}
	e := c.cur
	c.cur = Extent{}
	return c.emit(e)
}

// truncate keeps error messages about hostile input short.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Bytes returns the extent in bytes, for data blocks of blockSectors, cut at limit bytes (the
// device's size); ok is false when none of it lies below limit.
func (e Extent) Bytes(blockSectors uint64, limit int64) (offset, length int64, ok bool) {
	if blockSectors == 0 || limit <= 0 {
		return 0, 0, false
	}
	block := blockSectors * 512
	lim := uint64(limit)
	if e.Begin >= (lim+block-1)/block {
		return 0, 0, false // starts at or beyond limit (and no multiplication overflows)
	}
	start := e.Begin * block
	end := lim
	if e.Length < (lim-start+block-1)/block {
		end = start + e.Length*block
	}
	return int64(start), int64(end - start), true
}
