package agg

import (
	"encoding/binary"
	"errors"
	"math"
)

// ErrState is returned for a state encoding that does not decode.
var ErrState = errors.New("agg: bad state encoding")

// AppendBinary appends s's encoding: what a pipeline checkpoints. The
// encoding is exact — counts, sums' limbs, min, max and every histogram
// bucket — so a restored state continues as if never stopped.
func (s *State) AppendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s.Counts)))
	for _, c := range s.Counts {
		dst = binary.AppendVarint(dst, c)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Fields)))
	for i := range s.Fields {
		f := &s.Fields[i]
		dst = binary.AppendVarint(dst, f.N)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(f.Min))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(f.Max))
		dst = f.Sum.appendBinary(dst)
		dst = f.Hist.appendBinary(dst)
	}
	// The negative values' histograms follow, after a byte that says
	// whether any field has some: encodings written before they were kept
	// end before it, and read as having none.
	neg := false
	for i := range s.Fields {
		neg = neg || s.Fields[i].negCount() > 0
	}
	if !neg {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	for i := range s.Fields {
		if f := &s.Fields[i]; f.Neg != nil {
			dst = f.Neg.appendBinary(dst)
		} else {
			dst = binary.AppendVarint(dst, 0) // an empty histogram
		}
	}
	return dst
}

// ReadBinary sets s (made by the same Layout) from an encoding and returns
// the rest of b. An encoding from before negative values were kept for
// percentiles must end b: it is read as having none.
func (s *State) ReadBinary(b []byte, pool *PagePool) ([]byte, error) {
	r := reader{b: b}
	if n := r.uvarint(); n != uint64(len(s.Counts)) {
		return nil, ErrState
	}
	for i := range s.Counts {
		s.Counts[i] = r.varint()
	}
	if n := r.uvarint(); n != uint64(len(s.Fields)) {
		return nil, ErrState
	}
	for i := range s.Fields {
		f := &s.Fields[i]
		f.N = r.varint()
		f.Min = math.Float64frombits(r.u64())
		f.Max = math.Float64frombits(r.u64())
		f.Sum.read(&r)
		f.Hist.read(&r, pool)
		if f.Neg != nil {
			f.Neg.Reset(pool)
		}
	}
	if len(r.b) > 0 && !r.err { // absent in encodings of before negative values were kept
		switch r.byte() {
		case 0:
		case 1:
			for i := range s.Fields {
				s.Fields[i].neg().read(&r, pool)
			}
		default:
			r.err = true
		}
	}
	if r.err {
		return nil, ErrState
	}
	return r.b, nil
}

func (s *Sum) appendBinary(dst []byte) []byte {
	s.normalize()
	flags := byte(0)
	if s.nan {
		flags |= 1
	}
	dst = append(dst, flags, byte(s.inf))
	dst = binary.AppendVarint(dst, int64(s.base))
	dst = binary.AppendUvarint(dst, uint64(len(s.limbs)))
	for _, l := range s.limbs {
		dst = binary.AppendVarint(dst, l)
	}
	return dst
}

func (s *Sum) read(r *reader) {
	flags, inf := r.byte(), r.byte()
	s.nan, s.inf = flags&1 != 0, int8(inf)
	base := r.varint()
	n := r.uvarint()
	// Limbs beyond maxSumLimbs hold no sum of float64s (a damaged
	// encoding): reading them, a base of 2^40 made the next addition
	// allocate for 2^40 limbs.
	if s.inf < -1 || s.inf > 2 || base < 0 || base > maxSumLimbs || n > maxSumLimbs-uint64(base) {
		r.err = true
		return
	}
	s.base = int(base)
	s.limbs = make([]int64, n)
	for i := range s.limbs {
		s.limbs[i] = r.varint()
	}
	s.adds = 0
}

func (h *Histogram) appendBinary(dst []byte) []byte {
	dst = binary.AppendVarint(dst, h.total)
	if h.total == 0 {
		return dst
	}
	dst = binary.AppendVarint(dst, h.min)
	dst = binary.AppendVarint(dst, h.max)
	if h.pages == nil {
		dst = append(dst, 0)
		dst = binary.AppendUvarint(dst, uint64(h.n))
		for _, u := range h.inline[:h.n] {
			dst = binary.AppendUvarint(dst, uint64(u))
		}
		return dst
	}
	dst = append(dst, 1)
	// Non-empty buckets as (index delta, count) pairs.
	var n int
	for range h.buckets {
		n++
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	last := 0
	for i, c := range h.buckets {
		dst = binary.AppendUvarint(dst, uint64(i-last))
		dst = binary.AppendUvarint(dst, uint64(c))
		last = i
	}
	return dst
}

func (h *Histogram) read(r *reader, pool *PagePool) {
	h.Reset(pool)
	total := r.varint()
	if total == 0 || r.err {
		return
	}
	// An encoding that does not describe a histogram (bytes from a damaged
	// checkpoint record) is an error here, not a panic when a quantile
	// ranks its values: the values within the trackable range and between
	// min and max, as many inline as the total, and no more counted in
	// buckets than the total (fewer only where a bucket saturated).
	min, max := r.varint(), r.varint()
	if total < 0 || min < 0 || min > max || max > maxUnits {
		r.err = true
		return
	}
	switch r.byte() {
	case 0:
		n := r.uvarint()
		if n > inlineLen || n != uint64(total) {
			r.err = true
			return
		}
		h.n = int(n)
		for i := range h.inline[:h.n] {
			u := r.uvarint()
			if u < uint64(min) || u > uint64(max) {
				h.n = 0
				r.err = true
				return
			}
			h.inline[i] = int64(u)
		}
	case 1:
		h.pages = pool.dir()
		n := r.uvarint()
		i := 0
		var sum uint64
		for k := uint64(0); k < n && !r.err; k++ {
			d := r.uvarint()
			c := r.uvarint()
			if d >= countsLen || i+int(d) >= countsLen || c > maxPerPage {
				r.err = true
				return
			}
			i += int(d)
			if sum += c; sum > uint64(total) {
				r.err = true
				return
			}
			h.add(i, uint32(c), pool)
		}
	default:
		r.err = true
		return
	}
	h.total, h.min, h.max = total, min, max
}

// reader decodes varints, remembering the first error.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.err = true
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.err = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}
