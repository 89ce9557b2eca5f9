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
	"strings"
	"testing"
	"time"
)

// A second reference, for every kind of window, with count, filtered
// counts, sum, min and max: sequential, one partition, as plain as
// possible. Sessions follow Flink: an event opens [t, t+gap), and windows
// that meet (start <= other end and end >= other start) merge; an event is
// late when the session it would join is (its end plus the lateness at or
// before the watermark before the event).

type genWin struct {
	refSpan
	vals    []float64
	n, errs int
	slow    int
}

func genericRef(lines []string, kind string, size, advance, gap, ooo, lateness int64) []string {
	var wins []*genWin
	wm, maxT := int64(math.MinInt64), int64(math.MinInt64)
	var out []string
	ts := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
	emitDue := func() {
		emitDueRef(wins, wm, func(w *genWin) {
			m := map[string]any{"n": w.n, "errors": w.errs, "slow": w.slow}
			if len(w.vals) > 0 {
				sum := new(big.Float).SetPrec(3000)
				lo, hi := w.vals[0], w.vals[0]
				for _, v := range w.vals {
					sum.Add(sum, new(big.Float).SetFloat64(v))
					lo, hi = min(lo, v), max(hi, v)
				}
				s, _ := sum.Float64()
				m["total"], m["lo"], m["hi"] = s, lo, hi
			} else {
				m["total"], m["lo"], m["hi"] = nil, nil, nil
			}
			b, _ := json.Marshal(m)
			out = append(out, fmt.Sprintf("%s %s %s rev %d %s", w.key, ts(w.start), ts(w.end), w.rev, b))
		})
		// Forget windows no event can change any more.
		kept := wins[:0]
		for _, w := range wins {
			if !(w.end+lateness <= wm && !w.dirty) {
				kept = append(kept, w)
			}
		}
		wins = kept
	}
	add := func(w *genWin, obj map[string]any) {
		w.n++
		if obj["status"] != "ok" && obj["status"] != nil {
			if _, isStr := obj["status"].(string); isStr {
				w.errs++
			}
		}
		if v, ok := obj["response_time"].(float64); ok {
			w.vals = append(w.vals, v)
			if v >= 250 {
				w.slow++
			}
		}
		if w.emitted {
			w.dirty = true
		}
	}
	late := 0
	for _, line := range lines {
		var obj map[string]any
		if json.Unmarshal([]byte(line), &obj) != nil {
			continue
		}
		f, ok := obj["ts"].(float64)
		if !ok {
			continue
		}
		t := int64(f)
		before := wm
		if t > maxT {
			maxT, wm = t, t-ooo
		}
		key, _ := obj["service"].(string)
		accepted := false
		switch kind {
		case "session":
			// The event joins the sessions there before it (Flink, Kafka
			// Streams): lateness is judged by the session it joins.
			nw := &genWin{refSpan: refSpan{start: t, end: t + gap, key: key}}
			joins := func(w *genWin) bool {
				return w.key == key && w.start <= nw.end && w.end >= nw.start && (before == math.MinInt64 || w.end+lateness > before)
			}
			end := nw.end
			for _, w := range wins {
				if joins(w) {
					end = max(end, w.end)
				}
			}
			if before != math.MinInt64 && before >= end+lateness {
				break
			}
			accepted = true
			kept := wins[:0]
			var into *genWin
			for _, w := range wins {
				if joins(w) {
					if into == nil {
						into = w
					} else {
						into.start, into.end = min(into.start, w.start), max(into.end, w.end)
						into.vals = append(into.vals, w.vals...)
						into.n, into.errs, into.slow = into.n+w.n, into.errs+w.errs, into.slow+w.slow
						into.emitted = into.emitted || w.emitted
						into.rev = max(into.rev, w.rev)
						continue
					}
				}
				kept = append(kept, w)
			}
			wins = kept
			if into == nil {
				into = nw
				wins = append(wins, into)
			}
			into.start, into.end = min(into.start, nw.start), max(into.end, nw.end)
			add(into, obj)
			into.dirty = true
		default:
			step := advance
			if kind == "tumbling" {
				step = size
			}
			// Starts are multiples of the step; the windows holding t.
			for s := int64(math.Floor(float64(t)/float64(step))) * step; s > t-size; s -= step {
				if wm >= s+size+lateness {
					continue
				}
				accepted = true
				var w *genWin
				for _, x := range wins {
					if x.key == key && x.start == s {
						w = x
					}
				}
				if w == nil {
					w = &genWin{refSpan: refSpan{start: s, end: s + size, key: key}}
					wins = append(wins, w)
				}
				add(w, obj)
			}
		}
		if !accepted {
			late++
		}
		emitDue()
	}
	wm = math.MaxInt64
	emitDue()
	return append(out, fmt.Sprintf("late_dropped %d", late))
}

// windowEvents: bursts per service with gaps (sessions), jitter, and late
// events, some of which bridge two sessions.
func windowEvents(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 7))
	t := int64(1795341600000)
	var lines []string
	for i := 0; i < n; i++ {
		if rng.IntN(40) == 0 {
			t += 6000 + rng.Int64N(8000) // a pause: sessions (gap 5s) end
		} else {
			t += rng.Int64N(300)
		}
		ts := t + rng.Int64N(1500) - 750
		if i%37 == 5 {
			ts = t - 4000 - rng.Int64N(20000) // late, sometimes too late
		}
		s := []string{"a", "b", "c"}[rng.IntN(3)]
		status := []string{"ok", "ok", "ok", "error", "timeout"}[rng.IntN(5)]
		lines = append(lines, fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q,"response_time":%.2f}`, ts, s, status, rng.Float64()*500))
	}
	return lines
}

// windowTopic writes lines to a file and produces them into a new topic
// "events" of parts partitions, keyed by service when parts > 1; it
// returns the CLI and a directory for config files.
func windowTopic(t *testing.T, lines []string, parts int) (*cli, string) {
	t.Helper()
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", fmt.Sprint(parts))
	if parts > 1 {
		c.ok("", "produce", "events", "--key-field", "service", events)
	} else {
		c.ok("", "produce", "events", events)
	}
	return c, dir
}

func TestWindowKindsMatchReference(t *testing.T) {
	lines := windowEvents(3000, 1)
	c, dir := windowTopic(t, lines, 1)
	// strict: no disorder allowed and no lateness, where a window is
	// emitted at the very watermark that refuses its late events: never
	// revised.
	for _, tc := range []struct {
		name, window       string
		size, advance, gap int64
		strict             bool
	}{
		{"tumbling", "{type: tumbling, size: 10s}", 10000, 0, 0, false},
		{"hopping", "{type: hopping, size: 30s, advance: 10s}", 30000, 10000, 0, false},
		{"hopping-uneven", "{type: hopping, size: 25s, advance: 10s}", 25000, 10000, 0, false},
		{"session", "{type: session, gap: 5s}", 0, 0, 5000, false},
		{"tumbling-strict", "{type: tumbling, size: 10s}", 10000, 0, 0, true},
		{"hopping-strict", "{type: hopping, size: 25s, advance: 10s}", 25000, 10000, 0, true},
		{"session-strict", "{type: session, gap: 5s}", 0, 0, 5000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ooo, lateness := int64(2000), int64(10000)
			if tc.strict {
				ooo, lateness = 0, 0
			}
			cfg := filepath.Join(dir, tc.name+".yaml")
			os.WriteFile(cfg, []byte(refPipelineYAML(tc.window, ooo, lateness)), 0o644)
			kind := strings.Split(tc.name, "-")[0]
			want := genericRef(lines, kind, tc.size, tc.advance, tc.gap, ooo, lateness)
			got := refFormat(t, c.ok("", "run", cfg, "--until-end"))
			revisions := 0
			for i := range max(len(got), len(want)) {
				if i >= len(got) || i >= len(want) || got[i] != want[i] {
					g, w := "<none>", "<none>"
					if i < len(got) {
						g = got[i]
					}
					if i < len(want) {
						w = want[i]
					}
					lo, hi := max(0, i-4), min(len(got), len(want), i+4)
					t.Fatalf("line %d of %d/%d:\n got %s\nwant %s\ngot:\n%s\nwant:\n%s", i, len(got), len(want), g, w,
						strings.Join(got[lo:hi], "\n"), strings.Join(want[lo:hi], "\n"))
				}
				if strings.Contains(got[i], " rev ") && !strings.Contains(got[i], " rev 0 ") {
					revisions++
				}
			}
			if tc.strict {
				if revisions != 0 || len(got) < 50 || got[len(got)-1] == "late_dropped 0" {
					t.Fatalf("%s: %d revisions (want none), %d lines, %s", tc.name, revisions, len(got), got[len(got)-1])
				}
				t.Logf("%s: %d lines, no revisions, %s", tc.name, len(got), got[len(got)-1])
				return
			}
			// Hopping windows with 30s windows never refuse an event 24s late.
			if revisions == 0 || len(got) < 50 || kind != "hopping" && got[len(got)-1] == "late_dropped 0" {
				t.Fatalf("%s: data did not exercise revisions and late drops: %d revisions, %d lines, %s", tc.name, revisions, len(got), got[len(got)-1])
			}
			t.Logf("%s: %d lines, %d revisions, %s", tc.name, len(got), revisions, got[len(got)-1])
		})
	}
}

// refPipelineYAML is the pipeline genericRef computes: the given window,
// times in ms with the given bounds (ms), the metrics it knows.
func refPipelineYAML(window string, ooo, lateness int64) string {
	return `pipelines:
  - name: w
    source: {topic: events}
    time: {field: ts, unit: ms, max_out_of_order: ` + fmt.Sprint(ooo) + `ms, allowed_lateness: ` + fmt.Sprint(lateness) + `ms}
    group_by: [service]
    window: ` + window + `
    metrics:
      - {name: n, agg: count}
      - {name: errors, agg: count, where: 'status != "ok"'}
      - {name: slow, agg: count, where: 'response_time >= 250'}
      - {name: total, agg: sum, field: response_time}
      - {name: lo, agg: min, field: response_time}
      - {name: hi, agg: max, field: response_time}
`
}

// refFormat writes run's output as genericRef does.
func refFormat(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o struct {
			Type        string
			Key         map[string]string
			WindowStart string `json:"window_start"`
			WindowEnd   string `json:"window_end"`
			Revision    int
			Metrics     map[string]any
			LateDropped int64 `json:"late_dropped"`
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatal(err)
		}
		if o.Type == "stats" {
			got = append(got, fmt.Sprintf("late_dropped %d", o.LateDropped))
			continue
		}
		b, _ := json.Marshal(o.Metrics)
		got = append(got, fmt.Sprintf("%s %s %s rev %d %s", o.Key["service"], o.WindowStart, o.WindowEnd, o.Revision, b))
	}
	return got
}

// finalSessions reduces genericRef's lines to the sessions as they end:
// each session's last revision, without those a later one contains (a
// session emitted, then merged with others by a late event; the
// pipeline's rounds may merge them before the first emission), sorted;
// and late_dropped.
func finalSessions(t *testing.T, lines []string) (sessions []string, late int) {
	t.Helper()
	type sess struct {
		key        string
		start, end time.Time
		metrics    string
	}
	last := map[string]sess{}
	for _, l := range lines {
		if _, err := fmt.Sscanf(l, "late_dropped %d", &late); err == nil {
			continue
		}
		f := strings.SplitN(l, " ", 6)
		start, err1 := time.Parse(time.RFC3339Nano, f[1])
		end, err2 := time.Parse(time.RFC3339Nano, f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("line %q: %v %v", l, err1, err2)
		}
		last[f[0]+" "+f[1]+" "+f[2]] = sess{f[0], start, end, f[5]}
	}
	for k, s := range last {
		contained := false
		for j, o := range last {
			if j != k && o.key == s.key && !o.start.After(s.start) && !o.end.Before(s.end) {
				contained = true
			}
		}
		if !contained {
			sessions = append(sessions, k+" "+s.metrics)
		}
	}
	slices.Sort(sessions)
	return sessions, late
}

// finalPerPartition runs each partition's lines through genericRef and
// returns the windows they end with (finalSessions), sorted, and the late
// events of all: what a pipeline over the partitions ends with, lateness
// being judged per partition.
func finalPerPartition(t *testing.T, byPart [][]string, kind string, size, advance, gap, ooo, lateness int64) (windows []string, late int) {
	t.Helper()
	for _, lines := range byPart {
		w, l := finalSessions(t, genericRef(lines, kind, size, advance, gap, ooo, lateness))
		windows, late = append(windows, w...), late+l
	}
	slices.Sort(windows)
	return windows, late
}

// TestSessionsMatchReferencePerPartition: lateness is judged per
// partition. On a topic keyed by service over 3 partitions, each
// partition's events through the sequential reference end with the
// sessions the pipeline ends with, and the late events add up. The
// pipeline's horizon (the minimum watermark over partitions) is behind
// the partitions ahead of it: an event there must not join a session
// that is too late by its own partition's watermark.
func TestSessionsMatchReferencePerPartition(t *testing.T) {
	lines := windowEvents(6000, 5)
	c, dir := windowTopic(t, lines, 3)
	const gap, ooo, lateness = 5000, 2000, 10000
	cfg := filepath.Join(dir, "s.yaml")
	os.WriteFile(cfg, []byte(refPipelineYAML("{type: session, gap: 5s}", ooo, lateness)), 0o644)
	got, gotLate := finalSessions(t, refFormat(t, c.ok("", "run", cfg, "--until-end")))
	byPart := make([][]string, 3)
	for p := range byPart {
		for _, l := range strings.Split(strings.TrimSpace(c.ok("", "consume", "events", "--partition", fmt.Sprint(p))), "\n") {
			if l == "" {
				continue // a partition no service hashes to
			}
			var r consumed
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			byPart[p] = append(byPart[p], string(r.Value))
		}
	}
	want, wantLate := finalPerPartition(t, byPart, "session", 0, 0, gap, ooo, lateness)
	if gotLate != wantLate || wantLate == 0 {
		t.Fatalf("late_dropped %d, the reference %d", gotLate, wantLate)
	}
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			t.Fatalf("session %d of %d/%d differs:\n got %v\nwant %v", i, len(got), len(want), got[min(i, len(got)-1)], want[min(i, len(want)-1)])
		}
	}
	t.Logf("%d sessions, late_dropped %d", len(got), gotLate)
}

// TestWindowKindsDeterministic: session and hopping windows, with late
// events, revisions and alerts, over a 3-partition topic keyed by service:
// the output is the same with 1, 2 and 3 workers (sessions merge across
// workers' rounds in the coordinator).
func TestWindowKindsDeterministic(t *testing.T) {
	c, dir := windowTopic(t, windowEvents(6000, 3), 3)
	for _, window := range []string{"{type: session, gap: 5s}", "{type: hopping, size: 25s, advance: 10s}"} {
		cfg := filepath.Join(dir, "d.yaml")
		os.WriteFile(cfg, []byte(`pipelines:
  - name: d
    source: {topic: events}
    time: {field: ts, unit: ms, max_out_of_order: 2s, allowed_lateness: 10s}
    group_by: [service]
    window: `+window+`
    metrics:
      - {name: n, agg: count}
      - {name: p90, agg: percentile, field: response_time, q: 0.9}
      - {name: total, agg: sum, field: response_time}
    alerts:
      - {name: busy, when: 'n > 30', for: 2}
`), 0o644)
		first := c.ok("", "run", cfg, "--until-end", "--workers", "1")
		if !strings.Contains(first, `"revision":1`) || !strings.Contains(first, `"type":"alert"`) {
			t.Fatalf("%s: the data did not exercise revisions and alerts", window)
		}
		for _, w := range []string{"2", "3"} {
			if out := c.ok("", "run", cfg, "--until-end", "--workers", w); out != first {
				t.Fatalf("%s: output with %s workers differs from 1 worker", window, w)
			}
		}
	}
}
