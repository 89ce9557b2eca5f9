package agg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestWindowStarts(t *testing.T) {
	f := func(w Windows, t0 int64, want ...int64) {
		t.Helper()
		if got := w.Starts(t0, nil); !slices.Equal(got, want) {
			t.Errorf("%+v Starts(%d) = %v, want %v", w, t0, got, want)
		}
	}
	tum := Windows{Kind: Tumbling, Size: 60000}
	f(tum, 0, 0)
	f(tum, 59999, 0)
	f(tum, 60000, 60000)
	f(tum, -1, -60000) // aligned to the epoch below zero too
	hop := Windows{Kind: Hopping, Size: 300000, Advance: 60000}
	f(hop, 0, -240000, -180000, -120000, -60000, 0)
	f(hop, 125000, -120000, -60000, 0, 60000, 120000)
	f(hop, 299999, 0, 60000, 120000, 180000, 240000)
	odd := Windows{Kind: Hopping, Size: 100, Advance: 30} // size not a multiple of advance
	f(odd, 95, 0, 30, 60, 90)
	f(odd, 100, 30, 60, 90)
	f(Windows{Kind: Session, Gap: 30000}, 1234, 1234)
	// Every window returned contains t, and no other does.
	for t0 := int64(-500); t0 < 500; t0 += 7 {
		for _, s := range odd.Starts(t0, nil) {
			if !(s <= t0 && t0 < s+100 && s%30 == 0) {
				t.Fatalf("odd.Starts(%d) has %d", t0, s)
			}
		}
		if n := len(odd.Starts(t0, nil)); n < 3 || n > 4 {
			t.Fatalf("odd.Starts(%d): %d windows", t0, n)
		}
	}
}

func TestWindowBoundary(t *testing.T) {
	tum := Windows{Kind: Tumbling, Size: 60000}
	if !tum.Boundary(59999, 60000) || tum.Boundary(60000, 119999) || !tum.Boundary(60000, 120000) || tum.Boundary(5, 5) {
		t.Fatal("tumbling boundaries")
	}
	hop := Windows{Kind: Hopping, Size: 100, Advance: 30} // ends at 100, 130, 160, ...
	if !hop.Boundary(99, 100) || hop.Boundary(100, 129) || !hop.Boundary(129, 130) {
		t.Fatal("hopping boundaries")
	}
	if tum.LastEnd(61000) != 120000 || hop.LastEnd(95) != 190 {
		t.Fatalf("LastEnd %d %d", tum.LastEnd(61000), hop.LastEnd(95))
	}
}

func TestWindowsValidate(t *testing.T) {
	for _, c := range []struct {
		w  Windows
		ok bool
	}{
		{Windows{Kind: Tumbling, Size: 1}, true},
		{Windows{Kind: Tumbling}, false},
		{Windows{Kind: Hopping, Size: 100, Advance: 30}, true},
		{Windows{Kind: Hopping, Size: 30, Advance: 100}, false},
		{Windows{Kind: Hopping, Size: MaxWindowsPerEvent, Advance: 1}, true},
		{Windows{Kind: Hopping, Size: MaxWindowsPerEvent + 1, Advance: 1}, false},
		{Windows{Kind: Hopping, Size: 3_600_000, Advance: 1}, false},
		{Windows{Kind: Session, Gap: 1}, true},
		{Windows{Kind: Session}, false},
	} {
		if err := c.w.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.w, err)
		}
	}
}

func testLayout(t testing.TB) *Layout {
	// The SPEC's api-health metrics; field 0 is response_time, predicate 0 is status == "error".
	l, err := NewLayout([]Metric{
		{Name: "request_count", Kind: Count, Field: -1, Where: -1},
		{Name: "error_count", Kind: Count, Field: -1, Where: 0},
		{Name: "error_rate", Kind: Ratio, Field: -1, Where: -1, Of: 1, Over: 0},
		{Name: "avg_response_time", Kind: Avg, Field: 0, Where: -1},
		{Name: "max_response_time", Kind: Max, Field: 0, Where: -1},
		{Name: "p95_response_time", Kind: Percentile, Field: 0, Where: -1, Q: 0.95},
		{Name: "p50_response_time", Kind: Percentile, Field: 0, Where: -1, Q: 0.5},
		{Name: "throughput", Kind: Rate, Field: -1, Where: -1, Of: 0},
		{Name: "sum_errors_rt", Kind: SumKind, Field: 0, Where: 0},
		{Name: "min_response_time", Kind: Min, Field: 0, Where: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestStateMetrics(t *testing.T) {
	l := testLayout(t)
	if len(l.counts) != 2 || len(l.fields) != 2 {
		t.Fatalf("slots: %d counts, %d fields (percentiles, avg, max, min of one field share one)", len(l.counts), len(l.fields))
	}
	s := l.NewState()
	var pool PagePool
	vals := []float64{0}
	for i := 1; i <= 100; i++ {
		ev := Event{Values: vals}
		if i%4 == 0 {
			ev.Preds |= 1 // error
		}
		if i != 50 { // one event without a numeric response_time
			ev.Has = 1
			vals[0] = float64(i)
		}
		s.Observe(l, &ev, &pool)
	}
	got := s.Values(l, 60, nil)
	want := map[string]float64{
		"request_count": 100, "error_count": 25, "error_rate": 0.25,
		"avg_response_time": (5050.0 - 50) / 99, "max_response_time": 100, "min_response_time": 1,
		"throughput": 100.0 / 60, "sum_errors_rt": 4 * (25 * 26 / 2),
	}
	for i, m := range l.Metrics {
		v := got[i]
		if w, ok := want[m.Name]; ok && (!v.OK || v.V != w) {
			t.Errorf("%s = %+v, want %v", m.Name, v, w)
		}
	}
	// Nearest rank over 99 values (1..100 without 50): p95 is the 95th → 96; p50 the 50th → 51.
	if p := got[5]; math.Abs(p.V-96)/96 > 0.001 {
		t.Errorf("p95 = %v", p.V)
	}
	if p := got[6]; math.Abs(p.V-51)/51 > 0.001 {
		t.Errorf("p50 = %v", p.V)
	}
	if !got[0].Integer || got[2].Integer {
		t.Error("integer flags")
	}
}

func TestStateNulls(t *testing.T) {
	l := testLayout(t)
	s := l.NewState()
	s.Observe(l, &Event{Values: []float64{0}}, nil) // no numeric field, no error
	got := s.Values(l, 60, nil)
	for i, m := range l.Metrics {
		switch m.Name {
		case "request_count", "error_count", "throughput":
			if !got[i].OK {
				t.Errorf("%s is null", m.Name)
			}
		case "error_rate":
			if !got[i].OK || got[i].V != 0 {
				t.Errorf("error_rate = %+v, want 0", got[i])
			}
		default:
			if got[i].OK {
				t.Errorf("%s = %v, want null (no numeric value)", m.Name, got[i].V)
			}
		}
	}
	// A ratio over zero is null.
	l2, _ := NewLayout([]Metric{
		{Name: "errors", Kind: Count, Where: 0, Field: -1},
		{Name: "r", Kind: Ratio, Of: 0, Over: 0, Field: -1, Where: -1},
	})
	if v := l2.NewState().Values(l2, 1, nil); v[1].OK {
		t.Error("0/0 is not null")
	}
}

func TestStateMergeEqualsWhole(t *testing.T) {
	l := testLayout(t)
	var pool PagePool
	whole := l.NewState()
	parts := []*State{l.NewState(), l.NewState(), l.NewState()}
	for i := 0; i < 3000; i++ {
		ev := Event{Has: 1, Values: []float64{float64(i%977) * 1.37}}
		if i%7 == 0 {
			ev.Preds = 1
		}
		whole.Observe(l, &ev, &pool)
		parts[i%3].Observe(l, &ev, &pool)
	}
	merged := l.NewState()
	for _, p := range parts {
		merged.Merge(p, &pool)
	}
	a, b := fmt.Sprint(whole.Values(l, 60, nil)), fmt.Sprint(merged.Values(l, 60, nil))
	if a != b {
		t.Fatalf("merged %s\nwhole  %s", b, a)
	}
	merged.Reset(&pool)
	if !merged.Empty() {
		t.Fatal("Reset left values")
	}
}

func TestLayoutErrors(t *testing.T) {
	f := func(ms []Metric, want string) {
		t.Helper()
		_, err := NewLayout(ms)
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("NewLayout: %v, want %q", err, want)
		}
	}
	f([]Metric{{Name: "a", Kind: Avg, Field: -1, Where: -1}}, "needs a field")
	f([]Metric{{Name: "p", Kind: Percentile, Field: 0, Where: -1, Q: 1.5}}, "q must be")
	f([]Metric{{Name: "r", Kind: Ratio, Of: 3, Over: 0, Field: -1, Where: -1}}, "missing metric")
	f([]Metric{
		{Name: "a", Kind: Rate, Of: 1, Field: -1, Where: -1},
		{Name: "b", Kind: Rate, Of: 0, Field: -1, Where: -1},
	}, "refers to itself")
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func TestObserveAllocs(t *testing.T) {
	l := testLayout(t)
	var pool PagePool
	s := l.NewState()
	ev := Event{Has: 1, Values: []float64{0}}
	for i := 0; i < 5000; i++ {
		ev.Values[0] = float64(i % 1000)
		s.Observe(l, &ev, &pool)
	}
	i := 0
	if a := testing.AllocsPerRun(5000, func() {
		ev.Values[0] = float64(i % 1000)
		ev.Preds = uint64(i & 1)
		s.Observe(l, &ev, &pool)
		i++
	}); a != 0 {
		t.Fatalf("Observe allocates %v times", a)
	}
}

func BenchmarkObserve(b *testing.B) {
	l, _ := NewLayout([]Metric{
		{Name: "request_count", Kind: Count, Field: -1, Where: -1},
		{Name: "error_count", Kind: Count, Field: -1, Where: 0},
		{Name: "avg", Kind: Avg, Field: 0, Where: -1},
		{Name: "p95", Kind: Percentile, Field: 0, Where: -1, Q: 0.95},
	})
	var pool PagePool
	s := l.NewState()
	ev := Event{Has: 1, Values: []float64{0}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Values[0] = float64(i%2000) * 0.37
		ev.Preds = uint64(i>>3) & 1
		s.Observe(l, &ev, &pool)
	}
}

func TestStateBinaryRoundTrip(t *testing.T) {
	l := testLayout(t)
	var pool PagePool
	for _, n := range []int{0, 3, 5000} {
		s := l.NewState()
		for i := 0; i < n; i++ {
			ev := Event{Has: 1, Values: []float64{float64(i%977)*1.37 + 0.001}}
			if i%5 == 0 {
				ev.Preds = 1
			}
			s.Observe(l, &ev, &pool)
		}
		b := s.AppendBinary(nil)
		back := l.NewState()
		rest, err := back.ReadBinary(append(b, 7), &pool)
		if err != nil || len(rest) != 1 {
			t.Fatalf("n=%d: %v, rest %d", n, err, len(rest))
		}
		if a, c := fmt.Sprint(s.Values(l, 60, nil)), fmt.Sprint(back.Values(l, 60, nil)); a != c {
			t.Fatalf("n=%d: restored %s\n want %s", n, c, a)
		}
		// It keeps aggregating exactly.
		ev := Event{Has: 1, Values: []float64{12.5}}
		s.Observe(l, &ev, &pool)
		back.Observe(l, &ev, &pool)
		if a, c := fmt.Sprint(s.Values(l, 60, nil)), fmt.Sprint(back.Values(l, 60, nil)); a != c {
			t.Fatalf("n=%d after one more: %s vs %s", n, c, a)
		}
		// The last byte says there are no negative values: without it,
		// the encoding of before they were kept, which says the same.
		for cut := 0; cut < len(b)-1; cut += 1 + len(b)/50 {
			if _, err := l.NewState().ReadBinary(b[:cut], &pool); err == nil {
				t.Fatalf("truncated encoding (%d of %d bytes) decoded", cut, len(b))
			}
		}
		old, full := l.NewState(), l.NewState()
		full.ReadBinary(b, &pool)
		if _, err := old.ReadBinary(b[:len(b)-1], &pool); err != nil || fmt.Sprint(old.Values(l, 60, nil)) != fmt.Sprint(full.Values(l, 60, nil)) {
			t.Fatalf("n=%d: the encoding without negative values' byte: %v", n, err)
		}
	}
}

// Percentiles rank negative values below the others (they are kept in a
// histogram of their magnitudes), as a sort would, within 0.1%. Merged
// and encoded states keep them.
func TestPercentileWithNegativeValues(t *testing.T) {
	l := testLayout(t)
	var pool PagePool
	rng := rand.New(rand.NewPCG(3, 4))
	for _, negShare := range []float64{0, 0.02, 0.5, 1} {
		a, b := l.NewState(), l.NewState()
		var vals []float64
		for i := range 3000 {
			v := math.Exp(rng.Float64()*12) / 1000 // 0.001 to ~160
			if rng.Float64() < negShare {
				v = -v
			}
			vals = append(vals, v)
			ev := Event{Has: 1, Values: []float64{v}}
			if i%2 == 0 {
				a.Observe(l, &ev, &pool)
			} else {
				b.Observe(l, &ev, &pool)
			}
		}
		a.Merge(b, &pool)
		back := l.NewState()
		if _, err := back.ReadBinary(a.AppendBinary(nil), &pool); err != nil {
			t.Fatal(err)
		}
		slices.Sort(vals)
		for _, s := range []*State{a, back} {
			for _, q := range []float64{0.001, 0.01, 0.5, 0.95, 0.999, 1} {
				exact := vals[max(1, int(math.Ceil(q*float64(len(vals)))))-1]
				got, ok := s.Fields[0].quantile(q)
				if !ok || math.Abs(got-exact) > 0.001*math.Abs(exact) {
					t.Fatalf("negative share %v, q %v: %v, exact %v", negShare, q, got, exact)
				}
			}
			if got, _ := s.Fields[0].quantile(0); math.Abs(got-vals[0]) > 0.001*math.Abs(vals[0]) {
				t.Fatalf("negative share %v, q 0: %v, minimum %v", negShare, got, vals[0])
			}
		}
	}
}

// A percentile is reported between the field's exact minimum and maximum,
// where the ranked value is: a window of one value reports that value (a
// bucket's highest value would be above it, up to 0.1%), the 100th
// percentile is the maximum and the 0th the minimum, for negative values
// too. Within those bounds it is HDR's report, at or above the ranked value.
func TestPercentileWithinMinMax(t *testing.T) {
	l := testLayout(t)
	var pool PagePool
	observe := func(vs ...float64) *State {
		s := l.NewState()
		for _, v := range vs {
			s.Observe(l, &Event{Has: 1, Values: []float64{v}}, &pool)
		}
		return s
	}
	many := make([]float64, 100)
	for i := range many {
		many[i] = 1000.5 + float64(i)
	}
	for _, c := range []struct {
		vs   []float64
		q    float64
		want float64
	}{
		{[]float64{331.9}, 0.95, 331.9},
		{[]float64{331.9}, 0, 331.9},
		{[]float64{-331.9}, 0.95, -331.9},
		{[]float64{-331.9}, 0, -331.9},
		{[]float64{-5, 331.9}, 1, 331.9},
		{[]float64{-331.9, -5}, 1, -5},
		{[]float64{-331.9, 5}, 0, -331.9},
		{[]float64{1e-7}, 0.5, 1e-7}, // rounds to 0 units
		{[]float64{0.0014996}, 1, 0.0014996},
		{many, 1, 1099.5},
		{many, 0, 1000.5},
	} {
		s := observe(c.vs...)
		got, ok := s.Fields[0].quantile(c.q)
		if !ok || got != c.want {
			t.Errorf("%d values from %v at q %v: %v, want %v", len(c.vs), c.vs[0], c.q, got, c.want)
		}
	}
	// Below the maximum, the bucket's highest value as before.
	s := observe(many...)
	if got, _ := s.Fields[0].quantile(0.5); got <= many[49] || got > many[49]*1.001 {
		t.Errorf("median %v, ranked value %v", got, many[49])
	}
	// A merged and a decoded state keep the bounds.
	a, b := observe(331.9), observe(12.25)
	a.Merge(b, &pool)
	back := l.NewState()
	if _, err := back.ReadBinary(a.AppendBinary(nil), &pool); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*State{a, back} {
		if got, _ := s.Fields[0].quantile(1); got != 331.9 {
			t.Errorf("merged: p100 %v, want 331.9", got)
		}
		if got, _ := s.Fields[0].quantile(0); got != 12.25 {
			t.Errorf("merged: p0 %v, want 12.25", got)
		}
	}
}

// The rank of quantile q among N values is ceil(q·N) of the decimal q, as
// HdrHistogram's Java getValueAtPercentile finds it, not of q·N in float64,
// which is 7.000000000000001 for 0.07·100: the 7th percentile of 1..100 is
// 7, not 8. Checked for every q of two decimals and N up to 300, for
// positive values, negative ones and a field with both.
func TestPercentileRankOfDecimalQuantile(t *testing.T) {
	l := testLayout(t)
	var pool PagePool
	for n := 1; n <= 300; n++ {
		pos, neg, both := l.NewState(), l.NewState(), l.NewState()
		vals := make([]float64, 0, n)
		for i := 1; i <= n; i++ {
			pos.Observe(l, &Event{Has: 1, Values: []float64{float64(i)}}, &pool)
			neg.Observe(l, &Event{Has: 1, Values: []float64{-float64(i)}}, &pool)
			v := float64(i - n/2) // -n/2+1 .. n-n/2, 0 among them
			both.Observe(l, &Event{Has: 1, Values: []float64{v}}, &pool)
			vals = append(vals, v)
		}
		for k := 1; k <= 100; k++ {
			q := float64(k) / 100
			rank := (k*n + 99) / 100 // ceil(k·n/100), exactly
			for _, c := range []struct {
				name  string
				s     *State
				exact float64
			}{
				{"1..n", pos, float64(rank)},
				{"-n..-1", neg, float64(rank - n - 1)},
				{"both signs", both, vals[rank-1]},
			} {
				got, _ := c.s.Fields[0].quantile(q)
				if got < c.exact || got-c.exact > 0.001*math.Abs(c.exact) {
					t.Fatalf("%s, n %d, q %v: %v, want the %d-th value %v", c.name, n, q, got, rank, c.exact)
				}
			}
			if got, _ := pos.Fields[0].Hist.Quantile(q); got < float64(rank) || got > float64(rank)*1.001 {
				t.Fatalf("Histogram.Quantile, n %d, q %v: %v, want %d", n, q, got, rank)
			}
		}
	}
}

// FuzzStateReadBinary: a state encoding is read back from a checkpoint
// file or a checkpoint topic's records; whatever the bytes, reading them
// must not panic, and a state they decode to must give values, merge and
// encode without a panic either.
func FuzzStateReadBinary(f *testing.F) {
	l := testLayout(f)
	var pool PagePool
	for _, n := range []int{0, 1, 3, 40, 5000} {
		s := l.NewState()
		for i := range n {
			v := float64(i%977)*1.37 + 0.001
			if i%7 == 3 {
				v = -v // the negative values' histogram too
			}
			ev := Event{Has: 1, Values: []float64{v}, Preds: uint64(i % 2)}
			s.Observe(l, &ev, &pool)
		}
		f.Add(s.AppendBinary(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := l.NewState()
		if _, err := s.ReadBinary(b, &pool); err != nil {
			s.Reset(&pool)
			return
		}
		s.Values(l, 60, nil)
		other := l.NewState()
		ev := Event{Has: 1, Values: []float64{12.5}, Preds: 1}
		other.Observe(l, &ev, &pool)
		other.Merge(s, &pool)
		other.Values(l, 60, nil)
		back := l.NewState()
		if _, err := back.ReadBinary(s.AppendBinary(nil), &pool); err != nil {
			t.Fatalf("a decoded state's encoding does not decode: %v", err)
		}
		s.Observe(l, &ev, &pool)
		s.Values(l, 60, nil)
		s.Reset(&pool)
		other.Reset(&pool)
		back.Reset(&pool)
	})
}
