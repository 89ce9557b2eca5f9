// Package agg holds the data of windowed aggregation: window assignment
// (tumbling, hopping, session, aligned to the Unix epoch), the state of
// one key in one window (counts, exact sums, min, max, HDR histograms),
// and the metrics computed from it (count, sum, avg, min, max, percentile,
// ratio, rate). It does no I/O and starts no goroutines; package pipeline
// drives it.
//
// Everything here merges exactly: a State built from some events, merged
// with one built from the others, equals the State of all the events —
// counts and min/max trivially, sums because Sum is an exact
// accumulator (the correctly rounded sum, whatever the order), and
// percentiles because histograms add bucket by bucket. That is what lets
// pipeline workers aggregate their partitions separately and still produce
// results independent of how partitions are spread over workers.
//
// Percentiles use HdrHistogram's buckets with 3 significant digits over
// values scaled by 10^6 (so 0.001 is exact), stored sparsely: see
// Histogram. The rank is nearest-rank, ceil(q·N) of the decimal q (as
// HdrHistogram's Java getValueAtPercentile finds it), and the reported
// value is the highest equivalent to the ranked one, or the maximum if
// that is lower: less than 0.1% above the exact value for any value from
// 0.001 to 1e9. Negative values are ranked below the others, from a
// second histogram of their magnitudes (FieldState.Neg), made only for a
// field that has some.
//
// A State and a Histogram belong to one goroutine. Observe and Record
// allocate nothing once a PagePool has pages to give.
package agg
