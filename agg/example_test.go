package agg_test

import (
	"fmt"

	"github.com/fastflow/fastflow/agg"
)

func Example() {
	// request_count, error_count (predicate 0), error_rate, p95 of field 0.
	l, _ := agg.NewLayout([]agg.Metric{
		{Name: "request_count", Kind: agg.Count, Field: -1, Where: -1},
		{Name: "error_count", Kind: agg.Count, Field: -1, Where: 0},
		{Name: "error_rate", Kind: agg.Ratio, Field: -1, Where: -1, Of: 1, Over: 0},
		{Name: "p95_ms", Kind: agg.Percentile, Field: 0, Where: -1, Q: 0.95},
	})
	// Two workers aggregate half of the events each; their states merge exactly.
	// The p95 is the highest value HDR treats as equal to the 190th value, 190.
	a, b := l.NewState(), l.NewState()
	for i := 1; i <= 200; i++ {
		ev := agg.Event{Has: 1, Values: []float64{float64(i)}}
		if i%10 == 0 {
			ev.Preds = 1 // status == "error"
		}
		if i%2 == 0 {
			a.Observe(l, &ev, nil)
		} else {
			b.Observe(l, &ev, nil)
		}
	}
	a.Merge(b, nil)
	for i, v := range a.Values(l, 60, nil) {
		fmt.Printf("%s=%g\n", l.Metrics[i].Name, v.V)
	}
	// Output:
	// request_count=200
	// error_count=20
	// error_rate=0.1
	// p95_ms=190.054399
}
