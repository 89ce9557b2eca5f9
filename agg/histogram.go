package agg

import (
	"math"
	"math/bits"
	"unsafe"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry: HdrHistogram's with lowest discernible value 1 and 3
// significant digits (sub-bucket count 2048), over int64 values. Values
// are recorded scaled by HistogramScale so that 0.001 is 1000 units: kept
// exactly, and every value from 0.001 up has at most HDR's 3-digit
// relative error.
const (
	HistogramScale = 1e6
	sigFigs        = 3

	subBucketCount       = 2048
	subBucketHalfCount   = subBucketCount / 2
	subBucketHalfCountMg = 10 // log2(subBucketHalfCount)
	subBucketMask        = subBucketCount - 1
	// maxUnits is the largest value recorded: HDR needs one spare bit above
	// a value's top bit.
	maxUnits = 1<<62 - 1
	// bucketCount covers maxUnits: bucket k holds [1024<<k, 2048<<k).
	bucketCount = 64 - subBucketHalfCountMg - 1
	countsLen   = (bucketCount + 1) * subBucketHalfCount

	pageBits   = 8
	pageLen    = 1 << pageBits // counts per page: 512 B of uint16
	pagesLen   = countsLen / pageLen
	inlineLen  = 16             // values kept as a list before pages are used
	maxPerPage = math.MaxUint32 // a bucket's count saturates there
)

// Histogram counts values in HdrHistogram's buckets (3 significant digits),
// as hdrhistogram-go does, but stores only the pages of counts that are
// used, and the first few values as a plain list: a window of a few values
// costs a few dozen bytes, a typical latency distribution a few pages,
// where a dense histogram over this range costs 320 KiB. A page holds the
// low 16 bits of 256 counts; the high 16 bits of a page's counts get a
// page of their own only once one of them passes 65,535, so the common
// window pays 2 bytes per bucket, and recording touches half the memory
// (and cache) that 32-bit counts would. Merges are exact. Quantiles use
// the nearest-rank definition of HdrHistogram (Java's
// getValueAtPercentile): the rank is ceil(q·N), and the value reported is
// the highest value equivalent to the ranked one, within 0.1% of it, or
// the maximum recorded if that is lower.
//
// The zero value is an empty histogram. A Histogram cannot be used from
// concurrent goroutines.
type Histogram struct {
	total  int64
	n      int              // values in inline, while pages is nil
	inline [inlineLen]int64 // scaled values, unsorted
	pages  *[pagesLen]*page // low 16 bits of the counts
	high   *[pagesLen]*page // high 16 bits, for pages with a count past 65535; nil before
	min    int64            // scaled, valid when total > 0
	max    int64
}

type page [pageLen]uint16

// newPage allocates a page aligned to 8 bytes, so that merges can add its
// counts four at a time (words).
func newPage() *page { return (*page)(unsafe.Pointer(new([pageLen / 4]uint64))) }

// words is p as 64 words of four counts each.
func (p *page) words() *[pageLen / 4]uint64 { return (*[pageLen / 4]uint64)(unsafe.Pointer(p)) }

// highPage is the high halves of page pi's counts, nil while they all fit
// in 16 bits.
func (h *Histogram) highPage(pi int) *page {
	if h.high == nil {
		return nil
	}
	return h.high[pi]
}

// buckets yields the counts index and the count of every non-empty bucket
// in the pages, in increasing order.
func (h *Histogram) buckets(yield func(i int, c uint32) bool) {
	if h.pages == nil {
		return
	}
	for pi, p := range h.pages {
		if p == nil {
			continue
		}
		hp := h.highPage(pi)
		for j := range p {
			if c := countAt(p, hp, j); c != 0 && !yield(pi<<pageBits|j, c) {
				return
			}
		}
	}
}

// countAt is count j of the page whose low and high halves are lo and hi
// (nil: all zero).
func countAt(lo, hi *page, j int) uint32 {
	c := uint32(lo[j])
	if hi != nil {
		c |= uint32(hi[j]) << 16
	}
	return c
}

// PagePool recycles histogram pages; the zero value is ready. A worker
// owns one, so recording and merging allocate nothing in steady state.
type PagePool struct {
	pages []*page
	dirs  []*[pagesLen]*page
}

func (pp *PagePool) page() *page {
	if pp == nil || len(pp.pages) == 0 {
		return newPage()
	}
	p := pp.pages[len(pp.pages)-1]
	pp.pages = pp.pages[:len(pp.pages)-1]
	return p
}

// putDir zeroes the pages of d and takes them and d back.
func (pp *PagePool) putDir(d *[pagesLen]*page) {
	if d == nil {
		return
	}
	for i, p := range d {
		if p != nil {
			*p = page{}
			if pp != nil {
				pp.pages = append(pp.pages, p)
			}
			d[i] = nil
		}
	}
	if pp != nil {
		pp.dirs = append(pp.dirs, d)
	}
}

func (pp *PagePool) dir() *[pagesLen]*page {
	if pp == nil || len(pp.dirs) == 0 {
		return new([pagesLen]*page)
	}
	d := pp.dirs[len(pp.dirs)-1]
	pp.dirs = pp.dirs[:len(pp.dirs)-1]
	return d
}

// scaled converts a value to histogram units, rounded half away from zero
// (math.Round's rule) and clamped to the trackable range; ok is false for
// values it cannot hold (negative, NaN). It rounds from the truncated
// value and its exact remainder, which inlines; math.Round is a call.
func scaled(v float64) (int64, bool) {
	if !(v >= 0) {
		return 0, false
	}
	x := v * HistogramScale
	if x > maxUnits {
		return maxUnits, true
	}
	u := int64(x)
	if x-float64(u) >= 0.5 { // exact: the fraction of x, which is below 2^63
		u++
	}
	return u, true
}

// countsIndex is hdrhistogram-go's countsIndexFor for unit magnitude 0.
func countsIndex(v int64) int {
	bucket := 64 - bits.LeadingZeros64(uint64(v)|subBucketMask) - (subBucketHalfCountMg + 1)
	sub := int(v >> uint(bucket))
	return ((bucket + 1) << subBucketHalfCountMg) + sub - subBucketHalfCount
}

// highestEquivalent returns the largest value in the bucket of counts index i.
func highestEquivalent(i int) int64 {
	lowest, bucket := bucketOf(i)
	return lowest + int64(1)<<uint(bucket) - 1
}

// Record adds a value; negative values and NaN are ignored (it reports
// false). pool may be nil.
func (h *Histogram) Record(v float64, pool *PagePool) bool {
	u, ok := scaled(v)
	if !ok {
		return false
	}
	if h.pages == nil || h.total == 0 {
		h.recordUnits(u, 1, pool) // the inline list, and the spill out of it
		return true
	}
	// Pages in use (with values, unless a failed decode left them): add's
	// common case in line — the page there, the count below 65,535 — and
	// add itself for a new page or the high halves. agg/HistogramRecord
	// took ~11 ns with scaled and recordUnits as calls, ~6 ns this way.
	h.total++
	// Branches, not min and max: once a window has its extremes they are
	// not taken, and the stores they skip were a dependency from one
	// Record to the next (agg/HistogramRecord ~4.05 -> ~3.54 ns).
	if u < h.min {
		h.min = u
	}
	if u > h.max {
		h.max = u
	}
	i := countsIndex(u)
	if p := h.pages[i>>pageBits]; p != nil && p[i&(pageLen-1)] < math.MaxUint16 {
		p[i&(pageLen-1)]++
		return true
	}
	h.add(i, 1, pool)
	return true
}

func (h *Histogram) recordUnits(u int64, n uint32, pool *PagePool) {
	if h.total == 0 || u < h.min {
		h.min = u
	}
	if h.total == 0 || u > h.max {
		h.max = u
	}
	h.total += int64(n)
	if h.pages == nil && n == 1 && h.n < inlineLen {
		h.inline[h.n] = u
		h.n++
		return
	}
	if h.pages == nil {
		h.spill(pool)
	}
	h.add(countsIndex(u), n, pool)
}

// spill moves the inline values into pages.
func (h *Histogram) spill(pool *PagePool) {
	h.pages = pool.dir()
	for _, u := range h.inline[:h.n] {
		h.add(countsIndex(u), 1, pool)
	}
	h.n = 0
}

func (h *Histogram) add(i int, n uint32, pool *PagePool) {
	pi, j := i>>pageBits, i&(pageLen-1)
	p := h.pages[pi]
	if p == nil {
		p = pool.page()
		h.pages[pi] = p
	}
	if c := uint64(p[j]) + uint64(n); c <= math.MaxUint16 {
		p[j] = uint16(c)
		return
	}
	h.addHigh(pi, j, n, pool)
}

// addHigh adds n to count j of page pi when the sum does not fit in the
// low half: the page gets its high halves. More than 4 billion values in
// one bucket of one window saturate rather than wrap; the total stays
// right.
func (h *Histogram) addHigh(pi, j int, n uint32, pool *PagePool) {
	if h.high == nil {
		h.high = pool.dir()
	}
	hp := h.high[pi]
	if hp == nil {
		hp = pool.page()
		h.high[pi] = hp
	}
	p := h.pages[pi]
	c := min(uint64(countAt(p, hp, j))+uint64(n), maxPerPage)
	p[j], hp[j] = uint16(c), uint16(c>>16)
}

// Count is the number of values recorded.
func (h *Histogram) Count() int64 { return h.total }

// Merge adds o's values to h exactly.
func (h *Histogram) Merge(o *Histogram, pool *PagePool) {
	if o.total == 0 {
		return
	}
	if o.pages == nil {
		for _, u := range o.inline[:o.n] {
			h.recordUnits(u, 1, pool)
		}
		return
	}
	if h.pages == nil {
		h.spill(pool)
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.total == 0 || o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	for pi, op := range o.pages {
		if op == nil {
			continue
		}
		p := h.pages[pi]
		if p == nil {
			p = pool.page()
			h.pages[pi] = p
		}
		// A page with high halves to add goes the slow way.
		if ohp := o.highPage(pi); ohp != nil {
			for j := range op {
				if c := countAt(op, ohp, j); c != 0 {
					h.add(pi<<pageBits|j, c, pool)
				}
			}
			continue
		}
		h.addPage(pi, p, op, pool)
	}
}

// addPage adds the counts of op to those of p, page pi of h: four at a
// time, as one 64-bit addition, where no count of the four in either page
// has its top bit set (then no sum carries into its neighbour); one at a
// time otherwise, a sum past 16 bits going to the high halves. No branch
// on zero counts, which a sparse page mispredicts.
func (h *Histogram) addPage(pi int, p, op *page, pool *PagePool) {
	const tops = 0x8000_8000_8000_8000
	pw, ow := p.words(), op.words()
	for k, b := range ow {
		if a := pw[k]; (a|b)&tops == 0 {
			pw[k] = a + b
			continue
		}
		for j := 4 * k; j < 4*k+4; j++ {
			if s := uint32(p[j]) + uint32(op[j]); s <= math.MaxUint16 {
				p[j] = uint16(s)
			} else {
				h.addHigh(pi, j, uint32(op[j]), pool)
			}
		}
	}
}

// Reset empties h, returning its pages to pool.
func (h *Histogram) Reset(pool *PagePool) {
	pool.putDir(h.pages)
	pool.putDir(h.high)
	*h = Histogram{}
}

// Quantile returns the value at quantile q (0 < q <= 1) by nearest rank:
// the highest value equivalent (same HDR bucket) to the ceil(q·N)-th
// smallest value, but never above the largest value recorded, which the
// histogram knows exactly: the ranked value is at most that, so the
// report only gets closer to it (a window of one value reports that
// value, where HdrHistogram reports its bucket's top). q <= 0 gives the
// minimum. ok is false for an empty histogram.
func (h *Histogram) Quantile(q float64) (float64, bool) {
	if h.total == 0 {
		return 0, false
	}
	if q <= 0 {
		return h.Min(), true
	}
	return min(highestValue(h.atRank(nearestRank(q, h.total))), h.Max()), true
}

// nearestRank is the rank (1 to n) of quantile q among n values: ceil(q·n)
// as HdrHistogram's Java getValueAtPercentile computes it, from q less one
// ulp, so that a product that should be a whole number but rounds just
// above it does not take the next rank (0.07·100 is 7.000000000000001 in
// float64; the 7th value is the 7th percentile of 100). For quantiles
// written with a few decimals this is ceil of the exact decimal product.
func nearestRank(q float64, n int64) int64 {
	return max(1, min(int64(math.Ceil(math.Nextafter(q, math.Inf(-1))*float64(n))), n))
}

// lowestValue and highestValue are the smallest and the largest value
// equivalent to u units (in its HDR bucket), as values.
func lowestValue(u int64) float64 {
	return float64(lowestEquivalent(countsIndex(u))) / HistogramScale
}

func highestValue(u int64) float64 {
	return float64(highestEquivalent(countsIndex(u))) / HistogramScale
}

// atRank returns (in units) a value in the bucket of the rank-th smallest
// value recorded (1-based; clamped to 1..Count). h is not empty.
func (h *Histogram) atRank(rank int64) int64 {
	rank = max(1, min(rank, h.total))
	if h.pages == nil {
		return h.inlineRank(rank)
	}
	return h.pagesRank(rank)
}

// inlineRank returns the rank-th smallest inline value (1-based) without
// sorting in place (the histogram keeps recording).
func (h *Histogram) inlineRank(rank int64) int64 {
	var s [inlineLen]int64
	copy(s[:], h.inline[:h.n])
	vs := s[:h.n]
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && vs[j] < vs[j-1]; j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
		}
	}
	return vs[rank-1]
}

// pagesRank returns a value in the bucket holding the rank-th value.
func (h *Histogram) pagesRank(rank int64) int64 {
	// A plain loop, not buckets: a quantile is computed per window emitted,
	// and the iterator's call per bucket tripled its cost.
	var seen int64
	for pi, p := range h.pages {
		if p == nil {
			continue
		}
		if hp := h.highPage(pi); hp != nil {
			for j := range p {
				if seen += int64(countAt(p, hp, j)); seen >= rank {
					return lowestEquivalent(pi<<pageBits | j)
				}
			}
			continue
		}
		for j, c := range p {
			if seen += int64(c); seen >= rank {
				return lowestEquivalent(pi<<pageBits | j)
			}
		}
	}
	return h.max
}

// lowestEquivalent is the lowest value of counts index i.
func lowestEquivalent(i int) int64 {
	lowest, _ := bucketOf(i)
	return lowest
}

// bucketOf returns the lowest value of counts index i and its bucket:
// the values it stands for are lowest to lowest + 2^bucket - 1.
func bucketOf(i int) (lowest int64, bucket int) {
	bucket = (i >> subBucketHalfCountMg) - 1
	sub := (i & (subBucketHalfCount - 1)) + subBucketHalfCount
	if bucket < 0 {
		sub -= subBucketHalfCount
		bucket = 0
	}
	return int64(sub) << uint(bucket), bucket
}

// Min and Max are the exact extreme values recorded (scaled back).
func (h *Histogram) Min() float64 { return float64(h.min) / HistogramScale }
func (h *Histogram) Max() float64 { return float64(h.max) / HistogramScale }

// Bytes is the memory the histogram holds beyond its own struct.
func (h *Histogram) Bytes() int {
	if h.pages == nil {
		return 0
	}
	n := 0
	for _, d := range []*[pagesLen]*page{h.pages, h.high} {
		if d == nil {
			continue
		}
		n += 8 * pagesLen
		for _, p := range d {
			if p != nil {
				n += 2 * pageLen
			}
		}
	}
	return n
}

// ForEach calls fn with every non-empty bucket: a value in it (scaled
// units) and its count, in increasing order of value.
func (h *Histogram) ForEach(fn func(units int64, count int64)) {
	if h.pages == nil {
		var s [inlineLen]int64
		copy(s[:], h.inline[:h.n])
		vs := s[:h.n]
		for i := 1; i < len(vs); i++ {
			for j := i; j > 0 && vs[j] < vs[j-1]; j-- {
				vs[j], vs[j-1] = vs[j-1], vs[j]
			}
		}
		for _, v := range vs {
			fn(v, 1)
		}
		return
	}
	for i, c := range h.buckets {
		fn(lowestEquivalent(i), int64(c))
	}
}

// ToHDR returns h as an hdrhistogram-go Histogram (lowest 1, highest
// maxUnits, 3 significant figures), in scaled units: the interchange form
// for HDR tools and its standard V2 encoding.
func (h *Histogram) ToHDR() *hdr.Histogram {
	out := hdr.New(1, maxUnits, sigFigs)
	h.ForEach(func(u, c int64) { out.RecordValues(u, c) })
	return out
}

// FromHDR sets h to the values of an hdrhistogram-go Histogram in scaled
// units, as ToHDR makes. HDR keeps buckets, not the extremes: h's maximum
// is its bucket's highest value (hdrhistogram-go's Max), so that
// quantiles read as they did before ToHDR, at or above the exact ones.
func (h *Histogram) FromHDR(src *hdr.Histogram, pool *PagePool) {
	h.Reset(pool)
	for _, b := range src.Distribution() {
		if b.Count > 0 {
			h.recordUnits(b.From, uint32(b.Count), pool)
		}
	}
	if h.total > 0 {
		h.max = highestEquivalent(countsIndex(h.max))
	}
}
