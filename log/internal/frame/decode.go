package frame

import "encoding/binary"

// Decoder walks the records of one batch. Set it up with Init; it does not
// check the CRC (call Verify first). The zero value is unusable. Slices it
// returns point into the batch.
type Decoder struct {
	Header
	b   []byte
	pos int
	n   int32
	err error

	// Fields of the current record, valid after Next returned true.
	Offset      int64
	TimestampMs int64
	Key         []byte // nil for a null key
	Value       []byte // nil for a null value (tombstone)
	headers     []byte
	nHeaders    int
	start       int // where the current record's key begins, for Raw
}

// Init points d at batch b and decodes its header.
func (d *Decoder) Init(b []byte) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	*d = Decoder{Header: h, b: b, pos: HeaderSize}
	return nil
}

// Next decodes the next record; it returns false at the end of the batch
// or on a malformed record (then Err says which).
//
// The varints are read in line when they take one or two bytes (most
// lengths and deltas do: offset deltas pass 127 after a batch's first 128
// records, values of 64 bytes and more have two-byte lengths) and by
// uvarintAt otherwise. With binary.Uvarint and Varint called or inlined
// five times over, a record took ~415 instructions to decode; ~320 with
// one-byte varints in line; ~275 with two-byte ones too (cachegrind,
// 140-byte records).
func (d *Decoder) Next() bool {
	if d.n >= d.Count || d.err != nil {
		return false
	}
	b, i := d.b, d.pos
	od, n := shortUvarint(b, i)
	if i += n; n == 0 {
		od, i = uvarintAt(b, i)
	}
	td, n := shortUvarint(b, i)
	if i += n; n == 0 {
		td, i = uvarintAt(b, i)
	}
	start := i
	key, i := bytesAt(b, i)
	value, i := bytesAt(b, i)
	hc, n := shortUvarint(b, i)
	if i += n; n == 0 {
		hc, i = uvarintAt(b, i)
	}
	hstart := i
	if hc > uint64(len(b)) {
		return d.fail()
	}
	for h := uint64(0); h < hc && i <= len(b); h++ {
		var kl uint64
		if kl, i = uvarintAt(b, i); i <= len(b) && kl > uint64(len(b)-i) {
			return d.fail()
		}
		i += int(kl)
		_, i = bytesAt(b, i)
	}
	if i > len(b) || od > 1<<31-1 {
		return d.fail()
	}
	d.pos, d.start = i, start
	d.Key, d.Value = key, value
	d.headers, d.nHeaders = b[hstart:i], int(hc)
	d.Offset = d.BaseOffset + int64(od)
	d.TimestampMs = d.FirstTimestamp + unzigzag(td)
	d.n++
	return true
}

func (d *Decoder) fail() bool {
	d.err = ErrMalformed
	return false
}

// Err reports a malformed record met by Next, or ErrShort if the batch
// ended before its count of records.
func (d *Decoder) Err() error {
	if d.err == nil && d.n < d.Count && d.pos >= len(d.b) {
		return ErrShort
	}
	return d.err
}

// Raw returns the current record's bytes after its offset and timestamp
// deltas (key, value, headers), for Builder.AddRaw.
func (d *Decoder) Raw() []byte { return d.b[d.start:d.pos] }

// HeaderCount is the number of headers of the current record.
func (d *Decoder) HeaderCount() int { return d.nHeaders }

// Headers returns an iterator over the current record's headers.
func (d *Decoder) Headers() HeaderIter { return HeaderIter{b: d.headers, n: d.nHeaders} }

// uvarintAt reads the unsigned varint at b[i:], returning the position
// after it, or len(b)+1 if it is malformed or i is past the end already.
func uvarintAt(b []byte, i int) (uint64, int) {
	if i >= len(b) {
		return 0, len(b) + 1
	}
	x, n := binary.Uvarint(b[i:])
	if n <= 0 {
		return 0, len(b) + 1
	}
	return x, i + n
}

// shortUvarint reads the varint at b[i:] if it takes one or two bytes and
// at least two are left; n is 0 otherwise.
func shortUvarint(b []byte, i int) (x uint64, n int) {
	if uint(i)+1 >= uint(len(b)) {
		return 0, 0
	}
	x = uint64(b[i]) | uint64(b[i+1])<<8
	switch {
	case x&0x80 == 0:
		return x & 0x7f, 1
	case x&0x8000 == 0:
		return x&0x7f | x>>8<<7, 2
	}
	return 0, 0
}

// bytesAt reads the length-prefixed byte string at b[i:] (nil for length
// -1), returning the position after it, or len(b)+1 if it is malformed.
func bytesAt(b []byte, i int) ([]byte, int) {
	ux, n := shortUvarint(b, i)
	if i += n; n == 0 {
		if ux, i = uvarintAt(b, i); i > len(b) {
			return nil, i
		}
	}
	l := unzigzag(ux)
	switch {
	case l == -1:
		return nil, i
	case l < -1 || l > int64(len(b)-i):
		return nil, len(b) + 1
	}
	return b[i : i+int(l) : i+int(l)], i + int(l)
}

func unzigzag(ux uint64) int64 {
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// HeaderIter walks a record's headers; they were validated by Next.
type HeaderIter struct {
	b          []byte
	n          int
	Key, Value []byte
}

// Next decodes the next header into it.Key and it.Value.
func (it *HeaderIter) Next() bool {
	if it.n == 0 {
		return false
	}
	it.n--
	kl, n := binary.Uvarint(it.b)
	it.Key = it.b[n : n+int(kl) : n+int(kl)]
	it.b = it.b[n+int(kl):]
	vl, n := binary.Varint(it.b)
	it.b = it.b[n:]
	if vl < 0 {
		it.Value = nil
		return true
	}
	it.Value = it.b[:vl:vl]
	it.b = it.b[vl:]
	return true
}
