package frame

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refRecord is one record as refDecode reads it.
type refRecord struct {
	offset, ts int64
	key, value []byte
	headers    []byte
	nHeaders   int
}

// refDecode is the decoder written plainly with encoding/binary, one
// varint call per field: the reference for Decoder.Next's inline varints.
// It returns the records of the batch body b (after the header) and
// whether it met a malformed one.
func refDecode(h Header, b []byte) (recs []refRecord, malformed bool) {
	pos := 0
	bytesAt := func() ([]byte, bool) {
		l, n := binary.Varint(b[pos:])
		if n <= 0 || l < -1 || l > int64(len(b)-pos-n) {
			return nil, false
		}
		pos += n
		if l < 0 {
			return nil, true
		}
		v := b[pos : pos+int(l)]
		pos += int(l)
		return v, true
	}
	for range h.Count {
		od, n := binary.Uvarint(b[pos:])
		if n <= 0 || od > 1<<31-1 {
			return recs, true
		}
		pos += n
		td, n := binary.Varint(b[pos:])
		if n <= 0 {
			return recs, true
		}
		pos += n
		key, ok := bytesAt()
		if !ok {
			return recs, true
		}
		value, ok := bytesAt()
		if !ok {
			return recs, true
		}
		hc, n := binary.Uvarint(b[pos:])
		if n <= 0 || hc > uint64(len(b)) {
			return recs, true
		}
		pos += n
		hstart := pos
		for range hc {
			kl, n := binary.Uvarint(b[pos:])
			if n <= 0 || kl > uint64(len(b)-pos-n) {
				return recs, true
			}
			pos += n + int(kl)
			if _, ok := bytesAt(); !ok {
				return recs, true
			}
		}
		recs = append(recs, refRecord{h.BaseOffset + int64(od), h.FirstTimestamp + td, key, value, b[hstart:pos], int(hc)})
	}
	return recs, false
}

// checkDecode decodes batch with Decoder and with refDecode and fails if
// they read different records or disagree on whether one is malformed.
func checkDecode(t *testing.T, batch []byte) {
	t.Helper()
	var d Decoder
	if d.Init(batch) != nil {
		return
	}
	want, malformed := refDecode(d.Header, batch[HeaderSize:])
	var got []refRecord
	for d.Next() {
		got = append(got, refRecord{d.Offset, d.TimestampMs, d.Key, d.Value, d.headers, d.nHeaders})
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d records, the reference %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.offset != w.offset || g.ts != w.ts || !sameBytes(g.key, w.key) || !sameBytes(g.value, w.value) ||
			!bytes.Equal(g.headers, w.headers) || g.nHeaders != w.nHeaders {
			t.Fatalf("record %d: decoded %+v, the reference %+v", i, g, w)
		}
	}
	if (d.Err() == ErrMalformed) != malformed {
		t.Fatalf("Err() = %v, the reference says malformed = %v", d.Err(), malformed)
	}
}

// sameBytes is bytes.Equal that also tells nil from empty (a null key
// from an empty one).
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// TestDecodeMatchesReference decodes well-formed batches whose varints
// take from one to ten bytes, and every truncation and many single-byte
// corruptions of them, against refDecode.
func TestDecodeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var bld Builder
	for round := range 300 {
		var recs []rec
		for i := range 1 + rng.IntN(6) {
			r := rec{od: int32(i) << uint(rng.IntN(24)), ts: rng.Int64N(1<<uint(1+rng.IntN(62))) - 1<<uint(rng.IntN(40))}
			if rng.IntN(4) > 0 {
				r.key = bytes.Repeat([]byte{'k'}, rng.IntN(200))
			}
			if rng.IntN(8) > 0 {
				r.value = bytes.Repeat([]byte{'v'}, rng.IntN(300))
			}
			for range rng.IntN(3) {
				r.headers = append(r.headers, [2][]byte{bytes.Repeat([]byte{'h'}, rng.IntN(150)), []byte("x")})
			}
			recs = append(recs, r)
		}
		for i := 1; i < len(recs); i++ {
			recs[i].od = max(recs[i].od, recs[i-1].od+1)
		}
		batch := bytes.Clone(build(&bld, int64(round), recs))
		checkDecode(t, batch)
		var d Decoder
		if err := d.Init(batch); err != nil {
			t.Fatal(err)
		}
		n := 0
		for d.Next() {
			n++
		}
		if n != len(recs) || d.Err() != nil {
			t.Fatalf("round %d: decoded %d of %d records: %v", round, n, len(recs), d.Err())
		}
		for cut := HeaderSize; cut < len(batch); cut++ {
			checkDecode(t, batch[:cut])
		}
		for range 200 {
			bad := bytes.Clone(batch)
			bad[HeaderSize+rng.IntN(len(bad)-HeaderSize)] = byte(rng.Uint32())
			checkDecode(t, bad)
		}
	}
}

// TestDecodeOffsetDeltaRange: an offset delta past int32 is malformed,
// however it is encoded.
func TestDecodeOffsetDeltaRange(t *testing.T) {
	var bld Builder
	batch := build(&bld, 0, []rec{{0, 0, nil, nil, nil}})
	for _, od := range []uint64{1<<31 - 1, 1 << 31, 1<<64 - 1} {
		b := binary.AppendUvarint(bytes.Clone(batch[:HeaderSize]), od)
		b = append(b, batch[HeaderSize+1:]...)
		checkDecode(t, b)
		var d Decoder
		if err := d.Init(b); err != nil {
			t.Fatal(err)
		}
		if d.Next() != (od < 1<<31) {
			t.Errorf("offset delta %d: Next() = %v (%v)", od, !(od < 1<<31), d.Err())
		}
	}
}

// FuzzDecodeMatchesReference: on any bytes, Decoder reads what refDecode
// reads.
func FuzzDecodeMatchesReference(f *testing.F) {
	var b Builder
	f.Add(build(&b, 7, []rec{{0, 1, []byte("k"), []byte("v"), [][2][]byte{{[]byte("h"), nil}}}}))
	f.Add(bytes.Clone(build(&b, 0, []rec{{0, 1, nil, nil, nil}, {200, -5000, []byte{}, bytes.Repeat([]byte("x"), 300), nil}})))
	f.Fuzz(func(t *testing.T, in []byte) { checkDecode(t, in) })
}
