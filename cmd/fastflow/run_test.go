package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// apiHealthYAML is SPEC's example pipeline, with the stdout sink only.
const apiHealthYAML = `pipelines:
  - name: api-health
    source: {topic: events, start: earliest}
    time: {field: ts, unit: ms, max_out_of_order: 5s, allowed_lateness: 1m}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: request_count, agg: count}
      - {name: error_count, agg: count, where: 'status == "error"'}
      - {name: error_rate, agg: ratio, of: error_count, over: request_count}
      - {name: avg_response_time, agg: avg, field: response_time}
      - {name: max_response_time, agg: max, field: response_time}
      - {name: p95_response_time, agg: percentile, field: response_time, q: 0.95}
      - {name: throughput, agg: rate, of: request_count}
    alerts:
      - {name: high-error-rate, when: 'error_rate > 0.05', for: 2, severity: critical}
      - {name: slow-p95, when: 'p95_response_time > 2000', severity: warning}
    sinks:
      - {type: stdout}
`

// genEvents makes n JSON lines of API events over ~n/100 minutes: jitter
// (out of order within max_out_of_order), late events (within allowed
// lateness), too-late ones, malformed lines, an error incident on
// payments and a latency incident on search.
func genEvents(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 99))
	services := []string{"payments", "search", "auth", "checkout"}
	t0 := int64(1795341600000) // 2026-11-22T10:00:00Z
	var lines []string
	for i := 0; i < n; i++ {
		base := t0 + int64(i)*600 // ~100 events a minute
		ts := base + rng.Int64N(6000) - 3000
		switch {
		case i%173 == 50:
			ts = base - 40_000 // late: within the minute of lateness
		case i%311 == 77:
			ts = base - 200_000 // too late
		}
		s := services[rng.IntN(len(services))]
		minute := (base - t0) / 60000
		status := "ok"
		pErr := 0.02
		if s == "payments" && minute >= 3 && minute < 6 {
			pErr = 0.35
		}
		if rng.Float64() < pErr {
			status = "error"
		}
		rt := math.Round(rng.ExpFloat64()*120*10) / 10
		if s == "search" && minute >= 7 && minute < 9 {
			rt = math.Round((2500+rng.Float64()*3000)*10) / 10
		}
		var line string
		switch {
		case i%401 == 3:
			line = `{"ts": ` + fmt.Sprint(ts) + `, "service": "` + s + `", broken`
		case i%509 == 5:
			line = `[1, 2, 3]`
		case i%457 == 7:
			line = fmt.Sprintf(`{"service":%q,"status":%q,"response_time":%v}`, s, status, rt)
		case i%487 == 9:
			line = fmt.Sprintf(`{"ts":"%d","service":%q,"status":%q,"response_time":%v}`, ts, s, status, rt)
		case i%97 == 11:
			line = fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q}`, ts, s, status) // no response_time
		case i%587 == 17:
			// Not JSON, though fastjson's parser takes it.
			line = fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q,"response_time":%s}`, ts, s, status,
				[]string{"NaN", "01", ".5", "Infinity"}[i/587%4])
		case i%61 == 13:
			// Escaped strings: the same service and status as plainly written.
			line = fmt.Sprintf(`{"ts":%d,"service":"\u%04x%s","status":"%s\u%04x","response_time":%v}`,
				ts, s[0], s[1:], status[:len(status)-1], status[len(status)-1], rt)
		default:
			line = fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q,"response_time":%v}`, ts, s, status, rt)
		}
		lines = append(lines, line)
	}
	return lines
}

// --- The reference: SPEC's semantics for one partition, record by record,
// written independently of package pipeline and as plainly as possible.

type refEvent struct {
	err   bool
	rt    float64
	hasRT bool
}

type refWin struct {
	refSpan
	events []refEvent
}

// refSpan is what the reference implementations keep of a window besides
// its contents: its span and key, and whether it was emitted, with which
// revision, and changed since.
type refSpan struct {
	start, end     int64
	key            string
	emitted, dirty bool
	rev            int
}

func (s *refSpan) span() *refSpan { return s }

// emitDueRef emits the windows that watermark wm closed and that were not
// emitted yet or changed since, in order of end, start and key, a changed
// one with the next revision.
func emitDueRef[W interface{ span() *refSpan }](wins []W, wm int64, emit func(W)) {
	var due []W
	for _, w := range wins {
		if s := w.span(); s.end <= wm && (!s.emitted || s.dirty) {
			due = append(due, w)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := due[i].span(), due[j].span()
		if a.end != b.end {
			return a.end < b.end
		}
		if a.start != b.start {
			return a.start < b.start
		}
		return a.key < b.key
	})
	for _, w := range due {
		s := w.span()
		if s.emitted {
			s.rev++
		}
		s.emitted, s.dirty = true, false
		emit(w)
	}
}

type refOut struct {
	Type        string              `json:"type"`
	Pipeline    string              `json:"pipeline"`
	Key         map[string]any      `json:"key"`
	WindowStart string              `json:"window_start"`
	WindowEnd   string              `json:"window_end"`
	Revision    int                 `json:"revision"`
	Metrics     map[string]*float64 `json:"metrics"`
	Alert       string              `json:"alert"`
	Severity    string              `json:"severity"`
	State       string              `json:"state"`
	Metric      string              `json:"metric"`
	Value       *float64            `json:"value"`
	Threshold   float64             `json:"threshold"`
	Records     int64               `json:"records"`
	Events      int64               `json:"events"`
	Rejected    map[string]int64    `json:"rejected"`
	LateDropped int64               `json:"late_dropped"`
}

func fp(v float64) *float64 { return &v }

// exactMean is the exact sum divided by n, rounded once (Python's
// statistics.mean), as the pipeline's avg is.
func exactMean(sum *big.Float, n int) float64 {
	m, _ := new(big.Float).SetPrec(53).Quo(sum, new(big.Float).SetInt64(int64(n))).Float64()
	return m
}

// refRun runs SPEC's example pipeline over the records of one partition,
// record by record, emitting as the watermark moves. Given several
// partitions' records (each in offset order), it judges lateness by each
// partition's own watermark, as SPEC says, and emits every window once, at
// the end: when a window closes between the partitions' records depends on
// the engine's rounds, its final contents do not.
func refRun(partitions ...[]string) []refOut {
	const size, ooo, lateness = 60000, 5000, 60000
	wins := map[string]*refWin{}
	wm := int64(math.MinInt64) // the watermark that emits: the one partition's, or none until the end
	var out []refOut
	stats := refOut{Type: "stats", Pipeline: "api-health", Rejected: map[string]int64{}}
	type alertSt struct {
		firing bool
		hist   []bool
	}
	alerts := map[string]*alertSt{}
	ts := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
	emit := func(w *refWin) {
		o := refOut{Type: "window", Pipeline: "api-health", Key: map[string]any{"service": w.key},
			WindowStart: ts(w.start), WindowEnd: ts(w.end), Revision: w.rev, Metrics: map[string]*float64{}}
		n, errs := float64(len(w.events)), 0.0
		var rts []float64
		sum := new(big.Float).SetPrec(2000)
		for _, e := range w.events {
			if e.err {
				errs++
			}
			if e.hasRT {
				rts = append(rts, e.rt)
				sum.Add(sum, new(big.Float).SetFloat64(e.rt))
			}
		}
		o.Metrics["request_count"] = fp(n)
		o.Metrics["error_count"] = fp(errs)
		o.Metrics["error_rate"] = fp(errs / n)
		o.Metrics["throughput"] = fp(n / 60)
		if len(rts) > 0 {
			o.Metrics["avg_response_time"] = fp(exactMean(sum, len(rts)))
			sort.Float64s(rts)
			o.Metrics["max_response_time"] = fp(rts[len(rts)-1])
			rank := int(math.Ceil(0.95 * float64(len(rts))))
			o.Metrics["p95_response_time"] = fp(rts[max(rank, 1)-1])
		} else {
			o.Metrics["avg_response_time"], o.Metrics["max_response_time"], o.Metrics["p95_response_time"] = nil, nil, nil
		}
		out = append(out, o)
		for _, r := range []struct {
			name, sev, metric string
			th                float64
			forN              int
		}{{"high-error-rate", "critical", "error_rate", 0.05, 2}, {"slow-p95", "warning", "p95_response_time", 2000, 1}} {
			v := o.Metrics[r.metric]
			met := v != nil && *v > r.th
			st := alerts[r.name+w.key]
			if st == nil {
				st = &alertSt{}
				alerts[r.name+w.key] = st
			}
			if w.rev > 0 && len(st.hist) > 0 {
				st.hist[len(st.hist)-1] = met // a revision of the latest window
			} else {
				st.hist = append(st.hist, met)
			}
			streak := 0
			for k := len(st.hist) - 1; k >= 0 && st.hist[k]; k-- {
				streak++
			}
			firing := streak >= r.forN
			if firing != st.firing {
				st.firing = firing
				a := refOut{Type: "alert", Pipeline: "api-health", Alert: r.name, Severity: r.sev, Key: map[string]any{"service": w.key},
					WindowStart: ts(w.start), WindowEnd: ts(w.end), Metric: r.metric, Value: v, Threshold: r.th, State: "resolved"}
				if firing {
					a.State = "firing"
				}
				out = append(out, a)
			}
		}
	}
	emitDue := func() {
		emitDueRef(slices.Collect(maps.Values(wins)), wm, emit)
	}
	// judge takes one record of a partition whose clock is maxT and pwm.
	judge := func(line string, maxT, pwm *int64, emitting bool) {
		if strings.TrimSpace(line) == "" {
			return
		}
		stats.Records++
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			stats.Rejected["invalid_json"]++
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			stats.Rejected["not_object"]++
			return
		}
		raw, ok := obj["ts"]
		if !ok || raw == nil {
			stats.Rejected["missing_time"]++
			return
		}
		f, ok := raw.(float64)
		if !ok {
			stats.Rejected["bad_time"]++
			return
		}
		stats.Events++
		t := int64(math.Floor(f))
		if t > *maxT {
			*maxT = t
			*pwm = t - ooo
			if emitting {
				wm = *pwm
			}
		}
		start := int64(math.Floor(float64(t)/size)) * size
		end := start + size
		if *pwm >= end+lateness {
			stats.LateDropped++
			return
		}
		key, _ := obj["service"].(string)
		id := fmt.Sprint(start, key)
		w := wins[id]
		if w == nil {
			w = &refWin{refSpan: refSpan{start: start, end: end, key: key}}
			wins[id] = w
		}
		e := refEvent{}
		e.err = obj["status"] == "error"
		if rt, ok := obj["response_time"].(float64); ok {
			e.rt, e.hasRT = rt, true
		}
		w.events = append(w.events, e)
		if w.emitted {
			w.dirty = true
		}
		emitDue()
	}
	for _, lines := range partitions {
		maxT, pwm := int64(math.MinInt64), int64(math.MinInt64) // this partition's clock
		for _, line := range lines {
			judge(line, &maxT, &pwm, len(partitions) == 1)
		}
	}
	wm = math.MaxInt64
	emitDue()
	return append(out, stats)
}

func parseRunOutput(t *testing.T, out string) []refOut {
	t.Helper()
	var res []refOut
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o refOut
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("output line is not JSON: %q", line)
		}
		res = append(res, o)
	}
	return res
}

// compareOutputs checks got against the reference: same lines in the
// same order; counts and exact aggregates equal (floats to 1e-12), a
// percentile (p95_response_time, or a name starting p_) within 0.1% of the
// exact nearest-rank value and not below it; an alert's value as its
// metric's.
func compareOutputs(t *testing.T, got, want []refOut) {
	t.Helper()
	desc := func(o refOut) string {
		return fmt.Sprintf("%s %s %v %s..%s rev %d %s", o.Type, o.Alert, o.Key, o.WindowStart, o.WindowEnd, o.Revision, o.State)
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		if i >= len(got) || i >= len(want) {
			t.Fatalf("%d output lines, the reference has %d", len(got), len(want))
		}
		g, w := got[i], want[i]
		if desc(g) != desc(w) {
			t.Fatalf("line %d: got %s\n             want %s", i, desc(g), desc(w))
		}
		switch g.Type {
		case "window":
			if len(g.Metrics) != len(w.Metrics) {
				t.Fatalf("line %d (%s): metrics %v, reference %v", i, desc(g), g.Metrics, w.Metrics)
			}
			for name, wv := range w.Metrics {
				gv, ok := g.Metrics[name]
				if !ok {
					t.Fatalf("line %d (%s): no %s", i, desc(g), name)
				}
				if err := sameValue(name, gv, wv); err != nil {
					t.Fatalf("line %d (%s): %s: %v", i, desc(g), name, err)
				}
			}
		case "alert":
			if g.Metric != w.Metric || g.Threshold != w.Threshold || g.Severity != w.Severity {
				t.Fatalf("line %d: alert %+v, want %+v", i, g, w)
			}
			if err := sameValue(g.Metric, g.Value, w.Value); err != nil {
				t.Fatalf("line %d (%s): value: %v", i, desc(g), err)
			}
		case "stats":
			if g.Records != w.Records || g.Events != w.Events || g.LateDropped != w.LateDropped || fmt.Sprint(g.Rejected) != fmt.Sprint(w.Rejected) {
				t.Fatalf("stats %+v, want %+v", g, w)
			}
		}
	}
}

// sameValue reports how metric name's value got differs from the
// reference's want, if it does (compareOutputs).
func sameValue(name string, got, want *float64) error {
	if (got == nil) != (want == nil) {
		return fmt.Errorf("%v, reference %v", fmtValue(got), fmtValue(want))
	}
	if want == nil {
		return nil
	}
	tol := 1e-12
	if name == "p95_response_time" || strings.HasPrefix(name, "p_") {
		tol = 0.001
		if *got < *want {
			return fmt.Errorf("%v below the exact %v (HDR reports the bucket's highest value)", *got, *want)
		}
	}
	if math.Abs(*got-*want) > tol*math.Abs(*want) {
		return fmt.Errorf("%v, reference %v", *got, *want)
	}
	return nil
}

func fmtValue(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(*v)
}

// writeRunFiles writes lines as an events file and SPEC's pipeline as a
// config file in dir, for the CLI to produce and run.
func writeRunFiles(t *testing.T, dir string, lines []string) (events, cfg string) {
	t.Helper()
	events, cfg = filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "api.yaml")
	if err := os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(apiHealthYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return events, cfg
}

// TestRunMatchesReference runs the SPEC's pipeline through the binary on a
// one-partition topic and checks every output line against the reference.
func TestRunMatchesReference(t *testing.T) {
	c := newCLI(t)
	lines := genEvents(6000, 1)
	dir := t.TempDir()
	events, cfg := writeRunFiles(t, dir, lines)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	c.ok("", "produce", "events", "--key-field", "service", events)
	out := c.ok("", "run", cfg, "--until-end")
	got, want := parseRunOutput(t, out), refRun(lines)
	compareOutputs(t, got, want)

	// The data exercised what it should.
	kinds := map[string]int{}
	for _, o := range got {
		kinds[o.Type+"/"+o.State]++
		if o.Revision > 0 {
			kinds["revision"]++
		}
		if o.Type == "alert" {
			kinds[o.Alert]++
		}
	}
	st := got[len(got)-1]
	if kinds["alert/firing"] == 0 || kinds["alert/resolved"] == 0 || kinds["revision"] == 0 ||
		kinds["high-error-rate"] == 0 || kinds["slow-p95"] == 0 || st.LateDropped == 0 || len(st.Rejected) != 4 {
		t.Fatalf("the data did not exercise everything: %v, stats %+v", kinds, st)
	}
	t.Logf("%d lines: %v; stats %+v", len(got), kinds, st)

	golden := filepath.Join("..", "..", "testdata", "api-health.golden.jsonl")
	if *update {
		os.WriteFile(golden, []byte(out), 0o644)
	}
	if g, err := os.ReadFile(golden); err != nil {
		t.Fatalf("%v (run go test ./cmd/fastflow -run TestRunMatchesReference -update)", err)
	} else if !bytes.Equal(g, []byte(out)) {
		t.Fatalf("output differs from %s (run with -update if the change is intended)", golden)
	}
}

// TestSpecExampleVerbatim runs SPEC's example as written, where no
// Alertmanager may listen on 127.0.0.1:9093: stdout has what the
// stdout-only pipeline prints, the stats line SPEC's fields only (it
// had "sink_dropped" too when the webhook could not deliver, which goes
// to stderr), and the results topic every window and alert line.
func TestSpecExampleVerbatim(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	events, stdoutOnly := writeRunFiles(t, dir, genEvents(6000, 1))
	spec := filepath.Join("..", "..", "testdata", "spec-example.yaml") // stdout, a results topic, a webhook to 127.0.0.1:9093
	c.ok("", "topic", "create", "events", "--partitions", "3")
	c.ok("", "produce", "events", "--key-field", "service", events)
	want := c.ok("", "run", stdoutOnly, "--until-end")
	r := c.run("", "run", spec, "--until-end")
	if r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d; stdout differs from the stdout-only pipeline's: %t\nstderr: %s", r.code, r.stdout != want, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var stats map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &stats); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if fmt.Sprint(keys) != "[events late_dropped pipeline records rejected type]" {
		t.Fatalf("stats line %s: keys %v, want SPEC's", lines[len(lines)-1], keys)
	}
	alerts := strings.Count(r.stdout, `"type":"alert"`)
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:9093", time.Second); err == nil {
		conn.Close() // something listens there: the alerts may have been delivered
	} else if alerts == 0 || !strings.Contains(r.stderr, "sink_dropped="+strconv.Itoa(alerts)) {
		t.Fatalf("%d alerts; stderr lacks sink_dropped=%d:\n%s", alerts, alerts, r.stderr)
	}
	results := c.ok("", "consume", "api-health.results")
	if n := strings.Count(results, "\n"); n != len(lines)-1 {
		t.Fatalf("results topic holds %d records, the run printed %d results", n, len(lines)-1)
	}
}

// TestRunDeterministic: for a topic of 1, 3 or 6 partitions, the output is
// the same with 1, 2 or 3 workers, run after run.
func TestRunDeterministic(t *testing.T) {
	lines := genEvents(4000, 2)
	dir := t.TempDir()
	events, cfg := writeRunFiles(t, dir, lines)
	for _, parts := range []string{"1", "3", "6"} {
		c := newCLI(t)
		c.ok("", "topic", "create", "events", "--partitions", parts)
		c.ok("", "produce", "events", "--key-field", "service", events)
		first := c.ok("", "run", cfg, "--until-end", "--workers", "1")
		for _, w := range []string{"2", "3", "1"} {
			if out := c.ok("", "run", cfg, "--until-end", "--workers", w); out != first {
				t.Fatalf("%s partitions: output with %s workers differs from 1 worker", parts, w)
			}
		}
	}
}

// followLastMs is the time of followData's last events, an hour after
// the others: every partition's watermark passes the others' windows.
const followLastMs = int64(1795341600000) + 30000*600 + 3600_000

// followData produces 30,000 api events of seed into a 3-partition topic
// of c, keyed by service, with a last event an hour later in every
// partition so that following closes every window of the data. It
// returns the pipelines file and what a following run must print: the
// --until-end run's lines, without the stats line and the windows that
// only the end of --until-end closes.
func followData(t *testing.T, c *cli, seed uint64) (cfg string, want []string) {
	t.Helper()
	lines := genEvents(30000, seed)
	last := followLastMs
	for _, s := range []string{"payments", "search", "auth", "checkout"} {
		lines = append(lines, fmt.Sprintf(`{"ts":%d,"service":%q,"status":"ok","response_time":1}`, last, s))
	}
	events, cfg := writeRunFiles(t, t.TempDir(), lines)
	c.ok("", "topic", "create", "events", "--partitions", "3")
	c.ok("", "produce", "events", "--key-field", "service", events)
	lastWindow := time.UnixMilli(last).UTC().Truncate(time.Minute).Format(time.RFC3339)
	for _, l := range strings.Split(strings.TrimSpace(c.ok("", "run", cfg, "--until-end")), "\n") {
		if !strings.Contains(l, `"type":"stats"`) && !strings.Contains(l, `"window_start":"`+lastWindow) {
			want = append(want, l)
		}
	}
	return cfg, want
}

// TestRunSigtermRestart: a following run stopped by SIGTERM checkpoints;
// restarted, it continues so that the two runs together print exactly
// what one uninterrupted run prints — nothing lost, nothing twice.
func TestRunSigtermRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := followData(t, c, 3)
	checkStopRestart(t, c, cfg, want)
}

// TestRunTwiceRefused: a second following run of a pipeline on the same
// data directory fails at once, naming the process that runs it, instead
// of overwriting its checkpoints (both wrote DATA/pipelines/NAME.checkpoint
// through one temporary file, and one failed renaming it) and printing its
// results twice. A batch run (--until-end) keeps no checkpoint and may run
// beside it; once the first stops, a following run starts from its
// checkpoint.
func TestRunTwiceRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := followData(t, c, 4)
	first := c.cmd(t.Context(), "run", cfg, "--log-level", "info")
	var out, errs syncBuffer
	first.Stdout, first.Stderr = &out, &errs
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(errs.String(), "pipeline running") })
	r := c.run("", "run", cfg)
	if msg := fmt.Sprintf("pipeline api-health: already running on this data directory (pid %d holds ", first.Process.Pid); r.code != 1 || !strings.Contains(r.stderr, msg) {
		t.Fatalf("second following run: exit %d, stderr %q, want exit 1 and %q", r.code, r.stderr, msg)
	}
	if got := c.ok("", "run", cfg, "--until-end"); !strings.Contains(got, want[len(want)-1]+"\n") || !strings.Contains(got, `"type":"stats"`) {
		t.Fatalf("batch run beside the following one printed %d lines", strings.Count(got, "\n"))
	}
	waitFor(t, func() bool { return len(out.lines()) >= len(want) })
	first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Fatalf("first run after SIGTERM: %v\n%s", err, errs.String())
	}
	// The lock went with the first run: the next one starts (runFollowing
	// waits for it to run).
	runFollowing(t, c, cfg, syscall.SIGTERM, func([]string) bool { return true })
}

// TestRunSourceTopicRecreated: a following run whose source topic is
// deleted stops with an error naming it, instead of waiting forever for
// records that will not come; and its checkpoint is not applied to a
// topic created again under the same name (another topic ID): its offsets
// would skip the new topic's first records. The error says to delete the
// checkpoint to start over, and then the new topic's records are all read.
func TestRunSourceTopicRecreated(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, _ := followData(t, c, 5)
	run := c.cmd(t.Context(), "run", cfg, "--checkpoint-interval", "200ms", "--log-level", "info")
	var errs syncBuffer
	run.Stderr = &errs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// Once it has checkpointed.
	checkpoint := filepath.Join(c.dir, "pipelines", "api-health.checkpoint")
	waitFor(t, func() bool { _, err := os.Stat(checkpoint); return err == nil })
	c.ok("", "topic", "delete", "events")
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errs.String(), `source: unknown topic: "events" was deleted`) {
			t.Fatalf("run after its source was deleted: %v\n%s", err, errs.String())
		}
	case <-time.After(30 * time.Second):
		run.Process.Kill()
		t.Fatalf("run went on after its source was deleted:\n%s", errs.String())
	}
	c.ok("", "topic", "create", "events", "--partitions", "3")
	c.ok(`{"ts":1795341600000,"service":"a","status":"ok","response_time":1}`+"\n", "produce", "events")
	r := c.run("", "run", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "deleted since") || !strings.Contains(r.stderr, "delete it to start over") {
		t.Fatalf("run over the topic created again: exit %d: %s", r.code, r.stderr)
	}
	if err := os.Remove(checkpoint); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("", "run", cfg, "--until-end"); !strings.Contains(out, `"type":"stats","pipeline":"api-health","records":1,`) {
		t.Fatalf("run over the new topic: %s", out)
	}
}

// TestRunSigtermRestartSessions is TestRunSigtermRestart with session
// windows (gap 3s: many sessions per service, merging as events arrive),
// whose open sessions the checkpoint carries across the restart.
func TestRunSigtermRestartSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := windowData(t, c, 6, sessionYAML)
	checkStopRestart(t, c, cfg, want)
}

// sessionYAML is the api-health pipeline with session windows of gap 3s:
// many sessions per service, merging as events arrive.
var sessionYAML = strings.Replace(apiHealthYAML, "window: {type: tumbling, size: 1m}", "window: {type: session, gap: 3s}", 1)

// checkStopRestart runs the api-health pipeline of cfg following the log and checks
// that an uninterrupted run prints want, and that a run stopped by SIGTERM
// part way and restarted prints want too, between the two.
func checkStopRestart(t *testing.T, c *cli, cfg string, want []string) {
	t.Helper()
	follow := func(until func([]string) bool) []string {
		t.Helper()
		return runFollowing(t, c, cfg, syscall.SIGTERM, until)
	}
	t.Logf("expecting %d lines", len(want))
	all := func(got []string) bool { return len(got) >= len(want) }
	if got := follow(all); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("uninterrupted follow run differs from the batch run: %d lines vs %d", len(got), len(want))
	}
	// Stop part way, restart. The stop lands where the run happens to be;
	// if that is after the last result, try again from scratch.
	for attempt := 1; ; attempt++ {
		os.Remove(filepath.Join(c.dir, "pipelines", "api-health.checkpoint"))
		first := follow(func(got []string) bool { return len(got) >= len(want)/3 })
		if len(first) == len(want) {
			if attempt == 5 {
				t.Fatal("five stops all landed after the last result")
			}
			continue
		}
		// Until the last line: what is missing then shows as a difference.
		second := follow(func(got []string) bool {
			return len(first)+len(got) >= len(want) || len(got) > 0 && got[len(got)-1] == want[len(want)-1]
		})
		got := append(first, second...)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("after a restart at line %d, line %d differs:\n got %s\nwant %s", len(first), i, got[i], want[i])
				}
			}
			t.Fatalf("stop + restart printed %d lines, the uninterrupted run %d", len(got), len(want))
		}
		t.Logf("stopped after %d of %d lines, resumed with %d", len(first), len(want), len(second))
		return
	}
}

// TestRunGoesOnWhenCheckpointsFail: a following run whose periodic
// checkpoints fail (nothing may be written: ulimit -f 0, a full disk as a
// write sees it) logs the failure and goes on, printing every result; once
// space is back its stop's checkpoint is written, and a restart resumes
// from it with nothing printed twice. It used to exit at the first failed
// checkpoint (and serve with it).
func TestRunGoesOnWhenCheckpointsFail(t *testing.T) {
	c := newCLI(t)
	cfg, want := followData(t, c, 6)
	cmd := c.cmdNoSpace(t.Context(), "run", cfg, "--log-level", "info", "--checkpoint-interval", "20ms")
	got, logged := followCmd(t, cmd, syscall.SIGTERM, func(got []string) bool { return len(got) >= len(want) }, func() {
		// Space is back for the stop's checkpoint. sh exec'ed the run: the
		// same process.
		lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
			t.Fatal(err)
		}
	})
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("printed %d lines, the batch run %d", len(got), len(want))
	}
	if !strings.Contains(logged, "checkpoint failed") || !strings.Contains(logged, "file too large") {
		t.Fatalf("no failed checkpoint logged:\n%s", logged)
	}
	// The stop's checkpoint was written: a restart resumes from it.
	again, logged := followCmd(t, c.cmd(t.Context(), "run", cfg, "--log-level", "info"), syscall.SIGTERM,
		func([]string) bool { return true }, nil)
	if !strings.Contains(logged, "resuming from checkpoint") || len(again) != 0 {
		t.Fatalf("the restart printed %d lines; logged:\n%s", len(again), logged)
	}
}

// TestRunKillRestart: a following run killed with SIGKILL loses nothing.
// Three times in a row the run is killed part way and started again; each
// restart resumes from the last checkpoint (written every millisecond
// here) and prints the uninterrupted run's lines from there on: a replay
// of what the killed run printed after its last checkpoint (at least
// once), then what it had not reached. The checkpoint survives being
// killed while it is written. Its results topic, and the topic of a Kafka
// sink on another fastflow's Kafka listener, hold each line once.
func TestRunKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := followData(t, c, 4)
	checkKillRestart(t, c, cfg, apiHealthYAML, want, startKafkaBroker(t))
}

// TestRunKillRestartSessions is TestRunKillRestart with session windows.
func TestRunKillRestartSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := windowData(t, c, 7, sessionYAML)
	checkKillRestart(t, c, cfg, sessionYAML, want, nil)
}

// TestRunKilledBeforeItsFirstInterval: a following run writes its first
// checkpoint after its first round, not one interval after it starts, so
// that a run killed early resumes from a checkpoint (here the interval is
// an hour) instead of starting over, and its results topic holds each
// line once: starting over would write the killed run's lines again.
func TestRunKilledBeforeItsFirstInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := followData(t, c, 11)
	if err := os.WriteFile(cfg, []byte(apiHealthYAML+"      - {type: topic, topic: api-health.results}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(c.dir, "pipelines", "api-health.checkpoint")
	first, _ := followCmd(t, c.cmd(t.Context(), "run", cfg, "--log-level", "info", "--checkpoint-interval", "1h"), syscall.SIGKILL,
		func(got []string) bool { return len(got) > 0 && fileExists(ckpt) }, nil)
	again, logged := followCmd(t, c.cmd(t.Context(), "run", cfg, "--log-level", "info", "--checkpoint-interval", "1h"), syscall.SIGTERM,
		func(got []string) bool { return len(got) > 0 && got[len(got)-1] == want[len(want)-1] }, nil)
	if !strings.Contains(logged, "resuming from checkpoint") {
		t.Fatalf("the restart printed %d of %d lines (the killed run %d); logged:\n%s", len(again), len(want), len(first), logged)
	}
	var inTopic []string
	for _, r := range parseConsumed(t, c.ok("", "consume", "api-health.results")) {
		inTopic = append(inTopic, string(r.Value))
	}
	if !slices.Equal(inTopic, want) {
		t.Fatalf("the results topic holds %d lines, the uninterrupted run printed %d", len(inTopic), len(want))
	}
}

// checkKillRestart: runs of pipeline api-health (yaml, written to cfg with
// a results topic added) killed part way and restarted print, together,
// want — some lines twice, none lost — and the results topic holds every
// window.
func checkKillRestart(t *testing.T, c *cli, cfg, yaml string, want []string, kafka *kafkaBroker) {
	t.Helper()
	at := map[string]int{}
	for i, l := range want {
		at[l] = i
	}
	// from is where a run's output starts in want; -1 before it printed.
	from := func(got []string) int {
		if len(got) == 0 {
			return -1
		}
		i, ok := at[got[0]]
		if !ok {
			t.Fatalf("a line the uninterrupted run did not print: %s", got[0])
		}
		return i
	}
	run := func(sig syscall.Signal, until func([]string) bool) []string {
		t.Helper()
		return runFollowing(t, c, cfg, sig, until, "--checkpoint-interval", "1ms")
	}
	for attempt := 1; ; attempt++ {
		// The killed runs also write their results to a topic, and to a
		// Kafka cluster's topic (one per attempt: its broker writes it).
		sinks := "      - {type: topic, topic: api-health.results}\n"
		kafkaTopic := fmt.Sprintf("api-health.results-%d", attempt)
		if kafka != nil {
			sinks += fmt.Sprintf("      - {type: kafka, brokers: [%q], topic: %s}\n", kafka.addr, kafkaTopic)
		}
		if err := os.WriteFile(cfg, []byte(yaml+sinks), 0o644); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(c.dir, "pipelines"))
		printed, resumed, midway := 0, 0, 0
		// A run killed after it printed everything may have checkpointed
		// past its last line: the next would print nothing, so stop there.
		for kill := 1; kill <= 4 && printed < len(want); kill++ {
			sig, target := syscall.SIGKILL, kill*len(want)/4
			if kill == 4 {
				sig = syscall.SIGTERM
			}
			// Killed once it has checkpointed (every round here), so
			// that the restart resumes from a checkpoint, which is what
			// lets it skip the results the killed run wrote after it.
			got := run(sig, func(got []string) bool {
				return len(got) > 0 && from(got)+len(got) >= target && fileExists(filepath.Join(c.dir, "pipelines", "api-health.checkpoint"))
			})
			k := from(got)
			if k < 0 {
				continue // killed before it printed anything
			}
			if k > printed {
				t.Fatalf("run %d starts at line %d of the uninterrupted run, but only %d were printed before: results lost", kill, k, printed)
			}
			if end := k + len(got); end > len(want) || strings.Join(got, "\n") != strings.Join(want[k:end], "\n") {
				t.Fatalf("run %d (from line %d, %d lines) differs from the uninterrupted run", kill, k, len(got))
			}
			t.Logf("run %d: lines %d..%d of %d", kill, k, k+len(got), len(want))
			if k > 0 {
				resumed++
			}
			if sig == syscall.SIGKILL && k+len(got) < len(want) {
				midway++
			}
			printed = max(printed, k+len(got))
		}
		if printed != len(want) {
			t.Fatalf("the runs printed %d of the %d lines", printed, len(want))
		}
		// The results topics hold every line once, in order: each
		// restart skipped what the killed run wrote after its checkpoint.
		checkTopic := func(c *cli, topic string) {
			t.Helper()
			var inTopic []string
			for _, r := range parseConsumed(t, c.ok("", "consume", topic)) {
				inTopic = append(inTopic, string(r.Value))
			}
			for i := range max(len(inTopic), len(want)) {
				if i >= len(inTopic) || i >= len(want) || inTopic[i] != want[i] {
					t.Fatalf("topic %s holds %d lines, the uninterrupted run printed %d; the first difference is at line %d:\ntopic: %s\nrun:   %s",
						topic, len(inTopic), len(want), i, lineAt(inTopic, i), lineAt(want, i))
				}
			}
		}
		checkTopic(c, "api-health.results")
		if kafka != nil {
			checkTopic(kafka.c, kafkaTopic)
		}
		c.ok("", "topic", "delete", "api-health.results")
		if midway > 0 && resumed > 0 {
			t.Logf("attempt %d: %d kills before the end, %d restarts resumed from a checkpoint", attempt, midway, resumed)
			return
		}
		if attempt == 5 {
			t.Fatalf("five attempts: kills before the end %d, restarts from a checkpoint %d", midway, resumed)
		}
	}
}

// kafkaBroker is a fastflow serve --kafka on a data directory of its own:
// a Kafka cluster for a pipeline's Kafka sink.
type kafkaBroker struct {
	c    *cli
	addr string
}

func startKafkaBroker(t *testing.T) *kafkaBroker {
	t.Helper()
	b := &kafkaBroker{c: newCLI(t)}
	_, b.addr = startListening(t, b.c, true, "serve")
	waitKafka(t, b.addr)
	return b
}

// lineAt is lines[i], or "(none)" past its end.
func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(none)"
}

// runFollowing starts a following `fastflow run cfg`, waits until its
// lines satisfy until, sends it sig, and returns the lines it printed
// without the stats line (a line cut by SIGKILL is not counted). After
// SIGTERM it must exit 0.
func runFollowing(t *testing.T, c *cli, cfg string, sig syscall.Signal, until func([]string) bool, args ...string) []string {
	t.Helper()
	out, _ := followCmd(t, c.cmd(t.Context(), append([]string{"run", cfg, "--log-level", "info"}, args...)...), sig, until, nil)
	return out
}

// followCmd is runFollowing's body for a command of the test's making;
// before, if not nil, runs before the signal is sent. It also returns
// what the run logged.
func followCmd(t *testing.T, cmd *exec.Cmd, sig syscall.Signal, until func([]string) bool, before func()) ([]string, string) {
	t.Helper()
	var out, errs syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signals are handled once the pipeline runs.
	waitFor(t, func() bool { return strings.Contains(errs.String(), "pipeline running") })
	waitForOr(t, func() bool { return until(out.lines()) }, func() string {
		lines := out.lines()
		return fmt.Sprintf("%d lines printed, the last: %s\nstderr:\n%s", len(lines), lines[max(0, len(lines)-1):], errs.String())
	})
	if before != nil {
		before()
	}
	cmd.Process.Signal(sig)
	if err := cmd.Wait(); sig == syscall.SIGTERM && err != nil {
		t.Fatalf("run after SIGTERM: %v\n%s", err, errs.String())
	}
	var res []string
	for _, l := range out.lines() {
		if !strings.Contains(l, `"type":"stats"`) {
			res = append(res, l)
		}
	}
	return res, errs.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	text := s.b.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	} else {
		return nil
	}
	return strings.Split(text, "\n")
}

// TestPartitionsKeepFinalResults: over 3 partitions (keyed by service) the
// last revision of every window equals the one-partition run's, as do the
// stats, when no event is dropped as too late (a partition's watermark is
// never ahead of the one partition's, so what one partition accepts, three
// accept too). Which late events come in revision 0 and which in a later
// revision may differ: that follows the rounds (README, How it runs).
func TestPartitionsKeepFinalResults(t *testing.T) {
	all := genEvents(6000, 5)
	var lines []string
	for i, l := range all {
		if i%311 != 77 { // genEvents' too-late events
			lines = append(lines, l)
		}
	}
	dir := t.TempDir()
	events, cfg := writeRunFiles(t, dir, lines)
	final := func(parts string) (map[string]string, string, int) {
		c := newCLI(t)
		c.ok("", "topic", "create", "events", "--partitions", parts)
		c.ok("", "produce", "events", "--key-field", "service", events)
		res := map[string]string{}
		var stats string
		revisions := 0
		for _, line := range strings.Split(strings.TrimSpace(c.ok("", "run", cfg, "--until-end")), "\n") {
			var o refOut
			if err := json.Unmarshal([]byte(line), &o); err != nil {
				t.Fatal(err)
			}
			switch o.Type {
			case "window":
				m, _ := json.Marshal(o.Metrics)
				res[fmt.Sprint(o.Key, o.WindowStart)] = string(m)
				if o.Revision > 0 {
					revisions++
				}
			case "stats":
				stats = line
			}
		}
		return res, stats, revisions
	}
	one, oneStats, oneRevs := final("1")
	three, threeStats, threeRevs := final("3")
	if oneStats != threeStats || !strings.Contains(oneStats, `"late_dropped":0`) {
		t.Fatalf("stats over 3 partitions:\n%s\nover 1:\n%s", threeStats, oneStats)
	}
	if len(one) != len(three) || oneRevs == 0 || threeRevs == 0 {
		t.Fatalf("%d windows over 1 partition (%d revisions), %d over 3 (%d revisions)", len(one), oneRevs, len(three), threeRevs)
	}
	for k, v := range one {
		if three[k] != v {
			t.Fatalf("window %s: last revision over 3 partitions %s, over 1 %s", k, three[k], v)
		}
	}
	t.Logf("%d windows, %d revisions over 1 partition, %d over 3", len(one), oneRevs, threeRevs)
}

// TestPartitionsFinalResultsWithLateDrops: over 3 and 6 partitions, keyed
// by service or not keyed (a service's events then spread over partitions
// whose clocks differ), with events too late for some partitions' clocks:
// the last revision of every window holds exactly the events that their
// own partition's watermark accepted (SPEC: lateness is judged per
// partition), checked against the reference given each partition's
// records as the log holds them; late_dropped and the rejected counts too.
func TestPartitionsFinalResultsWithLateDrops(t *testing.T) {
	lines := genEvents(6000, 5)
	// Besides genEvents' late and too-late events, some that are about as
	// late as lateness allows: which of them a partition refuses depends
	// on how far its own clock has gone.
	tsField := regexp.MustCompile(`"ts":(\d+)`)
	for i := 20; i < len(lines); i += 53 {
		lines[i] = tsField.ReplaceAllStringFunc(lines[i], func(m string) string {
			ts, _ := strconv.ParseInt(m[5:], 10, 64)
			return fmt.Sprintf(`"ts":%d`, ts-60_000-int64(i%13)*1000)
		})
	}
	oneDropped := refRun(lines)[len(refRun(lines))-1].LateDropped
	differs := false
	dir := t.TempDir()
	events, cfg := writeRunFiles(t, dir, lines)
	for _, tc := range []struct {
		parts string
		keyed bool
	}{{"3", true}, {"6", true}, {"3", false}, {"6", false}} {
		t.Run(fmt.Sprintf("%s-partitions-keyed-%v", tc.parts, tc.keyed), func(t *testing.T) {
			c := newCLI(t)
			c.ok("", "topic", "create", "events", "--partitions", tc.parts)
			if tc.keyed {
				c.ok("", "produce", "events", "--key-field", "service", events)
			} else {
				c.ok("", "produce", "events", events)
			}
			partitions := consumeLines(t, c, "events")
			want := map[string]refOut{}
			var wantStats refOut
			for _, o := range refRun(partitions...) {
				switch o.Type {
				case "window":
					want[fmt.Sprint(o.Key, o.WindowStart)] = o
				case "stats":
					wantStats = o
				}
			}
			got := map[string]refOut{}
			var gotStats refOut
			for _, o := range parseRunOutput(t, c.ok("", "run", cfg, "--until-end")) {
				switch o.Type {
				case "window":
					got[fmt.Sprint(o.Key, o.WindowStart)] = o // the last revision stays
				case "stats":
					gotStats = o
				}
			}
			wantStats.Revision, gotStats.Revision = 0, 0
			compareOutputs(t, []refOut{gotStats}, []refOut{wantStats})
			if wantStats.LateDropped == 0 || len(got) != len(want) {
				t.Fatalf("late_dropped %d (want some); %d windows, the reference has %d", wantStats.LateDropped, len(got), len(want))
			}
			for k, w := range want {
				g := got[k]
				g.Revision, w.Revision = 0, 0
				compareOutputs(t, []refOut{g}, []refOut{w})
			}
			differs = differs || gotStats.LateDropped != oneDropped
			t.Logf("%d windows, late_dropped %d (%d over one partition)", len(got), gotStats.LateDropped, oneDropped)
		})
	}
	if !differs {
		t.Fatalf("every layout dropped as many events as one partition (%d): the data did not exercise the partitions' own clocks", oneDropped)
	}
}

// consumeLines reads topic back through the CLI: each partition's record
// values in offset order, as the lines they were produced from.
func consumeLines(t *testing.T, c *cli, topic string) [][]string {
	t.Helper()
	var parts [][]string
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "consume", topic)), "\n") {
		var r struct {
			Partition int
			Value     json.RawMessage
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("consume printed %q: %v", line, err)
		}
		for len(parts) <= r.Partition {
			parts = append(parts, nil)
		}
		// A value that is not JSON is printed as a string (the events
		// hold no JSON strings).
		v := string(r.Value)
		var s string
		if json.Unmarshal(r.Value, &s) == nil {
			v = s
		}
		parts[r.Partition] = append(parts[r.Partition], v)
	}
	return parts
}

// TestStatsLineWithoutStdoutSink: a pipeline that writes only to a topic
// still prints its stats line with --until-end (SPEC's CLI), and nothing
// else on stdout; its results are in the topic.
func TestStatsLineWithoutStdoutSink(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	c.ok(`{"ts":1000,"s":"a"}`+"\n"+`{"ts":61000,"s":"a"}`+"\n"+`not json`+"\n", "produce", "events")
	cfg := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(cfg, []byte(`pipelines:
  - name: quiet
    source: {topic: events}
    time: {field: ts, unit: ms}
    window: {type: tumbling, size: 1m}
    metrics: [{name: n, agg: count}]
    sinks: [{type: topic, topic: quiet.results}]
`), 0o644)
	want := `{"type":"stats","pipeline":"quiet","records":3,"events":2,"rejected":{"invalid_json":1},"late_dropped":0}` + "\n"
	if out := c.ok("", "run", cfg, "--until-end"); out != want {
		t.Fatalf("stdout %q, want the stats line alone", out)
	}
	if n := strings.Count(c.ok("", "consume", "quiet.results"), `"type":"window"`); n != 2 {
		t.Fatalf("%d windows in quiet.results, want 2", n)
	}
}

// TestUntilEndInterrupted: a run --until-end stopped by SIGINT or SIGTERM
// before the end of the log exits 1 saying its output is incomplete, with
// no stats line, so that a script (or a timeout) does not take a cut run
// for a whole one; it exited 0.
func TestUntilEndInterrupted(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "2")
	var in strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&in, `{"ts":%d,"v":%d}`+"\n", 1795341600000+int64(i)*10, i)
	}
	c.ok(in.String(), "produce", "events")
	cfg := filepath.Join(t.TempDir(), "p.yaml")
	// Each event updates 10,000 hopping windows: the run takes long
	// enough to be stopped part way, whatever the machine.
	os.WriteFile(cfg, []byte(`pipelines:
  - name: p
    source: {topic: events}
    time: {field: ts, unit: ms}
    window: {type: hopping, size: 10s, advance: 1ms}
    metrics: [{name: n, agg: count}]
`), 0o644)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		run := c.cmd(ctx, "run", cfg, "--until-end", "--log-level", "info")
		var out bytes.Buffer
		var errs syncBuffer
		run.Stdout, run.Stderr = &out, &errs
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return strings.Contains(errs.String(), "pipeline running") })
		run.Process.Signal(sig)
		err := run.Wait()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errs.String(), "interrupted before the end of the log") ||
			strings.Contains(out.String(), `"type":"stats"`) {
			t.Fatalf("%v: %v; stderr:\n%s\nstdout ends %q", sig, err, errs.String(), out.String()[max(0, out.Len()-200):])
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestRunSigtermRestartHopping is TestRunSigtermRestart with hopping
// windows (2m advancing by 30s: an event in four windows, each emitted at
// another watermark move than its neighbours), whose open windows the
// checkpoint carries across the restart.
func TestRunSigtermRestartHopping(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := windowData(t, c, 8, hoppingYAML)
	checkStopRestart(t, c, cfg, want)
}

// TestRunKillRestartHopping is TestRunKillRestart with hopping windows.
func TestRunKillRestartHopping(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := windowData(t, c, 9, hoppingYAML)
	checkKillRestart(t, c, cfg, hoppingYAML, want, nil)
}

// hoppingYAML is the api-health pipeline with hopping windows of 2m
// advancing by 30s.
var hoppingYAML = strings.Replace(apiHealthYAML, "window: {type: tumbling, size: 1m}", "window: {type: hopping, size: 2m, advance: 30s}", 1)

// windowData is followData for yaml, the api-health pipeline with another
// window: the pipelines file and what a following run prints — all but
// the stats line and the windows of the last events, an hour after the
// others, which only the end of --until-end closes.
func windowData(t *testing.T, c *cli, seed uint64, yaml string) (cfg string, want []string) {
	t.Helper()
	if yaml == apiHealthYAML {
		t.Fatal("test bug: no window replaced")
	}
	cfg, _ = followData(t, c, seed)
	os.WriteFile(cfg, []byte(yaml), 0o644)
	windows := 0
	for _, l := range strings.Split(strings.TrimSpace(c.ok("", "run", cfg, "--until-end")), "\n") {
		var r struct {
			Type      string
			WindowEnd time.Time `json:"window_end"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type != "stats" && r.WindowEnd.UnixMilli() <= followLastMs {
			want = append(want, l)
			if r.Type == "window" {
				windows++
			}
		}
	}
	if windows < 1000 {
		t.Fatalf("only %d windows", windows)
	}
	return cfg, want
}

// TestLongestPipelineName: a pipeline's name may take 240 bytes, so that
// what is named after it fits: DATA/pipelines/NAME.checkpoint (written
// through NAME.checkpoint.tmp, in a file name's 255 bytes) and the
// NAME.dlq and NAME.late topics. A longer name is a config error (exit 2);
// one of 246 bytes had passed the config and failed at the start, exit 1:
// "NAME.checkpoint: file name too long".
func TestLongestPipelineName(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	config := func(name string) string {
		return writeFile(t, filepath.Join(c.dir, fmt.Sprintf("p%d.yaml", len(name))), `topics:
  - {name: events, partitions: 1}
pipelines:
  - name: `+name+`
    source: {topic: events}
    dlq: true
    late_topic: true
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: c, agg: count}
`)
	}
	if r := c.run("", "run", config(strings.Repeat("p", 241)), "--until-end"); r.code != 2 || !strings.Contains(r.stderr, "p241.yaml:4: pipelines[0].name: missing or invalid pipeline name") {
		t.Fatalf("a name of 241 bytes: exit %d: %s", r.code, r.stderr)
	}
	name := strings.Repeat("p", 240)
	cfg := config(name)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	c.ok("not json\n", "produce", "events")
	runFollowing(t, c, cfg, syscall.SIGTERM, func([]string) bool {
		return strings.Contains(c.ok("", "consume", name+".dlq"), "not json")
	})
	if _, err := os.Stat(filepath.Join(c.dir, "pipelines", name+".checkpoint")); err != nil {
		t.Fatal(err)
	}
}
