package agg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// The bucket arithmetic is hdrhistogram-go's, value for value.
func TestHistogramBucketsMatchHDR(t *testing.T) {
	ref := hdr.New(1, maxUnits, sigFigs)
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(u int64) {
		ref.Reset()
		ref.RecordValue(u)
		i := countsIndex(u)
		if got, want := highestEquivalent(i), ref.ValueAtQuantile(100); got != want {
			t.Fatalf("value %d: highest equivalent %d, hdrhistogram-go %d", u, got, want)
		}
		if got, want := lowestEquivalent(i), ref.ValueAtQuantile(0); got != want {
			t.Fatalf("value %d: lowest equivalent %d, hdrhistogram-go %d", u, got, want)
		}
	}
	for u := int64(0); u < 5000; u++ {
		check(u)
	}
	for k := 0; k < 61; k++ {
		check(int64(1) << k)
		check(int64(1)<<k - 1)
		check(int64(1)<<k + 1)
	}
	for n := 0; n < 20000; n++ {
		check(rng.Int64N(maxUnits))
	}
	check(maxUnits)
}

func sortedAtQuantile(sorted []float64, q float64) float64 {
	r := int(math.Ceil(q * float64(len(sorted))))
	r = max(1, min(r, len(sorted)))
	return sorted[r-1]
}

// Percentiles are within 0.1% of the exact nearest-rank value for any
// value from 0.001 to 1e9.
func TestHistogramQuantileError(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var pool PagePool
	qs := []float64{0.001, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}
	for round := 0; round < 300; round++ {
		n := 1 + rng.IntN(3000)
		if round%5 == 0 {
			n = 1 + rng.IntN(inlineLen) // the inline representation
		}
		lo := math.Pow(10, float64(rng.IntN(12)-3)) // 0.001 .. 1e8
		vs := make([]float64, n)
		var h Histogram
		for i := range vs {
			v := lo * math.Exp(rng.NormFloat64()*2)
			v = min(max(v, 0.001), 1e9)
			vs[i] = v
			h.Record(v, &pool)
		}
		sort.Float64s(vs)
		for _, q := range qs {
			got, ok := h.Quantile(q)
			want := sortedAtQuantile(vs, q)
			if !ok || math.Abs(got-want)/want > 0.001 {
				t.Fatalf("round %d n=%d q=%v: got %v, exact %v (error %.4f%%)", round, n, q, got, want, 100*math.Abs(got-want)/want)
			}
		}
		h.Reset(&pool)
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if _, ok := h.Quantile(0.5); ok {
		t.Fatal("empty histogram has a quantile")
	}
	if h.Record(-1, nil) || h.Record(math.NaN(), nil) {
		t.Fatal("negative or NaN recorded")
	}
	h.Record(0, nil)
	if v, _ := h.Quantile(0.5); v != 0 {
		t.Fatalf("quantile of {0} = %v", v)
	}
	h.Record(5e12, nil) // beyond the range: clamped, still counted
	if h.Count() != 2 {
		t.Fatalf("count %d", h.Count())
	}
	// Exactly representable small values come back exactly.
	var g Histogram
	for _, v := range []float64{0.001, 0.002, 1.5, 2} {
		g.Record(v, nil)
	}
	if v, _ := g.Quantile(0.25); v != 0.001 {
		t.Fatalf("p25 = %v, want 0.001", v)
	}
	if v, _ := g.Quantile(0.5); v != 0.002 {
		t.Fatalf("p50 = %v, want 0.002", v)
	}
}

// Merging partial histograms equals recording everything in one.
func TestHistogramMergeExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var pool PagePool
	var all Histogram
	parts := make([]Histogram, 4)
	for i := 0; i < 20000; i++ {
		v := math.Exp(rng.NormFloat64()*1.5) * 100
		all.Record(v, &pool)
		parts[i%4].Record(v, &pool)
	}
	var merged Histogram
	merged.Record(42, &pool) // merge into a non-empty inline histogram too
	all.Record(42, &pool)
	for i := range parts {
		merged.Merge(&parts[i], &pool)
	}
	var small Histogram
	small.Record(7, &pool)
	merged.Merge(&small, &pool)
	all.Record(7, &pool)
	if merged.Count() != all.Count() {
		t.Fatalf("count %d, want %d", merged.Count(), all.Count())
	}
	for q := 0.0; q <= 1; q += 0.001 {
		a, _ := merged.Quantile(q)
		b, _ := all.Quantile(q)
		if a != b {
			t.Fatalf("q=%v: merged %v, single %v", q, a, b)
		}
	}
	// And it round-trips through hdrhistogram-go, but for the maximum,
	// which HDR keeps as its bucket's highest value.
	var back Histogram
	back.FromHDR(all.ToHDR(), &pool)
	for _, q := range []float64{0.5, 0.99} {
		a, _ := back.Quantile(q)
		b, _ := all.Quantile(q)
		if a != b {
			t.Fatalf("HDR round trip q=%v: %v != %v", q, a, b)
		}
	}
	a, _ := back.Quantile(1)
	if b := all.Max(); a < b || a > b*1.001 {
		t.Fatalf("HDR round trip q=1: %v, the maximum %v", a, b)
	}
}

// Merging adds every bucket's count exactly, whether four neighbouring
// counts add as one word (no top bit set in either page) or one at a time
// (counts from 2^15 up, sums past 16 bits, high halves on either side).
func TestHistogramMergeCounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	counts := []uint32{0, 0, 0, 1, 2, 100, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x10000, 0x12345, 1 << 31}
	for round := range 50 {
		var pool PagePool
		var h, o Histogram
		want := map[int]uint64{}
		base := 1 << 20 << (round % 8) // units; three pages' worth of buckets from there
		u0 := lowestEquivalent(countsIndex(int64(base)))
		i0 := countsIndex(u0)
		for k := range 3 * pageLen {
			i := i0 + k
			a, b := counts[rng.IntN(len(counts))], counts[rng.IntN(len(counts))]
			switch round % 3 {
			case 0: // below 2^15: the word path throughout
				a, b = a%0x8000, b%0x8000
			case 1: // 16 bits: no high halves before the merge, some after
				a, b = a&0xffff, b&0xffff
			}
			if a > 0 {
				h.recordUnits(lowestEquivalent(i), a, &pool)
			}
			if b > 0 {
				o.recordUnits(lowestEquivalent(i), b, &pool)
			}
			want[i] = min(uint64(a)+uint64(b), maxPerPage)
		}
		h.Merge(&o, &pool)
		for i, w := range want {
			if c := countOf(&h, i); uint64(c) != w {
				t.Fatalf("round %d: bucket %d has %d, want %d", round, i, c, w)
			}
		}
	}
}

// A bucket holds at most 2^32-1 values of one window: recording or
// merging past that saturates the bucket instead of wrapping it, and the
// total stays exact.
func TestHistogramBucketSaturates(t *testing.T) {
	var pool PagePool
	u, _ := scaled(5)
	var h, o Histogram
	h.recordUnits(u, maxPerPage-1, &pool)
	o.recordUnits(u, 3, &pool)
	o.recordUnits(u*2, 1, &pool) // a neighbour in another bucket is untouched
	h.Merge(&o, &pool)
	i := countsIndex(u)
	if c := countOf(&h, i); c != maxPerPage {
		t.Fatalf("merged bucket %d, want %d", c, uint32(maxPerPage))
	}
	h.recordUnits(u, 1, &pool)
	if c := countOf(&h, i); c != maxPerPage {
		t.Fatalf("recorded bucket %d, want %d", c, uint32(maxPerPage))
	}
	j := countsIndex(u * 2)
	if c := countOf(&h, j); c != 1 {
		t.Fatalf("neighbour bucket %d, want 1", c)
	}
	if want := int64(maxPerPage) - 1 + 4 + 1; h.Count() != want {
		t.Fatalf("total %d, want %d", h.Count(), want)
	}
}

// Counts past 65,535 move into a page's high halves: recorded one by one,
// merged from low halves that carry, merged from another histogram's high
// halves, through the binary encoding and HdrHistogram, and after a Reset
// the pooled pages are clean. hdrhistogram-go is the reference.
func TestHistogramCountsPast16Bits(t *testing.T) {
	var pool PagePool
	ref := hdr.New(1, maxUnits, sigFigs)
	rng := rand.New(rand.NewPCG(11, 12))
	values := []float64{1.5, 2, 250, 251, 9000}
	parts := make([]Histogram, 3)
	var all Histogram
	for i := 0; i < 500_000; i++ { // ~100,000 of each of the five values
		v := values[rng.IntN(len(values))]
		if i%1000 == 0 {
			v = rng.Float64() * 1000 // and a spread of others
		}
		u, _ := scaled(v)
		ref.RecordValue(u)
		all.Record(v, &pool)
		parts[i%3].Record(v, &pool)
	}
	// Bucket by bucket, both ways of building it equal the reference.
	var merged Histogram
	merged.Record(2, &pool)
	ref.RecordValue(2 * HistogramScale)
	all.Record(2, &pool)
	for i := range parts {
		merged.Merge(&parts[i], &pool) // parts 1 and 2 carry into 0's high halves
	}
	var twice Histogram
	twice.Merge(&merged, &pool) // from high halves into an empty histogram
	twice.Merge(&merged, &pool) // and into high halves
	check := func(name string, h *Histogram, times int64) {
		t.Helper()
		want := map[int64]int64{}
		for _, b := range ref.Distribution() {
			if b.Count > 0 {
				want[b.From] = b.Count * times
			}
		}
		got := map[int64]int64{}
		h.ForEach(func(u, c int64) { got[u] = c })
		if len(got) != len(want) {
			t.Fatalf("%s: %d buckets, want %d", name, len(got), len(want))
		}
		for u, c := range want {
			if got[u] != c {
				t.Fatalf("%s: bucket %d holds %d, want %d", name, u, got[u], c)
			}
		}
		if h.Count() != ref.TotalCount()*times || h.high == nil {
			t.Fatalf("%s: total %d, high halves %v", name, h.Count(), h.high != nil)
		}
		for _, q := range []float64{0.1, 0.5, 0.9, 0.999} {
			got, _ := h.Quantile(q)
			if want := float64(ref.ValueAtQuantile(q * 100)); math.Abs(got*HistogramScale-want) > want*0.001 {
				t.Fatalf("%s: q%v = %v, reference %v", name, q, got*HistogramScale, want)
			}
		}
	}
	check("recorded", &all, 1)
	check("merged", &merged, 1)
	check("merged twice", &twice, 2)
	var back Histogram
	r := reader{b: twice.appendBinary(nil)}
	if back.read(&r, &pool); r.err || len(r.b) != 0 {
		t.Fatalf("decoding: error %v, %d bytes left", r.err, len(r.b))
	}
	check("decoded", &back, 2)
	var fromHDR Histogram
	fromHDR.FromHDR(all.ToHDR(), &pool)
	check("from HDR", &fromHDR, 1)
	// Pooled pages come back zeroed, high halves included.
	for _, h := range []*Histogram{&all, &merged, &twice, &back, &fromHDR} {
		h.Reset(&pool)
	}
	var fresh Histogram
	for i := 0; i < 2*inlineLen; i++ {
		fresh.Record(2, &pool)
	}
	n := 0
	fresh.ForEach(func(u, c int64) { n++; _ = u })
	if fresh.Count() != 2*inlineLen || n != 1 || fresh.high != nil {
		t.Fatalf("after Reset: total %d, %d buckets", fresh.Count(), n)
	}
}

// Record's in-line path (page present, count below 65,535) and its slow
// paths (inline list, spill, a new page, high halves) keep the count, the
// minimum and the maximum as one sequence of values does.
func TestHistogramRecordTracksCountMinMax(t *testing.T) {
	var pool PagePool
	rng := rand.New(rand.NewPCG(13, 14))
	for round := range 20 {
		var h Histogram
		var n, lo, hi int64
		for i := range 100_000 {
			v := math.Exp(rng.NormFloat64()*3) * 100
			switch {
			case round%2 == 0 && i%4 != 0:
				v = 7 // one bucket past 65,535: high halves
			case i%997 == 0:
				v = -1 // ignored
			}
			recorded := h.Record(v, &pool)
			u, ok := scaled(v)
			if recorded != ok {
				t.Fatalf("Record(%v) = %v", v, recorded)
			}
			if ok {
				if n == 0 {
					lo, hi = u, u
				}
				n, lo, hi = n+1, min(lo, u), max(hi, u)
			}
			if h.Count() != n || h.min != lo || h.max != hi {
				t.Fatalf("round %d, value %d (%v): count %d min %d max %d, want %d %d %d",
					round, i, v, h.Count(), h.min, h.max, n, lo, hi)
			}
		}
		if q0, _ := h.Quantile(0); q0 != float64(lowestEquivalent(countsIndex(lo)))/HistogramScale {
			t.Fatalf("round %d: q0 = %v, minimum %d units", round, q0, lo)
		}
		if round%2 == 0 && h.high == nil {
			t.Fatalf("round %d: no high halves", round)
		}
		h.Reset(&pool)
	}
}

// scaled rounds half away from zero, as math.Round does, and clamps.
func TestScaledRoundsLikeMathRound(t *testing.T) {
	want := func(v float64) (int64, bool) {
		if !(v >= 0) {
			return 0, false
		}
		u := math.Round(v * HistogramScale)
		if u > maxUnits {
			return maxUnits, true
		}
		return int64(u), true
	}
	check := func(v float64) {
		t.Helper()
		gu, gok := scaled(v)
		if wu, wok := want(v); gu != wu || gok != wok {
			t.Fatalf("scaled(%v) = %d, %v; want %d, %v", v, gu, gok, wu, wok)
		}
	}
	for _, x := range []float64{0, 0.5, 1.5, 2.5, 1 << 52, 1<<52 + 1, 1 << 53, 1<<53 + 2, 1 << 62, maxUnits, 1 << 63, math.MaxFloat64} {
		for _, y := range []float64{math.Nextafter(x, -1), x, math.Nextafter(x, math.Inf(1))} {
			check(y / HistogramScale)
			check(math.Nextafter(y/HistogramScale, 0))
			check(math.Nextafter(y/HistogramScale, math.Inf(1)))
		}
	}
	for _, v := range []float64{math.Copysign(0, -1), -1, math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, 0.0005, 0.0000005, 4.9999999999999994e-7} {
		check(v)
	}
	rng := rand.New(rand.NewPCG(15, 16))
	for range 1_000_000 {
		check(math.Ldexp(rng.Float64(), rng.IntN(90)-30))      // 1e-9 .. 1e18
		check(float64(rng.Int64N(1<<40)) + 0.5/HistogramScale) // near halves
	}
}

// countOf is the count of bucket i.
func countOf(h *Histogram, i int) uint32 {
	for j, c := range h.buckets {
		if j == i {
			return c
		}
	}
	return 0
}

// A typical window (1,000 latencies, log-normal) holds a few KiB, not the
// 320 KiB a dense histogram over 0.001..1e9 would.
func TestHistogramMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var h Histogram
	for i := 0; i < 1000; i++ {
		h.Record(math.Exp(rng.NormFloat64()*0.6+4.5), nil)
	}
	if b := h.Bytes(); b > 32<<10 {
		t.Fatalf("a 1,000-value window holds %d bytes", b)
	} else {
		t.Logf("1,000 log-normal latencies: %d bytes", b)
	}
	dense := hdr.New(1, 1e9*HistogramScale, sigFigs)
	t.Logf("dense hdrhistogram-go over 0.001..1e9: %d bytes", dense.ByteSize())
}

func TestHistogramRecordAllocs(t *testing.T) {
	var pool PagePool
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 1024)
	for i := range vals {
		vals[i] = math.Exp(rng.NormFloat64() + 5)
	}
	for _, v := range vals {
		h.Record(v, &pool)
	}
	h.Reset(&pool)
	i := 0
	if a := testing.AllocsPerRun(10000, func() {
		h.Record(vals[i&1023], &pool)
		i++
	}); a != 0 {
		t.Fatalf("Record allocates %v times", a)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var pool PagePool
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 1024)
	for i := range vals {
		vals[i] = math.Exp(rng.NormFloat64() + 5)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(vals[i&1023], &pool)
	}
}

// BenchmarkHDRRecord is hdrhistogram-go's dense histogram, for comparison.
func BenchmarkHDRRecord(b *testing.B) {
	h := hdr.New(1, 1e9*HistogramScale, sigFigs)
	rng := rand.New(rand.NewPCG(1, 1))
	vals := make([]int64, 1024)
	for i := range vals {
		vals[i] = int64(math.Exp(rng.NormFloat64()+5) * HistogramScale)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.RecordValue(vals[i&1023])
	}
}

func BenchmarkHistogramMerge(b *testing.B) {
	var pool PagePool
	rng := rand.New(rand.NewPCG(1, 1))
	var src, dst Histogram
	for i := 0; i < 1000; i++ {
		src.Record(math.Exp(rng.NormFloat64()*0.6+4.5), &pool)
	}
	b.ReportAllocs()
	for b.Loop() {
		dst.Merge(&src, &pool)
	}
}

func BenchmarkHistogramQuantile(b *testing.B) {
	var pool PagePool
	rng := rand.New(rand.NewPCG(1, 1))
	var h Histogram
	for i := 0; i < 1000; i++ {
		h.Record(math.Exp(rng.NormFloat64()*0.6+4.5), &pool)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.Quantile(0.99)
	}
}

// BenchmarkSortQuantile is the exact alternative: sort the window's values.
func BenchmarkSortQuantile(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 1000)
	for i := range vals {
		vals[i] = math.Exp(rng.NormFloat64()*0.6 + 4.5)
	}
	buf := make([]float64, len(vals))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, vals)
		sort.Float64s(buf)
		_ = sortedAtQuantile(buf, 0.99)
	}
}

// BenchmarkWindowMemory builds the state of many key-windows of the
// api-health metrics, each with the given number of log-normal latencies,
// and reports the memory one key-window holds.
func BenchmarkWindowMemory(b *testing.B) {
	l, _ := NewLayout([]Metric{
		{Name: "request_count", Kind: Count, Field: -1, Where: -1},
		{Name: "error_count", Kind: Count, Field: -1, Where: 0},
		{Name: "avg", Kind: Avg, Field: 0, Where: -1},
		{Name: "max", Kind: Max, Field: 0, Where: -1},
		{Name: "p95", Kind: Percentile, Field: 0, Where: -1, Q: 0.95},
	})
	for _, events := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			var pool PagePool
			var bytes int
			b.ReportAllocs()
			for b.Loop() {
				s := l.NewState()
				for i := 0; i < events; i++ {
					ev := Event{Has: 1, Values: []float64{math.Exp(rng.NormFloat64()*0.6 + 4.5)}}
					s.Observe(l, &ev, &pool)
				}
				bytes = s.Bytes()
				s.Reset(&pool)
			}
			b.ReportMetric(float64(bytes), "B/key-window")
		})
	}
}
