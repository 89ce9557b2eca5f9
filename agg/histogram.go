package agg

import (
	"math"
	"math/bits"

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
	pageLen    = 1 << pageBits // counts per page: 1 KiB of uint32
	pagesLen   = countsLen / pageLen
	inlineLen  = 16 // values kept as a list before pages are used
	maxPerPage = math.MaxUint32
)

// Histogram counts values in HdrHistogram's buckets (3 significant digits),
// as hdrhistogram-go does, but stores only the 1 KiB pages of counts that
// are used, and the first few values as a plain list: a window of a few
// values costs a few dozen bytes, a typical latency distribution a few
// pages, where a dense histogram over this range costs 320 KiB. Merges are
// exact. Quantiles use the nearest-rank definition of HdrHistogram (Java's
// getValueAtPercentile): the rank is ceil(q·N), and the value reported is
// the highest value equivalent to the ranked one, within 0.1% of it.
//
// The zero value is an empty histogram. A Histogram cannot be used from
// concurrent goroutines.
type Histogram struct {
	total  int64
	n      int              // values in inline, while pages is nil
	inline [inlineLen]int64 // scaled values, unsorted
	pages  *[pagesLen]*page
	min    int64 // scaled, valid when total > 0
	max    int64
}

type page [pageLen]uint32

// PagePool recycles histogram pages; the zero value is ready. A worker
// owns one, so recording and merging allocate nothing in steady state.
type PagePool struct {
	pages []*page
	dirs  []*[pagesLen]*page
}

func (pp *PagePool) page() *page {
	if pp == nil || len(pp.pages) == 0 {
		return new(page)
	}
	p := pp.pages[len(pp.pages)-1]
	pp.pages = pp.pages[:len(pp.pages)-1]
	return p
}

func (pp *PagePool) dir() *[pagesLen]*page {
	if pp == nil || len(pp.dirs) == 0 {
		return new([pagesLen]*page)
	}
	d := pp.dirs[len(pp.dirs)-1]
	pp.dirs = pp.dirs[:len(pp.dirs)-1]
	return d
}

// scaled converts a value to histogram units, clamping to the trackable
// range; ok is false for values it cannot hold (negative, NaN).
func scaled(v float64) (int64, bool) {
	if !(v >= 0) {
		return 0, false
	}
	u := math.Round(v * HistogramScale)
	if u > maxUnits {
		return maxUnits, true
	}
	return int64(u), true
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
	h.recordUnits(u, 1, pool)
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
	p := h.pages[i>>pageBits]
	if p == nil {
		p = pool.page()
		h.pages[i>>pageBits] = p
	}
	c := &p[i&(pageLen-1)]
	if uint64(*c)+uint64(n) > maxPerPage {
		// More than 4 billion values in one bucket of one window: saturate
		// rather than wrap. Counts stay right in total.
		*c = maxPerPage
		return
	}
	*c += n
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
		// Every count, without a branch on zero ones (which a sparse page
		// mispredicts), saturating at maxPerPage as add does.
		for j, c := range op {
			p[j] = uint32(min(uint64(p[j])+uint64(c), maxPerPage))
		}
	}
}

// Reset empties h, returning its pages to pool.
func (h *Histogram) Reset(pool *PagePool) {
	if h.pages != nil {
		for i, p := range h.pages {
			if p != nil {
				*p = page{}
				if pool != nil {
					pool.pages = append(pool.pages, p)
				}
				h.pages[i] = nil
			}
		}
		if pool != nil {
			pool.dirs = append(pool.dirs, h.pages)
		}
	}
	*h = Histogram{}
}

// Quantile returns the value at quantile q (0 < q <= 1) by nearest rank:
// the highest value equivalent (same HDR bucket) to the ceil(q·N)-th
// smallest value. q <= 0 gives the lowest equivalent value of the minimum.
// ok is false for an empty histogram.
func (h *Histogram) Quantile(q float64) (float64, bool) {
	if h.total == 0 {
		return 0, false
	}
	rank := int64(math.Ceil(q * float64(h.total)))
	rank = max(1, min(rank, h.total))
	var at int64
	if h.pages == nil {
		at = h.inlineRank(rank)
	} else {
		at = h.pagesRank(rank)
	}
	if q <= 0 {
		return float64(lowestEquivalent(countsIndex(h.min))) / HistogramScale, true
	}
	return float64(highestEquivalent(countsIndex(at))) / HistogramScale, true
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
	var seen int64
	for pi, p := range h.pages {
		if p == nil {
			continue
		}
		for j, c := range p {
			seen += int64(c)
			if seen >= rank {
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
	n := 8 * pagesLen
	for _, p := range h.pages {
		if p != nil {
			n += 4 * pageLen
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
	for pi, p := range h.pages {
		if p == nil {
			continue
		}
		for j, c := range p {
			if c != 0 {
				fn(lowestEquivalent(pi<<pageBits|j), int64(c))
			}
		}
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
// units, as ToHDR makes.
func (h *Histogram) FromHDR(src *hdr.Histogram, pool *PagePool) {
	h.Reset(pool)
	for _, b := range src.Distribution() {
		if b.Count > 0 {
			h.recordUnits(b.From, uint32(b.Count), pool)
		}
	}
}
