package agg

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exactSum is the reference: math/big with unlimited precision, rounded once.
func exactSum(vs []float64) float64 {
	acc := new(big.Float).SetPrec(4096)
	for _, v := range vs {
		acc.Add(acc, new(big.Float).SetPrec(4096).SetFloat64(v))
	}
	f, _ := acc.Float64()
	return f
}

func TestSumExact(t *testing.T) {
	f := func(vs ...float64) {
		t.Helper()
		var s Sum
		for _, v := range vs {
			s.Add(v)
		}
		if got, want := s.Value(), exactSum(vs); got != want {
			t.Errorf("sum of %v = %v, want %v", vs, got, want)
		}
	}
	f()
	f(0)
	f(1, 2, 3)
	f(0.1, 0.2, 0.3)        // naive float addition gives 0.6000000000000001
	f(1e100, 1, -1e100)     // naive gives 0
	f(1e308, 1e308, -1e308) // intermediate overflow
	f(5e-324, 5e-324, 1e-310)
	f(-1.5, 1.5, -2.25)
	f(math.MaxFloat64, -math.MaxFloat64, 3)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		vs := make([]float64, 1+rng.IntN(300))
		for i := range vs {
			vs[i] = (rng.Float64() - 0.3) * math.Pow(10, float64(rng.IntN(40)-20))
		}
		f(vs...)
	}
}

// TestSumMean: the mean is the exact sum's quotient rounded once, against
// math/big's exact rational arithmetic, also where the sum itself does not
// fit in a float64; Value rounded and then divided can be off by an ulp.
func TestSumMean(t *testing.T) {
	mean := func(vs []float64) float64 {
		r := new(big.Rat)
		for _, v := range vs {
			r.Add(r, new(big.Rat).SetFloat64(v))
		}
		f, _ := r.Quo(r, new(big.Rat).SetInt64(int64(len(vs)))).Float64()
		return f
	}
	f := func(vs ...float64) (offByRounding bool) {
		t.Helper()
		var s Sum
		for _, v := range vs {
			s.Add(v)
		}
		if got, want := s.Mean(int64(len(vs))), mean(vs); got != want {
			t.Errorf("mean of %v = %v, want %v", vs, got, want)
		}
		return s.Value()/float64(len(vs)) != mean(vs)
	}
	f(1, 2)
	f(0.1, 0.2, 0.3)
	f(-3, 1)
	if !f(1.7e308, 1.7e308) { // the sum is +Inf as a float64
		t.Error("1.7e308 twice: the rounded sum divided should be off")
	}
	f(math.MaxFloat64, math.MaxFloat64, math.MaxFloat64)
	f(5e-324, 5e-324, 5e-324)
	rng := rand.New(rand.NewPCG(3, 4))
	off := 0
	for range 2000 {
		vs := make([]float64, 2+rng.IntN(50))
		for i := range vs {
			vs[i] = rng.ExpFloat64() * 120
		}
		if f(vs...) {
			off++
		}
	}
	if off == 0 {
		t.Error("no mean where rounding the sum first is off: the test shows nothing")
	}
	t.Logf("%d of 2000 means differ by rounding the sum first", off)
}

func TestSumSpecials(t *testing.T) {
	var s Sum
	s.Add(1)
	s.Add(math.Inf(1))
	if !math.IsInf(s.Value(), 1) {
		t.Fatal("+Inf lost")
	}
	s.Add(math.Inf(-1))
	if !math.IsNaN(s.Value()) {
		t.Fatal("Inf-Inf is not NaN")
	}
}

// Merging partial sums in any grouping gives the same exact result.
func TestSumMergeOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	vs := make([]float64, 5000)
	for i := range vs {
		vs[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-4))
	}
	want := exactSum(vs)
	for parts := 1; parts <= 7; parts++ {
		sums := make([]Sum, parts)
		for i, v := range vs {
			sums[(i*7+i/3)%parts].Add(v)
		}
		var total Sum
		for i := parts - 1; i >= 0; i-- {
			total.Merge(&sums[i])
		}
		if got := total.Value(); got != want {
			t.Fatalf("%d parts: %v, want %v", parts, got, want)
		}
	}
}

func TestSumAllocs(t *testing.T) {
	var s Sum
	s.Add(123.4)
	vals := []float64{12.5, 400.1, 0.25, 999.9, 3}
	if a := testing.AllocsPerRun(1000, func() {
		for _, v := range vals {
			s.Add(v)
		}
	}); a != 0 {
		t.Fatalf("Sum.Add allocates %v times", a)
	}
}

func BenchmarkSumAdd(b *testing.B) {
	var s Sum
	b.ReportAllocs()
	v := 201.3
	for b.Loop() {
		s.Add(v)
		v += 0.25
	}
}

// TestSumMean128MatchesBig: Mean's 128-bit division gives what math/big
// gives (meanBig), bit for bit, wherever it answers: sums of latencies,
// integers, values of both signs and of far-apart magnitudes, integers
// next to 2^53 (ties to even), counts from 1 to 2^62. And it does answer
// for a window's latencies, without allocating.
func TestSumMean128MatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	gens := []func() float64{
		func() float64 { return math.Round(rng.ExpFloat64()*1200) / 10 },                      // latencies in ms, one decimal
		func() float64 { return float64(rng.IntN(5000)) },                                     // integers
		func() float64 { return rng.NormFloat64() * 1e3 },                                     // both signs
		func() float64 { return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20)) },  // far apart
		func() float64 { return float64(1<<53 + rng.IntN(8) - 4) },                            // near 2^53
		func() float64 { return -math.Ldexp(1+rng.Float64(), rng.IntN(2000)-1000) },           // negative, any exponent
		func() float64 { return math.Float64frombits(rng.Uint64()&(1<<52-1)|1023<<52) * 1e3 }, // random mantissas
	}
	answered := make([]int, len(gens))
	for g, gen := range gens {
		for range 3000 {
			var s Sum
			k := 1 + rng.IntN(60)
			for range k {
				s.Add(gen())
			}
			ns := []int64{int64(k), 1, 2, 3, int64(1 + rng.IntN(1000)), int64(rng.Uint64() >> (1 + rng.IntN(63)))}
			for _, n := range ns {
				if n <= 0 {
					continue
				}
				s.normalize()
				got, ok := s.mean128(n)
				if !ok {
					continue
				}
				answered[g]++
				if want := s.meanBig(n); got != want && !(got == 0 && want == 0) {
					t.Fatalf("generator %d: sum of %d values / %d: mean128 %v (%x), math/big %v (%x)", g, k, n, got, math.Float64bits(got), want, math.Float64bits(want))
				}
			}
		}
	}
	t.Logf("answered by the 128-bit division, per generator: %v", answered)
	// A window's latencies: answered, with no allocation.
	var s Sum
	for range 1000 {
		s.Add(gens[0]())
	}
	s.normalize()
	if _, ok := s.mean128(1000); !ok {
		t.Fatal("the mean of 1000 latencies went through math/big")
	}
	if a := testing.AllocsPerRun(100, func() { s.Mean(1000) }); a != 0 {
		t.Fatalf("Mean allocates %v times", a)
	}
}

func BenchmarkSumMean(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	var s Sum
	for range 1000 {
		s.Add(math.Round(rng.ExpFloat64()*1200) / 10)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Mean(1000)
	}
}

// TestSumLimbsWithinTheDecodersBound: the widest sums there are — the
// largest and the smallest float64s, their carries normalized — stay
// within maxSumLimbs, so their encodings read back; the decoder refuses
// wider ones as damaged.
func TestSumLimbsWithinTheDecodersBound(t *testing.T) {
	var s Sum
	s.Add(math.SmallestNonzeroFloat64)
	for range 1 << 12 {
		s.Add(math.MaxFloat64)
	}
	s.normalize()
	if top := s.base + len(s.limbs); top > maxSumLimbs-3 { // 2^63 values would add 2 more limbs at most
		t.Fatalf("a sum of 4096 MaxFloat64 reaches limb %d; maxSumLimbs is %d", top, maxSumLimbs)
	}
	r := reader{b: s.appendBinary(nil)}
	var back Sum
	back.read(&r)
	if r.err || back.Value() != s.Value() || !math.IsInf(s.Value(), 1) {
		t.Fatalf("read back: err %v, %v vs %v", r.err, back.Value(), s.Value())
	}
	wide := Sum{base: 10, limbs: make([]int64, maxSumLimbs-9)}
	r = reader{b: wide.appendBinary(nil)}
	back.read(&r)
	if !r.err {
		t.Fatal("a sum reaching past maxSumLimbs decoded")
	}
}
