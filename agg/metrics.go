package agg

import (
	"fmt"
	"math"
	"unsafe"
)

// Kind is an aggregate function.
type Kind uint8

const (
	Count      Kind = iota // events (that match Where)
	SumKind                // exact sum of a field
	Avg                    // exact sum / number of numeric values
	Min                    // smallest value
	Max                    // largest value
	Percentile             // nearest-rank quantile Q, HDR, 3 significant digits
	Ratio                  // metric Of / metric Over
	Rate                   // metric Of per second of window
)

var kindNames = map[string]Kind{
	"count": Count, "sum": SumKind, "avg": Avg, "min": Min, "max": Max,
	"percentile": Percentile, "ratio": Ratio, "rate": Rate,
}

// ParseKind parses an aggregate's name as written in a pipeline.
func ParseKind(s string) (Kind, bool) {
	k, ok := kindNames[s]
	return k, ok
}

// Metric is one metric of a pipeline, compiled: fields and predicates are
// indexes into the event's extracted values.
type Metric struct {
	Name  string
	Kind  Kind
	Field int     // index of the numeric field, -1 for count, ratio and rate
	Where int     // index of the predicate that filters events, -1 for none
	Q     float64 // quantile of a percentile, in (0, 1]
	Of    int     // metric index: numerator of ratio, subject of rate
	Over  int     // metric index: denominator of ratio
}

// Layout maps a pipeline's metrics to the slots of a State, shared where
// metrics can share: one counter per predicate, one field state per
// (field, predicate), and one histogram for all percentiles of a field.
// It is immutable once built.
type Layout struct {
	Metrics []Metric
	counts  []int // slot -> predicate (-1: every event)
	fields  []fieldSlot
	slot    []int // metric -> slot in counts or fields
	order   []int // metrics in evaluation order (derived ones after their inputs)
}

type fieldSlot struct {
	field, where           int
	sum, minMax, histogram bool
}

// NewLayout compiles metrics. Ratio and rate refer to other metrics by
// index; cycles are an error.
func NewLayout(metrics []Metric) (*Layout, error) {
	l := &Layout{Metrics: metrics, slot: make([]int, len(metrics))}
	for i, m := range metrics {
		switch m.Kind {
		case Count:
			l.slot[i] = l.countSlot(m.Where)
		case SumKind, Avg, Min, Max, Percentile:
			if m.Field < 0 {
				return nil, fmt.Errorf("metric %q: needs a field", m.Name)
			}
			s := l.fieldSlot(m.Field, m.Where)
			switch m.Kind {
			case SumKind, Avg:
				l.fields[s].sum = true
			case Min, Max:
				l.fields[s].minMax = true
			case Percentile:
				if !(m.Q > 0 && m.Q <= 1) {
					return nil, fmt.Errorf("metric %q: q must be in (0, 1], not %v", m.Name, m.Q)
				}
				l.fields[s].histogram = true
			}
			l.slot[i] = s
		case Ratio, Rate:
			if m.Of < 0 || m.Of >= len(metrics) || m.Kind == Ratio && (m.Over < 0 || m.Over >= len(metrics)) {
				return nil, fmt.Errorf("metric %q: refers to a missing metric", m.Name)
			}
		default:
			return nil, fmt.Errorf("metric %q: unknown aggregate", m.Name)
		}
	}
	// Derived metrics after their inputs (a topological order).
	state := make([]int8, len(metrics)) // 0 new, 1 visiting, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return fmt.Errorf("metric %q: refers to itself through ratio or rate", metrics[i].Name)
		case 2:
			return nil
		}
		state[i] = 1
		if m := metrics[i]; m.Kind == Ratio || m.Kind == Rate {
			if err := visit(m.Of); err != nil {
				return err
			}
			if m.Kind == Ratio {
				if err := visit(m.Over); err != nil {
					return err
				}
			}
		}
		state[i] = 2
		l.order = append(l.order, i)
		return nil
	}
	for i := range metrics {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Layout) countSlot(where int) int {
	for i, w := range l.counts {
		if w == where {
			return i
		}
	}
	l.counts = append(l.counts, where)
	return len(l.counts) - 1
}

func (l *Layout) fieldSlot(field, where int) int {
	for i, f := range l.fields {
		if f.field == field && f.where == where {
			return i
		}
	}
	l.fields = append(l.fields, fieldSlot{field: field, where: where})
	return len(l.fields) - 1
}

// State is the aggregate of one key in one window. Its zero value is not
// usable: get one from Layout.NewState.
type State struct {
	Counts []int64
	Fields []FieldState
}

// FieldState aggregates one numeric field (under one predicate).
type FieldState struct {
	N        int64 // numeric values seen
	Sum      Sum
	Min, Max float64
	Hist     Histogram  // the values >= 0, for percentiles
	Neg      *Histogram // the negative values, negated; nil until the field has one
}

// neg returns f.Neg, made if f has none yet.
func (f *FieldState) neg() *Histogram {
	if f.Neg == nil {
		f.Neg = new(Histogram)
	}
	return f.Neg
}

// negCount is the number of negative values f holds.
func (f *FieldState) negCount() int64 {
	if f.Neg == nil {
		return 0
	}
	return f.Neg.Count()
}

// NewState returns an empty state for l.
func (l *Layout) NewState() *State {
	return &State{Counts: make([]int64, len(l.counts)), Fields: make([]FieldState, len(l.fields))}
}

// Event is what a pipeline extracts from one record: which predicates hold
// (bit i for predicate i) and which fields are numbers (bit i, value in
// Values[i]). At most 64 of each.
type Event struct {
	Preds  uint64
	Has    uint64
	Values []float64
}

// Observe adds an event to s. It does not allocate once the histograms'
// pages are pooled.
func (s *State) Observe(l *Layout, ev *Event, pool *PagePool) {
	for i, w := range l.counts {
		if w < 0 || ev.Preds&(1<<uint(w)) != 0 {
			s.Counts[i]++
		}
	}
	for i := range l.fields {
		f := &l.fields[i]
		if ev.Has&(1<<uint(f.field)) == 0 || f.where >= 0 && ev.Preds&(1<<uint(f.where)) == 0 {
			continue
		}
		v := ev.Values[f.field]
		fs := &s.Fields[i]
		if fs.N == 0 || v < fs.Min {
			fs.Min = v
		}
		if fs.N == 0 || v > fs.Max {
			fs.Max = v
		}
		fs.N++
		if f.sum {
			fs.Sum.Add(v)
		}
		if f.histogram && !fs.Hist.Record(v, pool) {
			fs.neg().Record(-v, pool) // a negative value (events hold no NaN)
		}
	}
}

// Merge adds o into s exactly.
func (s *State) Merge(o *State, pool *PagePool) {
	for i, c := range o.Counts {
		s.Counts[i] += c
	}
	for i := range o.Fields {
		of, sf := &o.Fields[i], &s.Fields[i]
		if of.N == 0 {
			continue
		}
		if sf.N == 0 || of.Min < sf.Min {
			sf.Min = of.Min
		}
		if sf.N == 0 || of.Max > sf.Max {
			sf.Max = of.Max
		}
		sf.N += of.N
		sf.Sum.Merge(&of.Sum)
		sf.Hist.Merge(&of.Hist, pool)
		if of.negCount() > 0 {
			sf.neg().Merge(of.Neg, pool)
		}
	}
}

// Reset empties s for reuse, returning histogram pages to pool.
func (s *State) Reset(pool *PagePool) {
	clear(s.Counts)
	for i := range s.Fields {
		f := &s.Fields[i]
		f.N, f.Min, f.Max = 0, 0, 0
		f.Sum.Reset()
		f.Hist.Reset(pool)
		if f.Neg != nil {
			f.Neg.Reset(pool) // kept: a field that had negative values may have more
		}
	}
}

// Empty reports whether no event was observed.
func (s *State) Empty() bool {
	for _, c := range s.Counts {
		if c != 0 {
			return false
		}
	}
	for i := range s.Fields {
		if s.Fields[i].N != 0 {
			return false
		}
	}
	return true
}

// Value is a metric's value; OK is false for "no value" (null).
type Value struct {
	V       float64
	OK      bool
	Integer bool // a count: print without a fraction
}

// Values computes every metric of s, in metric order, for a window of
// seconds seconds.
func (s *State) Values(l *Layout, seconds float64, dst []Value) []Value {
	if cap(dst) < len(l.Metrics) {
		dst = make([]Value, len(l.Metrics))
	}
	dst = dst[:len(l.Metrics)]
	clear(dst)
	for _, i := range l.order {
		m := &l.Metrics[i]
		var v Value
		switch m.Kind {
		case Count:
			v = Value{V: float64(s.Counts[l.slot[i]]), OK: true, Integer: true}
		case Ratio:
			of, over := dst[m.Of], dst[m.Over]
			if of.OK && over.OK && over.V != 0 {
				v = Value{V: of.V / over.V, OK: true}
			}
		case Rate:
			if of := dst[m.Of]; of.OK && seconds > 0 {
				v = Value{V: of.V / seconds, OK: true}
			}
		default:
			f := &s.Fields[l.slot[i]]
			if f.N == 0 {
				break
			}
			switch m.Kind {
			case SumKind:
				v = Value{V: f.Sum.Value(), OK: true}
			case Avg:
				v = Value{V: f.Sum.Mean(f.N), OK: true}
			case Min:
				v = Value{V: f.Min, OK: true}
			case Max:
				v = Value{V: f.Max, OK: true}
			case Percentile:
				q, ok := f.quantile(m.Q)
				v = Value{V: q, OK: ok}
			}
		}
		if v.OK && (math.IsNaN(v.V) || math.IsInf(v.V, 0)) {
			v = Value{}
		}
		dst[i] = v
	}
	return dst
}

// quantile is the nearest-rank quantile q of the field's values, as
// Histogram.Quantile reports it, the negative ones (Neg) ranked below the
// others: the ceil(q·N)-th smallest of all N. A negative one is reported
// as the highest value equivalent to it too: minus the lowest equivalent
// of its magnitude, at or above it and within 0.1% of it. The report is
// kept within the field's exact minimum and maximum, where the ranked
// value is: a bucket's top past the maximum (or a scaled value rounded
// past either) is the maximum, as a one-value window's percentile is its
// value.
func (f *FieldState) quantile(q float64) (float64, bool) {
	v, ok := f.rankedValue(q)
	if !ok {
		return 0, false
	}
	return min(max(v, f.Min), f.Max), true
}

// rankedValue is quantile's report before it is bounded: HDR's, from the
// histograms of the values at or above zero and of the negative ones.
func (f *FieldState) rankedValue(q float64) (float64, bool) {
	neg := f.negCount()
	if neg == 0 {
		return f.Hist.Quantile(q)
	}
	if q <= 0 {
		return f.Min, true
	}
	total := neg + f.Hist.Count()
	rank := nearestRank(q, total)
	if rank > neg {
		return highestValue(f.Hist.atRank(rank - neg)), true
	}
	// The rank-th smallest of all is the negative whose magnitude is the
	// (neg-rank+1)-th smallest in Neg.
	return -lowestValue(f.Neg.atRank(neg - rank + 1)), true
}

// Bytes is the memory s holds, roughly: for the memory-per-window report.
func (s *State) Bytes() int {
	n := 8*len(s.Counts) + int(unsafe.Sizeof(FieldState{}))*len(s.Fields)
	for i := range s.Fields {
		f := &s.Fields[i]
		n += 8*len(f.Sum.limbs) + f.Hist.Bytes()
		if f.Neg != nil {
			n += int(unsafe.Sizeof(*f.Neg)) + f.Neg.Bytes()
		}
	}
	return n
}
