package agg

import (
	"math"
	"math/big"
	"math/bits"
)

// Sum adds float64 values exactly. Each value is added into a fixed-point
// accumulator (32-bit limbs held in int64 words, so carries can wait) that
// covers the exponents seen so far; Value rounds the true sum to the
// nearest float64 once. So a sum does not depend on the order of the
// additions or of merges: partial sums from different workers merge to
// the same result as one sum of all values, and equal the correctly
// rounded sum (Python's math.fsum).
//
// The zero value is zero. Sum allocates only when the range of exponents
// grows; a stream of values of similar magnitude adds with no allocation.
type Sum struct {
	limbs []int64 // limb i holds bits [32(base+i), 32(base+i)+32) of the sum in units of 2^-1074
	base  int
	adds  int32 // additions since the limbs were last normalized
	inf   int8  // +1: +Inf seen, -1: -Inf seen, 2: both (NaN)
	nan   bool
}

// maxSumLimbs bounds the limbs a sum of float64s can reach: a value's
// bits are below 2^1024, 2098 bits in units of 2^-1074, and 2^63 of them
// add 63 more, so 68 limbs hold any sum, and normalize's carry limb one
// more. An encoding that reaches past this is not one of a sum.
const maxSumLimbs = 72

// normalizeEvery bounds the additions between carry propagations: each
// adds less than 2^32 to a limb, so 2^30 of them fit in an int64.
const normalizeEvery = 1 << 30

// Add adds v.
func (s *Sum) Add(v float64) {
	b := math.Float64bits(v)
	exp := int(b>>52) & 0x7ff
	mant := b & (1<<52 - 1)
	neg := b>>63 != 0
	switch {
	case exp == 0x7ff:
		s.addSpecial(mant != 0, neg)
		return
	case exp == 0:
		if mant == 0 {
			return // ±0
		}
		exp = 1
	default:
		mant |= 1 << 52
	}
	// v = mant × 2^(exp-1075); in units of 2^-1074 its lowest bit is exp-1.
	pos := uint(exp - 1)
	limb, shift := int(pos/32), pos%32
	lo := mant << shift        // low 64 bits
	hi := mant >> (64 - shift) // bits above 64 (Go shifts by 64 to 0)
	s.ensure(limb, limb+2)
	i := limb - s.base
	p0, p1, p2 := int64(lo&0xffffffff), int64(lo>>32), int64(hi)
	if neg {
		p0, p1, p2 = -p0, -p1, -p2
	}
	l := s.limbs[i : i+3 : i+3]
	l[0] += p0
	l[1] += p1
	l[2] += p2
	s.adds++
	if s.adds >= normalizeEvery {
		s.normalize()
	}
}

func (s *Sum) addSpecial(nan, neg bool) {
	switch {
	case nan:
		s.nan = true
	case neg && s.inf == 1, !neg && s.inf == -1:
		s.inf = 2
	case neg && s.inf == 0:
		s.inf = -1
	case !neg && s.inf == 0:
		s.inf = 1
	}
}

// ensure makes limbs lo..hi exist, plus one spare limb on top for carries.
// The check is small enough to inline into Add: growing is the call, and
// rare (agg/SumAdd ~9.1 ns with ensure a call per value, ~6.2 ns with it
// in line and the limbs updated through one subslice).
func (s *Sum) ensure(lo, hi int) {
	if lo < s.base || hi+1 >= s.base+len(s.limbs) { // no limbs yet: base and len are 0, limbs are >= 0
		s.grow(lo, hi+1)
	}
}

// grow makes limbs lo..hi exist. Kept out of line, so that ensure inlines.
//
//go:noinline
func (s *Sum) grow(lo, hi int) {
	if s.limbs == nil {
		s.base = lo
		s.limbs = make([]int64, hi-lo+1, hi-lo+4)
		return
	}
	nlo, nhi := min(lo, s.base), max(hi, s.base+len(s.limbs)-1)
	n := make([]int64, nhi-nlo+1, nhi-nlo+4)
	copy(n[s.base-nlo:], s.limbs)
	s.limbs, s.base = n, nlo
}

// normalize propagates carries so that every limb but the top one is in
// [0, 2^32).
func (s *Sum) normalize() {
	var carry int64
	for i := range s.limbs {
		v := s.limbs[i] + carry
		carry = v >> 32 // arithmetic shift: floor division
		s.limbs[i] = v & 0xffffffff
	}
	if carry != 0 {
		s.limbs = append(s.limbs, carry)
	}
	s.adds = 0
}

// Merge adds o's values to s. It normalizes o's representation (not its
// value).
func (s *Sum) Merge(o *Sum) {
	if o.nan {
		s.nan = true
	}
	if o.inf != 0 {
		switch o.inf {
		case 2:
			s.inf = 2
		case 1:
			s.addSpecial(false, false)
		case -1:
			s.addSpecial(false, true)
		}
	}
	if len(o.limbs) == 0 {
		return
	}
	// Both normalized, every limb is below 2^32 and the sum of two below
	// 2^33: far from overflowing, as if two values had been added.
	o.normalize()
	s.ensure(o.base, o.base+len(o.limbs)-1)
	s.normalize()
	off := o.base - s.base
	for i, v := range o.limbs {
		s.limbs[off+i] += v
	}
	s.adds = 2
}

// Value returns the sum, correctly rounded. Call it when results are
// emitted, not per value: it allocates where Mean does.
func (s *Sum) Value() float64 { return s.Mean(1) }

// Mean returns the sum divided by n (> 0), correctly rounded: the exact
// sum's quotient rounded once, so that a mean is exact where the sum
// rounded first would not be, or would not fit in a float64 (two values
// of 1.7e308). It allocates (math/big) only where mean128 does not
// answer: a sum whose significant bits spread over more than four limbs
// (values of far-apart magnitudes), or a mean outside float64's normal
// range.
func (s *Sum) Mean(n int64) float64 {
	switch {
	case s.nan || s.inf == 2:
		return math.NaN()
	case s.inf == 1:
		return math.Inf(1)
	case s.inf == -1:
		return math.Inf(-1)
	case len(s.limbs) == 0:
		return 0
	}
	s.normalize()
	if v, ok := s.mean128(n); ok {
		return v
	}
	return s.meanBig(n)
}

// mean128 is Mean where the sum's significant bits lie in four limbs (97
// bits or fewer always do; so does a window's latencies with a decimal,
// TestSumMean128MatchesBig checks) and the mean is a normal float64: a
// 128-by-64-bit division with a guard bit and a sticky bit rounds it
// once, to nearest even, as meanBig does. ok is false elsewhere. s is
// normalized.
func (s *Sum) mean128(n int64) (v float64, ok bool) {
	l := s.limbs
	lo := 0
	for lo < len(l) && l[lo] == 0 {
		lo++
	}
	if lo == len(l) {
		return 0, true
	}
	// The top limb is signed; the others are in [0, 2^32). Drop top limbs
	// that only extend the sign.
	t := len(l) - 1
	top := l[t]
	for t > lo {
		if top == 0 {
			t--
			top = l[t]
		} else if top == -1 && l[t-1] >= 1<<31 {
			t--
			top = l[t] - 1<<32
		} else {
			break
		}
	}
	if t-lo > 3 || top < -1<<31 || top >= 1<<32 {
		return 0, false
	}
	// The sum is ±m × 2^exp, m in 128 bits (hi, lo64).
	var w [4]uint64
	for i := lo; i < t; i++ {
		w[i-lo] = uint64(l[i])
	}
	w[t-lo] = uint64(top) & 0xffffffff
	neg := top < 0
	if neg {
		for i := t - lo + 1; i < 4; i++ {
			w[i] = 0xffffffff // sign extension
		}
	}
	mlo, mhi := w[1]<<32|w[0], w[3]<<32|w[2]
	if neg {
		var c uint64
		mlo, c = bits.Add64(^mlo, 1, 0)
		mhi, _ = bits.Add64(^mhi, 0, c)
	}
	exp := 32*(s.base+lo) - 1074
	// q = m × 2^shift / n with 56 or 57 bits: 53, a guard bit and more.
	mb := 128 - bits.LeadingZeros64(mhi)
	if mhi == 0 {
		mb = 64 - bits.LeadingZeros64(mlo)
	}
	shift := 56 - (mb - bits.Len64(uint64(n)))
	sticky := false
	switch {
	case shift > 0:
		mhi, mlo = shl128(mhi, mlo, uint(shift))
	case shift < 0:
		var dropped uint64
		mhi, mlo, dropped = shr128(mhi, mlo, uint(-shift))
		sticky = dropped != 0
	}
	q, rem := bits.Div64(mhi, mlo, uint64(n)) // mhi < n: q has at most 57 bits
	sticky = sticky || rem != 0
	r := bits.Len64(q) - 53
	mant, rest, half := q>>r, q&(1<<r-1), uint64(1)<<(r-1)
	if rest > half || rest == half && (sticky || mant&1 == 1) {
		mant++
		if mant == 1<<53 {
			mant >>= 1
			r++
		}
	}
	e := exp - shift + r // the mean is mant × 2^e
	if e < -1074 || e > 971 {
		return 0, false // subnormal or past MaxFloat64: meanBig's rounding
	}
	v = math.Ldexp(float64(mant), e)
	if neg {
		v = -v
	}
	return v, true
}

// shl128 shifts (hi, lo) left by k in (0, 128).
func shl128(hi, lo uint64, k uint) (uint64, uint64) {
	if k >= 64 {
		return lo << (k - 64), 0
	}
	return hi<<k | lo>>(64-k), lo << k
}

// shr128 shifts (hi, lo) right by k > 0, and returns the bits shifted out
// (nonzero if any was set).
func shr128(hi, lo uint64, k uint) (uint64, uint64, uint64) {
	switch {
	case k >= 128:
		return 0, 0, hi | lo
	case k >= 64:
		return 0, hi >> (k - 64), lo | hi<<(128-k)
	}
	return hi >> k, lo>>k | hi<<(64-k), lo << (64 - k)
}

// meanBig is Mean through math/big, for any sum.
func (s *Sum) meanBig(n int64) float64 {
	sum := new(big.Int)
	for i := len(s.limbs) - 1; i >= 0; i-- {
		sum.Lsh(sum, 32)
		sum.Add(sum, big.NewInt(s.limbs[i]))
	}
	exact := new(big.Float).SetInt(sum) // precision 0: as many bits as sum has
	exact.SetMantExp(exact, 32*s.base-1074)
	// Quo rounds to the receiver's 53 bits, to nearest even, once.
	f := new(big.Float).SetPrec(53).Quo(exact, new(big.Float).SetInt64(n))
	v, _ := f.Float64()
	return v
}

// Reset makes s zero, keeping its memory.
func (s *Sum) Reset() {
	clear(s.limbs)
	s.adds, s.inf, s.nan = 0, 0, false
}

// IsZero reports whether nothing but zeros was added.
func (s *Sum) IsZero() bool {
	for _, l := range s.limbs {
		if l != 0 {
			return false
		}
	}
	return s.inf == 0 && !s.nan
}
