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
func (d *Decoder) Next() bool {
	if d.n >= d.Count || d.err != nil {
		return false
	}
	b := d.b
	od, n := binary.Uvarint(b[d.pos:])
	if n <= 0 || od > 1<<31-1 {
		return d.fail()
	}
	d.pos += n
	td, n := binary.Varint(b[d.pos:])
	if n <= 0 {
		return d.fail()
	}
	d.pos += n
	d.start = d.pos
	var ok bool
	if d.Key, ok = d.bytes(); !ok {
		return d.fail()
	}
	if d.Value, ok = d.bytes(); !ok {
		return d.fail()
	}
	hc, n := binary.Uvarint(b[d.pos:])
	if n <= 0 || hc > uint64(len(b)) {
		return d.fail()
	}
	d.pos += n
	hstart := d.pos
	for i := uint64(0); i < hc; i++ {
		kl, n := binary.Uvarint(b[d.pos:])
		if n <= 0 || kl > uint64(len(b)-d.pos-n) {
			return d.fail()
		}
		d.pos += n + int(kl)
		if _, ok := d.bytes(); !ok {
			return d.fail()
		}
	}
	d.headers, d.nHeaders = b[hstart:d.pos], int(hc)
	d.Offset = d.BaseOffset + int64(od)
	d.TimestampMs = d.FirstTimestamp + td
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

func (d *Decoder) bytes() ([]byte, bool) {
	l, n := binary.Varint(d.b[d.pos:])
	if n <= 0 || l < -1 || l > int64(len(d.b)-d.pos-n) {
		return nil, false
	}
	d.pos += n
	if l < 0 {
		return nil, true
	}
	v := d.b[d.pos : d.pos+int(l) : d.pos+int(l)]
	d.pos += int(l)
	return v, true
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
