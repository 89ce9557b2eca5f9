package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Python reference (testdata/reference/reference.py) is SPEC's
// semantics written a second time, from SPEC alone, in another language
// and the simplest way: record by record, exact fractions, sorted values.
// The Go references of the other tests share the Go code's reading of
// SPEC; this one shares nothing with it.

var pyRefDir = filepath.Join("..", "..", "testdata", "reference")

// pyRef runs one of the reference's scripts, for 5 minutes at most, and
// returns its output.
func pyRef(t *testing.T, py, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{filepath.Join(pyRefDir, script)}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", script, args, err, stderr.String())
	}
	return string(out)
}

type pyRefWindow struct {
	name, yaml string
	args       []string // reference.py's window flags
}

var pyRefWindows = []pyRefWindow{
	{"tumbling", "{type: tumbling, size: 1m}", []string{"--window", "tumbling", "--size", "60000"}},
	{"hopping", "{type: hopping, size: 5m, advance: 1m}", []string{"--window", "hopping", "--size", "300000", "--advance", "60000"}},
	{"session", "{type: session, gap: 30s}", []string{"--window", "session", "--gap", "30000"}},
}

// config writes SPEC's api-health pipeline with window w, and with its
// dead-letter and late topics, to dir.
func (w pyRefWindow) config(t *testing.T, dir string) string {
	t.Helper()
	y := strings.Replace(apiHealthYAML, "{type: tumbling, size: 1m}", w.yaml, 1) + sideTopicsYAML
	return writeFile(t, filepath.Join(dir, w.name+".yaml"), y)
}

// sideTopicsYAML, appended to a pipeline, gives it its dead-letter and late
// topics, which compareSideTopics reads.
const sideTopicsYAML = "    dlq: true\n    late_topic: true\n"

// writeFile writes data to name and returns name.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// runOnePartition produces events to a new one-partition topic and returns
// the CLI and what `run cfg --until-end` printed.
func runOnePartition(t *testing.T, events, cfg string) (*cli, []refOut) {
	t.Helper()
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	c.ok("", "produce", "events", events)
	return c, parseRunOutput(t, c.ok("", "run", cfg, "--until-end"))
}

// TestPythonReference: on a one-partition topic, `run --until-end` prints
// what the Python reference prints, line by line — every window, revision,
// alert transition and the stats — and writes to its dead-letter and late
// topics what the reference says they hold, for tumbling, hopping and
// session windows, on events with jitter, late and too-late records,
// rejected records of every reason and two incidents.
func TestPythonReference(t *testing.T) {
	py := need(t, "python3")
	dir := t.TempDir()
	for _, w := range pyRefWindows {
		t.Run(w.name, func(t *testing.T) {
			// Each subtest has its own data directory and files: two at a
			// time on two CPUs.
			t.Parallel()
			n, step := "40000", "150" // ~50 minutes: both incidents
			if w.name == "session" {
				n, step = "8000", "12000" // sparse enough for sessions to end
			}
			events := writeFile(t, filepath.Join(dir, w.name+".jsonl"), pyRef(t, py, "gen.py", "1", n, step))
			c, got := runOnePartition(t, events, w.config(t, dir))
			side := filepath.Join(dir, w.name+".side.jsonl")
			want := parseRunOutput(t, pyRef(t, py, "reference.py", append(w.args, "--side", side, "one", events)...))
			compareOutputs(t, got, want)
			compareSideTopics(t, c, "api-health", side)

			kinds := map[string]int{}
			for _, o := range got {
				kinds[o.Type+"/"+o.State]++
				if o.Revision > 0 {
					kinds["revision"]++
				}
			}
			st := got[len(got)-1]
			if kinds["window/"] == 0 || kinds["revision"] == 0 || st.LateDropped == 0 || len(st.Rejected) != 4 ||
				w.name == "tumbling" && (kinds["alert/firing"] < 2 || kinds["alert/resolved"] < 2) {
				t.Fatalf("the data did not exercise everything: %v, stats %+v", kinds, st)
			}
			t.Logf("%d lines: %v; stats %+v", len(got), kinds, st)
		})
	}
}

// compareSideTopics checks what pipeline wrote to its dead-letter and late
// topics against what the reference wrote to side: each rejected record's
// partition, offset and reason, each too-late record's partition, offset,
// event time and the watermark that refused it.
func compareSideTopics(t *testing.T, c *cli, pipeline, side string) {
	t.Helper()
	type sideRecord struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		Reason    string `json:"reason,omitempty"`
		EventTime string `json:"event_time,omitempty"`
		Watermark string `json:"watermark,omitempty"`
	}
	var got []sideRecord
	for _, topic := range []string{"dlq", "late"} {
		out := strings.TrimSpace(c.ok("", "consume", pipeline+"."+topic))
		for _, line := range strings.Split(out, "\n") {
			var r struct {
				Value struct {
					Reason    string `json:"reason"`
					EventTime string `json:"event_time"`
					Watermark string `json:"watermark"`
					Record    struct {
						Topic     string `json:"topic"`
						Partition int32  `json:"partition"`
						Offset    int64  `json:"offset"`
					} `json:"record"`
				} `json:"value"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s.%s: %q: %v", pipeline, topic, line, err)
			}
			if r.Value.Record.Topic != "events" {
				t.Fatalf("%s.%s: %q: not a record of events", pipeline, topic, line)
			}
			got = append(got, sideRecord{topic, r.Value.Record.Partition, r.Value.Record.Offset, r.Value.Reason, r.Value.EventTime, r.Value.Watermark})
		}
	}
	byPlace := func(a, b sideRecord) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	}
	slices.SortFunc(got, byPlace)
	b, err := os.ReadFile(side)
	if err != nil {
		t.Fatal(err)
	}
	var want []sideRecord
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r sideRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	slices.SortFunc(want, byPlace)
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) {
			t.Fatalf("%d dead-letter and late records, the reference has %d", len(got), len(want))
		}
		if got[i] != want[i] {
			t.Fatalf("side record %d: %+v, reference %+v", i, got[i], want[i])
		}
	}
}

// TestPythonReferenceFinalResults: over 3 and 6 partitions, keyed by a
// group-by field or not, each tumbling and hopping window's last revision
// holds what the reference computes from `fastflow consume`'s records: the
// events each partition's own watermark accepted, merged per key; and the
// dead-letter and late topics hold each partition's rejected and too-late
// records, the latter with that partition's watermark. For the api-health
// pipeline and the every-agg one (times in us).
func TestPythonReferenceFinalResults(t *testing.T) {
	py := need(t, "python3")
	dir := t.TempDir()
	apiEvents := writeFile(t, filepath.Join(dir, "api.jsonl"), pyRef(t, py, "gen.py", "2", "40000", "60"))
	everyEvents := writeFile(t, filepath.Join(dir, "every.jsonl"), pyRef(t, py, "gen.py", "4", "20000", "100", "every-agg", "us"))
	everyCfg := writeFile(t, filepath.Join(dir, "every.yaml"), strings.Replace(everyAggYAML, "UNIT", "us", 1)+sideTopicsYAML)
	type finalCase struct {
		name, pipeline, events, cfg, keyField string
		refArgs                               []string
	}
	var cases []finalCase
	for _, w := range pyRefWindows[:2] {
		cases = append(cases, finalCase{"api-health-" + w.name, "api-health", apiEvents, w.config(t, dir), "service", w.args})
	}
	cases = append(cases, finalCase{"every-agg", "every-agg", everyEvents, everyCfg, "region",
		[]string{"--pipeline", "every-agg", "--unit", "us", "--size", "10000"}})
	for _, fc := range cases {
		for _, parts := range []string{"3", "6"} {
			for _, keyed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s-partitions/keyed=%v", fc.name, parts, keyed), func(t *testing.T) {
					t.Parallel()
					c := newCLI(t)
					c.ok("", "topic", "create", "events", "--partitions", parts)
					produce := []string{"produce", "events", fc.events}
					if keyed {
						produce = append(produce, "--key-field", fc.keyField)
					}
					c.ok("", produce...)
					consumed := writeFile(t, filepath.Join(t.TempDir(), "consumed.jsonl"), c.ok("", "consume", "events"))
					got := finalRevisions(t, parseRunOutput(t, c.ok("", "run", fc.cfg, "--until-end")))
					side := filepath.Join(filepath.Dir(consumed), "side.jsonl")
					want := finalRevisions(t, parseRunOutput(t, pyRef(t, py, "reference.py", append(fc.refArgs, "--side", side, "final", consumed)...)))
					compareOutputs(t, got, want)
					compareSideTopics(t, c, fc.pipeline, side)
					if st := got[len(got)-1]; st.LateDropped == 0 {
						t.Fatalf("no event was dropped as too late: %+v", st)
					}
				})
			}
		}
	}
}

// finalRevisions keeps each window's last revision, numbered 0, ordered by
// end, start and key, then the stats line; alerts go.
func finalRevisions(t *testing.T, lines []refOut) []refOut {
	t.Helper()
	type id struct{ key, start string }
	last := map[id]refOut{}
	var stats []refOut
	for _, o := range lines {
		switch o.Type {
		case "window":
			o.Revision = 0
			last[id{fmt.Sprint(o.Key), o.WindowStart}] = o
		case "stats":
			stats = append(stats, o)
		}
	}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	var res []refOut
	for _, o := range last {
		res = append(res, o)
	}
	slices.SortFunc(res, func(a, b refOut) int {
		if c := at(a.WindowEnd).Compare(at(b.WindowEnd)); c != 0 {
			return c
		}
		if c := at(a.WindowStart).Compare(at(b.WindowStart)); c != 0 {
			return c
		}
		return strings.Compare(fmt.Sprint(a.Key), fmt.Sprint(b.Key))
	})
	return append(res, stats...)
}

// everyAggYAML is reference.py's every-agg pipeline: every aggregate,
// where with every operator and each type of literal, nested fields, a
// group key of two fields, and UNIT for the time field's unit.
const everyAggYAML = `pipelines:
  - name: every-agg
    source: {topic: events, start: earliest}
    time: {field: meta.t, unit: UNIT, max_out_of_order: 2s, allowed_lateness: 10s}
    group_by: [region, host.shard]
    window: {type: tumbling, size: 10s}
    metrics:
      - {name: n, agg: count}
      - {name: big, agg: count, where: 'v >= 100'}
      - {name: small, agg: count, where: 'v < 1.5'}
      - {name: not_eu, agg: count, where: 'region != "eu"'}
      - {name: before_m, agg: count, where: 'region <= "m"'}
      - {name: flagged, agg: count, where: 'flag == true'}
      - {name: unflagged, agg: count, where: 'flag != true'}
      - {name: noted_null, agg: count, where: 'note == null'}
      - {name: deep, agg: count, where: 'host.load > 0.5'}
      - {name: id_is, agg: count, where: 'id == 9007199254740993'}
      - {name: id_above, agg: count, where: 'id > 9007199254740992'}
      - {name: total, agg: sum, field: v}
      - {name: eu_total, agg: sum, field: v, where: 'region == "eu"'}
      - {name: mean, agg: avg, field: v}
      - {name: lo, agg: min, field: v}
      - {name: hi, agg: max, field: v}
      - {name: p_50, agg: percentile, field: v, q: 0.5}
      - {name: p_99, agg: percentile, field: v, q: 0.99}
      - {name: p_1, agg: percentile, field: v, q: 0.01}
      - {name: p_lat, agg: percentile, field: host.lat, q: 0.999}
      - {name: share, agg: ratio, of: big, over: n}
      - {name: flag_share, agg: ratio, of: flagged, over: big}
      - {name: per_s, agg: rate, of: n}
    alerts:
      - {name: many-big, when: 'big >= 3', for: 2, severity: warning}
      - {name: low-min, when: 'lo < 0', severity: info}
    sinks:
      - {type: stdout}
`

// TestPythonReferenceEveryAgg: on a one-partition topic, `run --until-end`
// of the every-agg pipeline prints what the Python reference prints, line
// by line, for each time unit, on events whose times are written in the
// unit's forms (fractions, exponents, zones) and whose values are of every
// kind (integers, decimals, negatives, zeros, strings, booleans, null,
// missing, past float64's range, malformed, a name twice), group-by values
// among them objects and arrays, some with what a strict parser rejects
// inside (NaN, 01, a raw control character).
func TestPythonReferenceEveryAgg(t *testing.T) {
	py := need(t, "python3")
	dir := t.TempDir()
	for _, unit := range []string{"ms", "s", "us", "ns", "rfc3339"} {
		t.Run(unit, func(t *testing.T) {
			t.Parallel()
			events := writeFile(t, filepath.Join(dir, unit+".jsonl"), pyRef(t, py, "gen.py", "3", "20000", "100", "every-agg", unit))
			cfg := writeFile(t, filepath.Join(dir, unit+".yaml"), strings.Replace(everyAggYAML, "UNIT", unit, 1))
			_, got := runOnePartition(t, events, cfg)
			want := parseRunOutput(t, pyRef(t, py, "reference.py", "--pipeline", "every-agg", "--unit", unit, "--size", "10000", "one", events))
			compareOutputs(t, got, want)

			seen := map[string]int{}
			for _, o := range got {
				seen[o.Type+"/"+o.Alert+"/"+o.State]++
				if o.Revision > 0 {
					seen["revision"]++
				}
				if o.Type == "window" && o.Key["host.shard"] == nil {
					seen["null key"]++
				}
				for name, v := range o.Metrics {
					if v == nil {
						seen["null "+name]++
					} else if *v < 0 {
						seen["negative "+name]++
					}
				}
			}
			st := got[len(got)-1]
			for _, k := range []string{"revision", "null key", "alert/many-big/firing", "alert/many-big/resolved",
				"alert/low-min/firing", "alert/low-min/resolved", "null eu_total", "null flag_share", "null mean",
				"negative lo", "negative p_1"} {
				if seen[k] == 0 {
					t.Errorf("the data did not exercise %q: %v", k, seen)
				}
			}
			if st.LateDropped == 0 || len(st.Rejected) != 4 {
				t.Errorf("the data did not exercise rejections and late drops: %+v", st)
			}
		})
	}
}
