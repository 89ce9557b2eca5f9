package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastflow/fastflow/agg"
)

// A third reference, for what the other two leave out: every aggregate
// (several percentiles of one field, a filtered percentile, sum, avg, min
// and max over negative, tiny, huge and non-numeric values, a ratio whose
// denominator may be 0, a rate), every time unit with the digits below the
// millisecond that flooring must drop, the record timestamp as event time,
// and group keys of several JSON types. Events come in order within
// max_out_of_order, so each window is emitted once and the test is about
// values, not lateness (run_test.go and windows_test.go check that).

// aggEvent is what the generator knows of an event: its time in ms (the
// truth the unit's text encodes), its group key as the output writes it,
// and the fields the metrics read.
type aggEvent struct {
	ms       int64
	key      string // JSON of {"service":...,"shard":...}
	v        float64
	hasV     bool // v is a JSON number within float64's range
	vCmp     float64
	hasCmp   bool // v is a JSON number: vCmp its value, ±Inf past the range, for where
	ok, hasO bool // "ok" is a JSON boolean
	tagNull  bool // "tag" is JSON null
	lat      float64
	hasLat   bool // lat.ms is a JSON number
	line     string
}

// timeText writes ms in unit with digits below the millisecond that the
// pipeline must floor away.
func timeText(rng *rand.Rand, ms int64, unit string) string {
	switch unit {
	case "ms":
		switch rng.IntN(3) {
		case 0:
			return strconv.FormatInt(ms, 10)
		case 1:
			return fmt.Sprintf("%d.%03d", ms, rng.IntN(1000))
		default: // an exponent: 1.795341600123e12, with a fraction past it
			s := strconv.FormatInt(ms, 10)
			return fmt.Sprintf("%s.%s%de%d", s[:1], s[1:], rng.IntN(10), len(s)-1)
		}
	case "s":
		return fmt.Sprintf("%d.%03d%d", ms/1000, ms%1000, rng.IntN(1000))
	case "us":
		return strconv.FormatInt(ms*1000+rng.Int64N(1000), 10)
	case "ns":
		return strconv.FormatInt(ms*1_000_000+rng.Int64N(1_000_000), 10)
	case "rfc3339":
		zone := time.FixedZone("", []int{0, 5*3600 + 1800, -8 * 3600}[rng.IntN(3)])
		t := time.UnixMilli(ms).Add(time.Duration(rng.Int64N(1_000_000))).In(zone)
		return `"` + t.Format(time.RFC3339Nano) + `"`
	}
	panic(unit)
}

func aggEvents(rng *rand.Rand, n int, unit string) []aggEvent {
	t0 := int64(1795341600000) // 2026-11-22T10:00:00Z
	evs := make([]aggEvent, 0, n)
	for i := range n {
		e := aggEvent{ms: t0 + int64(i)*37 + rng.Int64N(1600) - 800}
		service := []string{"a", "b", "c"}[rng.IntN(3)]
		rare := rng.IntN(150) == 0 // no numeric v, no failure: metrics with no value
		if rare {
			service = "rare"
		}
		var shard string
		switch rng.IntN(4) {
		case 0:
			shard = "true"
		case 1: // missing: null in the key
		default:
			shard = strconv.Itoa(1 + rng.IntN(2))
		}
		key := map[string]any{"service": service, "shard": nil}
		if shard == "true" {
			key["shard"] = true
		} else if shard != "" {
			key["shard"], _ = strconv.Atoi(shard)
		}
		kb, _ := json.Marshal(key)
		e.key = string(kb)

		var fields []string
		if unit != "" {
			fields = append(fields, `"ts":`+timeText(rng, e.ms, unit))
		} else {
			fields = append(fields, `"at":`+strconv.FormatInt(e.ms, 10))
		}
		fields = append(fields, fmt.Sprintf(`"service":%q`, service))
		if shard != "" {
			fields = append(fields, `"shard":`+shard)
		}
		// v over the whole range the percentiles cover, and past it.
		var vText string
		switch r := rng.IntN(40); {
		case rare:
			vText = `"n/a"`
		case r == 0:
			vText = `"12"` // a string: not a number
		case r == 1: // missing
		case r == 2:
			vText = "null"
		case r == 3:
			vText = "0"
		case r == 4:
			vText = strconv.FormatFloat(-rng.Float64()*1000, 'g', 6, 64) // ignored by percentiles only
		case r == 5:
			// 1e400 and -1e999 are JSON but past float64: no value
			// (ParseFloat fails below, as the pipeline ignores them).
			vText = []string{"0.001", "1e9", "1000000000", "0.0004", "1E-3", "2.5e+2", "1e400", "-1e999", "-0"}[rng.IntN(9)]
		case r < 20:
			vText = strconv.FormatInt(rng.Int64N(5000), 10)
		default:
			vText = strconv.FormatFloat(math.Pow(10, -3+rng.Float64()*12), 'g', 1+rng.IntN(8), 64)
		}
		if vText != "" {
			fields = append(fields, `"v":`+vText)
			if f, err := strconv.ParseFloat(vText, 64); vText[0] != '"' && vText != "null" {
				e.vCmp, e.hasCmp = f, true // ±Inf with err past the range
				if err == nil {
					e.v, e.hasV = f, true
				}
			}
		}
		switch r := rng.IntN(5); {
		case rare:
			e.ok, e.hasO = true, true
			fields = append(fields, `"ok":true`)
		case r == 0: // missing
		case r == 1:
			fields = append(fields, `"ok":"false"`) // a string: not a boolean
		default:
			e.ok, e.hasO = rng.IntN(3) > 0, true
			fields = append(fields, `"ok":`+strconv.FormatBool(e.ok))
		}
		switch rng.IntN(3) {
		case 0:
			e.tagNull = true
			fields = append(fields, `"tag":null`)
		case 1:
			fields = append(fields, `"tag":"x"`)
		}
		if rng.IntN(4) > 0 {
			e.lat, e.hasLat = float64(rng.IntN(100000))/100, true
			fields = append(fields, fmt.Sprintf(`"lat":{"ms":%v,"unit":"ms"}`, e.lat))
		} else {
			fields = append(fields, `"lat":{"s":1}`)
		}
		rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
		e.line = "{" + strings.Join(fields, ",") + "}"
		evs = append(evs, e)
	}
	return evs
}

const aggsMetricsYAML = `    group_by: [service, shard]
    window: {type: tumbling, size: 10s}
    metrics:
      - {name: n, agg: count}
      - {name: big, agg: count, where: 'v > 1000'}
      - {name: failed, agg: count, where: 'ok == false'}
      - {name: untagged, agg: count, where: 'tag == null'}
      - {name: total, agg: sum, field: v}
      - {name: mean, agg: avg, field: v}
      - {name: lo, agg: min, field: v}
      - {name: hi, agg: max, field: v}
      - {name: p50, agg: percentile, field: v, q: 0.5}
      - {name: p99, agg: percentile, field: v, q: 0.99}
      - {name: p999, agg: percentile, field: v, q: 0.999}
      - {name: top, agg: percentile, field: v, q: 1}
      - {name: ok_p90, agg: percentile, field: lat.ms, q: 0.9, where: 'ok == true'}
      - {name: big_per_failed, agg: ratio, of: big, over: failed}
      - {name: big_per_s, agg: rate, of: big}
`

// aggsRef computes every window's metrics from the events as the
// generator wrote them: map from key and window start to metrics.
func aggsRef(evs []aggEvent) map[string]map[string]*float64 {
	type win struct{ evs []aggEvent }
	wins := map[string]*win{}
	for _, e := range evs {
		id := e.key + " " + time.UnixMilli(e.ms-e.ms%10000).UTC().Format(time.RFC3339)
		if wins[id] == nil {
			wins[id] = &win{}
		}
		wins[id].evs = append(wins[id].evs, e)
	}
	rank := func(vals []float64, q float64) *float64 {
		if len(vals) == 0 {
			return nil
		}
		sort.Float64s(vals)
		r := int(math.Ceil(q * float64(len(vals)))) // HdrHistogram's nearest rank
		return fp(vals[max(r, 1)-1])
	}
	out := map[string]map[string]*float64{}
	for id, w := range wins {
		var n, nBig, failed, untagged float64
		var vs, lats []float64
		sum := new(big.Float).SetPrec(4000)
		for _, e := range w.evs {
			n++
			if e.hasV {
				vs = append(vs, e.v)
				sum.Add(sum, new(big.Float).SetFloat64(e.v))
			}
			if e.hasCmp && e.vCmp > 1000 {
				nBig++
			}
			if e.hasO && !e.ok {
				failed++
			}
			if e.tagNull {
				untagged++
			}
			if e.hasLat && e.hasO && e.ok {
				lats = append(lats, e.lat)
			}
		}
		m := map[string]*float64{"n": fp(n), "big": fp(nBig), "failed": fp(failed), "untagged": fp(untagged),
			"big_per_s": fp(nBig / 10), "big_per_failed": nil,
			"total": nil, "mean": nil, "lo": nil, "hi": nil}
		if failed > 0 {
			m["big_per_failed"] = fp(nBig / failed)
		}
		if len(vs) > 0 {
			s, _ := sum.Float64()
			m["total"] = fp(s)
			m["mean"] = fp(exactMean(sum, len(vs)))
			m["lo"], m["hi"] = fp(vs[0]), fp(vs[0])
			for _, v := range vs {
				*m["lo"], *m["hi"] = min(*m["lo"], v), max(*m["hi"], v)
			}
		}
		m["p50"] = rank(slices.Clone(vs), 0.5) // negative values too, ranked below the others
		m["p99"] = rank(slices.Clone(vs), 0.99)
		m["p999"] = rank(slices.Clone(vs), 0.999)
		m["top"] = rank(slices.Clone(vs), 1)
		m["ok_p90"] = rank(lats, 0.9)
		out[id] = m
	}
	return out
}

func TestEveryAggAndUnitMatchesReference(t *testing.T) {
	for _, unit := range []string{"ms", "s", "us", "ns", "rfc3339", ""} {
		name := unit
		if name == "" {
			name = "record-timestamp"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(len(unit)), 11))
			evs := aggEvents(rng, 4000, unit)
			lines := make([]string, len(evs))
			for i, e := range evs {
				lines[i] = e.line
			}
			c := newCLI(t)
			dir := t.TempDir()
			events, cfg := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "aggs.yaml")
			timeYAML := "    time: {field: ts, unit: " + unit + ", max_out_of_order: 2s, allowed_lateness: 0s}\n"
			produceArgs := []string{"produce", "events", events}
			if unit == "" { // the record timestamp, with a watermark over it
				timeYAML = "    time: {max_out_of_order: 2s, allowed_lateness: 0s}\n"
				produceArgs = append(produceArgs, "--timestamp-field", "at")
			}
			os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
			os.WriteFile(cfg, []byte("pipelines:\n  - name: aggs\n    source: {topic: events}\n"+timeYAML+aggsMetricsYAML), 0o644)
			c.ok("", "topic", "create", "events", "--partitions", "1")
			c.ok("", produceArgs...)
			out := parseRunOutput(t, c.ok("", "run", cfg, "--until-end"))

			want := aggsRef(evs)
			stats := out[len(out)-1]
			if stats.Type != "stats" || stats.Records != int64(len(evs)) || stats.Events != int64(len(evs)) || stats.LateDropped != 0 || len(stats.Rejected) != 0 {
				t.Fatalf("stats %+v, want %d records, all of them events", stats, len(evs))
			}
			if len(out)-1 != len(want) {
				t.Fatalf("%d windows, the reference has %d", len(out)-1, len(want))
			}
			checked := map[string]int{}
			for _, o := range out[:len(out)-1] {
				kb, _ := json.Marshal(o.Key)
				id := string(kb) + " " + o.WindowStart
				w, ok := want[id]
				if !ok || o.Revision != 0 {
					t.Fatalf("window %s revision %d: not in the reference", id, o.Revision)
				}
				for name, wv := range w {
					gv, ok := o.Metrics[name]
					if !ok || (gv == nil) != (wv == nil) {
						t.Fatalf("%s: %s = %v, want %v", id, name, show(gv), show(wv))
					}
					if wv == nil {
						checked[name+" null"]++
						continue
					}
					checked[name]++
					if strings.HasPrefix(name, "p") || name == "top" || name == "ok_p90" {
						// The bucket's highest value, or the maximum if that
						// is lower: at or above the exact one (or it rounded
						// to the histogram's unit, 1e-6), within 0.1% of it.
						if *gv < min(*wv, math.Round(*wv*agg.HistogramScale)/agg.HistogramScale) || math.Abs(*gv-*wv) > 0.001*math.Abs(*wv) {
							t.Fatalf("%s: %s = %v, exact %v", id, name, *gv, *wv)
						}
						continue
					}
					if (name == "total" || name == "mean") && *gv != *wv {
						t.Fatalf("%s: %s = %v, the exact %v", id, name, *gv, *wv) // correctly rounded, both
					}
					if *gv != *wv && math.Abs(*gv-*wv) > 1e-15*math.Abs(*wv) {
						t.Fatalf("%s: %s = %v, reference %v", id, name, *gv, *wv)
					}
				}
			}
			// The data reached every case: nulls and values of each metric.
			for _, name := range []string{"total", "big_per_failed", "p50"} {
				if checked[name] == 0 || checked[name+" null"] == 0 {
					t.Fatalf("data did not exercise %s both with and without values: %v", name, checked)
				}
			}
			t.Logf("%d windows, %v", len(want), checked)
		})
	}
}

func show(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

// TestAvgWhereTheSumOverflows: avg is the exact mean, so two values near
// float64's top average to themselves, where their sum is null (it does
// not fit in a float64).
func TestAvgWhereTheSumOverflows(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	events, cfg := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "avg.yaml")
	os.WriteFile(events, []byte(`{"ts":1000,"v":1.7e308}
{"ts":2000,"v":1.7e308}
{"ts":61000,"v":-1.7e308}
{"ts":62000,"v":-1.5e308}
{"ts":63000,"v":1e308}
`), 0o644)
	os.WriteFile(cfg, []byte(`pipelines:
  - name: avg
    source: {topic: events}
    time: {field: ts}
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: total, agg: sum, field: v}
      - {name: mean, agg: avg, field: v}
`), 0o644)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	c.ok("", "produce", "events", events)
	got := strings.Split(strings.TrimSpace(c.ok("", "run", cfg, "--until-end")), "\n")
	want := []string{`"metrics":{"total":null,"mean":1.7e+308}`, `"metrics":{"total":null,"mean":-7.333333333333333e+307}`}
	if len(got) != 3 {
		t.Fatalf("output:\n%s", strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Fatalf("window %d: %s, want %s", i, got[i], w)
		}
	}
}
