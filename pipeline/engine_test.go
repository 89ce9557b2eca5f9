package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
)

const benchYAML = `pipelines:
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
`

var services = []string{"payments", "search", "auth", "checkout", "inventory", "users", "cart", "email"}

// benchEvents returns n api events, ~1000 a second, in time order.
func benchEvents(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		status := "ok"
		if rng.IntN(50) == 0 {
			status = "error"
		}
		out[i] = fmt.Appendf(nil, `{"ts":%d,"service":%q,"status":%q,"response_time":%.1f}`,
			1795341600000+int64(i), services[rng.IntN(len(services))], status, rng.ExpFloat64()*120)
	}
	return out
}

// testWorker is a worker with one partition and no feed: records are
// handed to process directly.
func testWorker(t testing.TB, yaml string) (*worker, *partState) {
	p := testPlan(t, yaml)
	ps := &partState{sessions: sessionEnds{lateness: p.lateness}}
	ps.wm, ps.maxT = minWatermark, minWatermark
	w := newWorker(p, newKeyTable(), []*partState{ps}, nil, false)
	w.begin()
	return w, ps
}

// TestProcessAllocs: parse, time, key, window assignment, aggregation and
// percentile recording allocate nothing per event in steady state, for
// every window kind: a round reuses the memory of the rounds before it.
// Each round is measured whole (AllocsPerRun divides the allocations by
// its runs, so it shows no allocation that a slice's growth amortizes over
// thousands of events: session pipelines' list of touched keys, before
// BenchmarkProcessWindows ended its rounds, grew by 20 B an event).
func TestProcessAllocs(t *testing.T) {
	for _, window := range []string{"{type: tumbling, size: 1m}", "{type: hopping, size: 5m, advance: 1m}", "{type: session, gap: 30s}"} {
		w, ps := testWorker(t, strings.Replace(benchYAML, "{type: tumbling, size: 1m}", window, 1))
		evs := benchEvents(4096)
		recs := make([]log.Record, len(evs))
		for i := range recs {
			recs[i] = log.Record{Offset: int64(i), Value: evs[i]}
		}
		// A round of the events, ended as step ends it; the next reuses
		// its message, as the coordinator sends it back.
		round := func() {
			ps.wm, ps.maxT = minWatermark, minWatermark
			for i := range recs {
				r := recs[i]
				w.process(ps, &r)
			}
			ps.sessions.report(ps.id, w.msg)
			w.back.Push(w.msg)
			w.begin()
		}
		round()
		// AllocsPerRun counts the whole process's allocations. One in one
		// round of the ten is not the round's: a run in ~500 saw it (one
		// in ~100 under -race, where rounds take 10x longer), always one
		// allocation in one round, of the tumbling pipeline, whose rounds
		// allocate nothing to start a collection or grow anything; which
		// runtime path makes it is not pinned down. An allocation of the
		// round's shows in most rounds: one per event thousands a round,
		// a slice growing with the rounds at each growth.
		allocating := 0
		for range 10 {
			runtime.GC() // with it, the stray allocation went from 2 runs in 1,000 to none in 2,000 (not under -race)
			a := testing.AllocsPerRun(1, round)
			if a > 1 {
				t.Fatalf("%s: %v allocations in a round of %d events", window, a, len(recs))
			}
			if a == 1 {
				allocating++
			}
		}
		if allocating > 1 {
			t.Fatalf("%s: %d rounds of 10 allocated, each round %d events", window, allocating, len(recs))
		}
	}
}

// TestSessionHeapHoldsSessionsNotEvents: a partition's session ends wait
// in a heap until its watermark passes them - one entry per session, not
// per event: a session extended by every event of a key at 1,000 events
// a second (gap 30s, 5s out of order) would otherwise hold ~35,000
// entries, 24 bytes each, per key. The session still closes where its
// last event says, and its forget follows.
func TestSessionHeapHoldsSessionsNotEvents(t *testing.T) {
	w, ps := testWorker(t, strings.Replace(benchYAML, "{type: tumbling, size: 1m}", "{type: session, gap: 30s}", 1))
	const n = 100_000
	for i := range n {
		rec := log.Record{Offset: int64(i), Value: fmt.Appendf(nil, `{"ts":%d,"service":"payments","status":"ok","response_time":1}`, 1795341600000+int64(i))}
		if w.process(ps, &rec) {
			t.Fatalf("event %d: a round ends, though no session closed", i)
		}
		if len(ps.sessions.heap) > 2 {
			t.Fatalf("event %d: %d heap entries for %d session", i, len(ps.sessions.heap), len(ps.sessions.spans))
		}
	}
	last := int64(1795341600000 + n - 1)
	if ps.sessions.closed(last + 30_000 - 1) {
		t.Fatal("session closed before its end")
	}
	if !ps.sessions.closed(last+30_000) || len(ps.sessions.spans[0]) != 1 || !ps.sessions.spans[0][0].closed {
		t.Fatalf("session not closed at its end: %v", ps.sessions.spans)
	}
	if !ps.sessions.closed(last+30_000+60_000) || len(ps.sessions.spans) != 0 || len(ps.sessions.heap) != 0 {
		t.Fatalf("session not forgotten past the lateness: spans %v, heap %v", ps.sessions.spans, ps.sessions.heap)
	}
}

// TestRoundHoldsEachWindowOnce: a round holds one delta per key and
// window, however many windows an event is in and in whatever order the
// events come - past the chain of a key's windows findWindow walks too
// (hopping windows of 20s advancing by 1s: 20 per event, events out of
// order over 40s) - and each delta counts the events its window holds.
func TestRoundHoldsEachWindowOnce(t *testing.T) {
	yaml := strings.Replace(benchYAML, "{type: tumbling, size: 1m}", "{type: hopping, size: 20s, advance: 1s}", 1)
	yaml = strings.Replace(yaml, "max_out_of_order: 5s", "max_out_of_order: 1h", 1)
	w, ps := testWorker(t, yaml)
	rng := rand.New(rand.NewPCG(5, 6))
	const base = 1795341600000
	want := map[winKey]int64{}
	keyIDs := map[string]uint32{}
	for i := range 2000 {
		svc := services[rng.IntN(3)]
		ts := base + rng.Int64N(40_000)
		rec := log.Record{Offset: int64(i), Value: fmt.Appendf(nil, `{"ts":%d,"service":%q,"status":"ok","response_time":1}`, ts, svc)}
		w.process(ps, &rec)
		if _, ok := keyIDs[svc]; !ok {
			keyIDs[svc] = w.keys.id(fmt.Appendf(nil, "%q", svc), 0)
		}
		for s := ts - ts%1000 - 19_000; s <= ts; s += 1000 {
			want[winKey{s, keyIDs[svc]}]++
		}
	}
	got := map[winKey]int64{}
	for _, d := range w.msg.wins {
		k := winKey{d.start, d.key}
		if _, dup := got[k]; dup {
			t.Fatalf("window %d of key %d twice in the round", d.start, d.key)
		}
		got[k] = d.events
	}
	if !maps.Equal(got, want) {
		t.Fatalf("%d windows in the round, want %d", len(got), len(want))
	}
}

// TestExtractAllocsWithEscapes: a record with a backslash goes through
// fastjson's Visit and decodes its strings (TestProcessAllocs's events
// have none): no allocation there either.
func TestExtractAllocsWithEscapes(t *testing.T) {
	x := newExtractor(testPlan(t, extractYAML))
	rec := &log.Record{Value: []byte(`{"ts":1000,"service":"p\u0061y","region":"eu","status":"err\u006fr","latency":{"ms":150},"ok":true,"msg":"a\nb"}`)}
	if _, _, ok := x.extract(rec); !ok || x.ev.Preds&1 == 0 {
		t.Fatalf("extract: ok %v, preds %b", ok, x.ev.Preds)
	}
	if a := testing.AllocsPerRun(1000, func() { x.extract(rec) }); a != 0 {
		t.Fatalf("%v allocations per record", a)
	}
}

// TestProcessEndsRoundAtBoundary: process reports that the coordinator
// may emit exactly when the event's watermark move closed a window
// (Boundary of the old and new watermark) or the event was accepted late,
// and counts each event in the windows that contain it and are still open
// to it. Tumbling and hopping windows; times in order, out of order, late
// and too late.
func TestProcessEndsRoundAtBoundary(t *testing.T) {
	for _, window := range []string{"{type: tumbling, size: 10s}", "{type: hopping, size: 10s, advance: 3s}"} {
		yaml := strings.Replace(benchYAML, "{type: tumbling, size: 1m}", window, 1)
		w, ps := testWorker(t, yaml)
		win, lateness := w.p.windows, w.p.lateness
		rng := rand.New(rand.NewPCG(3, 4))
		ts := int64(1795341600000)
		signals := 0
		counts := map[int64]int64{}
		for i := range 20000 {
			ts += rng.Int64N(200) // in order
			t0 := ts
			if rng.IntN(10) == 0 {
				t0 -= rng.Int64N(80000) // out of order, some late, some too late
			}
			old := ps.wm
			rec := log.Record{Offset: int64(i), Value: fmt.Appendf(nil, `{"ts":%d,"service":"a","status":"ok","response_time":1}`, t0)}
			got := w.process(ps, &rec)
			late := false
			for _, s := range win.Starts(t0, nil) {
				end := s + win.Size
				late = late || end <= ps.wm && ps.wm < end+lateness
				if ps.wm < end+lateness {
					counts[s]++
				}
			}
			want := late || old != minWatermark && win.Boundary(old, ps.wm)
			if got != want {
				t.Fatalf("%s: event %d at %d (watermark %d -> %d): process = %v, want %v", window, i, t0, old, ps.wm, got, want)
			}
			if got {
				signals++
			}
		}
		if signals < 100 {
			t.Fatalf("%s: only %d round ends", window, signals)
		}
		got := map[int64]int64{}
		for _, d := range w.msg.wins {
			got[d.start] += d.events
		}
		if !maps.Equal(got, counts) {
			t.Fatalf("%s: %d windows counted, want %d", window, len(got), len(counts))
		}
	}
}

// TestStepEndsRoundAtBoundary: a round ends right after the event whose
// watermark closes a window, wherever the worker's reads of the partition
// begin and end: here that event is the last record of the first read
// when reading from offset 0, and in the middle of one from offset 500 (as
// after a restart from a checkpoint). Rounds that ran on past it when it
// ended a read made a restarted run emit windows in other rounds than an
// uninterrupted one, and, as the run at the end checks, put the late event
// that follows it into the first window's revision 0 instead of revision 1.
func TestStepEndsRoundAtBoundary(t *testing.T) {
	l, tp := testTopic(t, 1)
	defer l.Close()
	part, _ := tp.Partition(0)
	const t0 = 1795341600000 // a minute's start
	var recs []log.Record
	for i := range 3 * batchRecords {
		ts := t0 + int64(i)
		switch {
		case i == batchRecords:
			ts = t0 + 500 // late for the first minute, within its lateness
		case i >= batchRecords-1:
			ts += 2 * 60_000 // the watermark passes the first minute's end
		}
		recs = append(recs, log.Record{Value: fmt.Appendf(nil, `{"ts":%d,"service":"a","status":"ok","response_time":1}`, ts)})
	}
	if _, err := part.Append(recs, log.AcksLeader); err != nil {
		t.Fatal(err)
	}
	p := testPlan(t, benchYAML)
	for _, from := range []int64{0, 500} {
		fd, err := newFeed(part, from, part.HighWatermark())
		if err != nil {
			t.Fatal(err)
		}
		wk, err := newWaker([]*feed{fd}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ps := &partState{feed: fd}
		ps.wm, ps.maxT, ps.next = minWatermark, minWatermark, from
		w := newWorker(p, newKeyTable(), []*partState{ps}, wk, false)
		for ps.next < batchRecords && !ps.exhausted {
			if _, err := w.step(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		wk.close()
		if ps.next != batchRecords {
			t.Fatalf("reading from %d: the round of the boundary event (offset %d) ended at %d", from, batchRecords-1, ps.next)
		}
	}
	// The whole run: the first minute is emitted at the boundary event with
	// the events before it, then again with the late one.
	f, err := Parse("t.yaml", []byte(benchYAML))
	if err != nil {
		t.Fatal(err)
	}
	var out countingWriter
	if err := Run(t.Context(), l, f, Options{UntilEnd: true, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(out.buf.String(), "\n") {
		var r struct {
			WindowStart string `json:"window_start"`
			Revision    int
			Metrics     struct {
				Count int `json:"request_count"`
			}
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.WindowStart == "2026-11-22T10:00:00Z" {
			got = append(got, fmt.Sprintf("revision %d: %d events", r.Revision, r.Metrics.Count))
		}
	}
	if want := []string{"revision 0: 1023 events", "revision 1: 1024 events"}; !slices.Equal(got, want) {
		t.Fatalf("first minute emitted as %q, want %q", got, want)
	}
}

// BenchmarkProcess is the per-event cost of a worker: parse the 4 fields,
// compute time and watermark, intern the key, assign the window, update
// counts, exact sum, max and the histogram. The limit is measured in the
// same loop: after every 1024 events, the bare fastjson parse of the same
// 1024 (parse4), timed apart, so that the machine's state of the moment
// weighs on both; x-parse is the ratio of the two rates.
func BenchmarkProcess(b *testing.B) { benchProcess(b, benchYAML) }

// BenchmarkProcessWindows is BenchmarkProcess with hopping windows (5m
// advancing by 1m: an event in five windows) and session windows (gap
// 30s: each key's events are one session).
func BenchmarkProcessWindows(b *testing.B) {
	for _, c := range []struct{ name, window string }{
		{"hopping", "{type: hopping, size: 5m, advance: 1m}"},
		{"session", "{type: session, gap: 30s}"},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchProcess(b, strings.Replace(benchYAML, "{type: tumbling, size: 1m}", c.window, 1))
		})
	}
}

func benchProcess(b *testing.B, yaml string) {
	w, ps := testWorker(b, yaml)
	evs := benchEvents(1 << 16)
	recs := make([]log.Record, len(evs))
	var bytes int64
	for i := range recs {
		recs[i] = log.Record{Offset: int64(i), Value: evs[i]}
		bytes += int64(len(evs[i]))
	}
	b.SetBytes(bytes / int64(len(recs)))
	b.ReportAllocs()
	var p fastjson.Parser
	var processTime, parseTime time.Duration
	b.ResetTimer()
	var sink float64
	n := 0
	for n < b.N {
		j := n & (1<<16 - 1)
		if j == 0 && n > 0 {
			// A new pass over the data: a fresh round, as the engine would
			// start, with the last round's message back from the
			// coordinator for reuse. The round ends as step ends it: a
			// session pipeline reports the spans it touched (which
			// resets their list, else grown by an event in ~2 for ever:
			// 20 B/op that no run has).
			ps.sessions.report(ps.id, w.msg)
			w.back.Push(w.msg)
			w.begin()
			ps.wm, ps.maxT = minWatermark, minWatermark
		}
		chunk := recs[j : j+1024]
		t0 := time.Now()
		for k := range chunk {
			w.process(ps, &chunk[k])
		}
		t1 := time.Now()
		for k := range chunk {
			sink += parse4(&p, chunk[k].Value)
		}
		processTime += t1.Sub(t0)
		parseTime += time.Since(t1)
		n += len(chunk)
	}
	b.ReportMetric(float64(n)/processTime.Seconds(), "events/s")
	b.ReportMetric(float64(n)/parseTime.Seconds(), "parse4-events/s")
	b.ReportMetric(parseTime.Seconds()/processTime.Seconds(), "x-parse")
	_ = sink
}

// parse4 is the limit: fastjson parsing an event and reading the four
// fields the pipeline uses, nothing else.
func parse4(p *fastjson.Parser, ev []byte) float64 {
	v, err := p.ParseBytes(ev)
	if err != nil {
		panic(err)
	}
	return v.GetFloat64("ts") + v.GetFloat64("response_time") +
		float64(len(v.GetStringBytes("service"))+len(v.GetStringBytes("status")))
}

// BenchmarkFastjsonParse4 is the limit the per-event path is measured
// against, alone: fastjson parsing the same events and reading the same 4
// fields, nothing else.
func BenchmarkFastjsonParse4(b *testing.B) {
	evs := benchEvents(1 << 16)
	var p fastjson.Parser
	var bytes int64
	for _, e := range evs {
		bytes += int64(len(e))
	}
	b.SetBytes(bytes / int64(len(evs)))
	b.ReportAllocs()
	var sink float64
	for i := 0; b.Loop(); i++ {
		sink += parse4(&p, evs[i&(1<<16-1)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sink
}

// naivePipeline is what a user writes by hand: encoding/json into a map,
// a map of windows, values kept in slices and sorted for the percentile.
type naivePipeline struct {
	windows map[string]*naiveWindow
}

type naiveWindow struct {
	count, errors int
	rts           []float64
}

func (np *naivePipeline) add(line []byte) {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return
	}
	ts, ok := m["ts"].(float64)
	if !ok {
		return
	}
	key := fmt.Sprintf("%v|%d", m["service"], int64(ts)/60000)
	w := np.windows[key]
	if w == nil {
		w = &naiveWindow{}
		np.windows[key] = w
	}
	w.count++
	if m["status"] == "error" {
		w.errors++
	}
	if rt, ok := m["response_time"].(float64); ok {
		w.rts = append(w.rts, rt)
	}
}

func (np *naivePipeline) p95(w *naiveWindow) float64 {
	sort.Float64s(w.rts)
	return w.rts[int(math.Ceil(0.95*float64(len(w.rts))))-1]
}

// BenchmarkNaive is the hand-written pipeline over the same events: parse
// and aggregate per event, and the percentiles once per window as each
// minute closes.
func BenchmarkNaive(b *testing.B) {
	evs := benchEvents(1 << 16)
	np := &naivePipeline{windows: map[string]*naiveWindow{}}
	b.ReportAllocs()
	var sink float64
	for i := 0; b.Loop(); i++ {
		np.add(evs[i&(1<<16-1)])
		if i%60000 == 59999 {
			for k, w := range np.windows {
				if len(w.rts) > 0 {
					sink += np.p95(w)
				}
				delete(np.windows, k)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sink
}

// runLog produces n events into a topic of parts partitions, in a fresh
// data directory, without keys: spread evenly, so that workers get equal
// shares (keyed by service, 8 keys over 6 partitions hash unevenly).
func runLog(tb testing.TB, n, parts int) *log.Log {
	l, t := testTopic(tb, parts)
	pr, _ := producer.New(t, producer.Options{Acks: log.AcksLeader, Partition: -1})
	for _, e := range benchEvents(n) {
		if err := pr.Add(nil, e, 0); err != nil {
			tb.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		tb.Fatal(err)
	}
	return l
}

// testTopic opens a log in a fresh data directory with an empty topic
// "events" of parts partitions.
func testTopic(tb testing.TB, parts int) (*log.Log, *log.Topic) {
	l, err := log.Open(tb.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	t, err := l.CreateTopic("events", log.TopicConfig{Partitions: int32(parts)})
	if err != nil {
		tb.Fatal(err)
	}
	return l, t
}

// benchRun is the setup of the run benchmarks: n events in a 6-partition
// topic (runLog) and the api-health pipeline.
func benchRun(b *testing.B, n int) (*log.Log, *File) {
	l := runLog(b, n, 6)
	f, err := Parse("bench.yaml", []byte(benchYAML))
	if err != nil {
		b.Fatal(err)
	}
	return l, f
}

// BenchmarkRunUntilEnd runs the api-health pipeline over 1M events in a
// 6-partition topic with as many workers as GOMAXPROCS (-cpu 1,2 shows the
// scaling). One op is one whole run; events/s is the figure.
func BenchmarkRunUntilEnd(b *testing.B) {
	const n = 1_000_000
	l, f := benchRun(b, n)
	defer l.Close()
	evs := benchEvents(n)
	var p fastjson.Parser
	var sink float64
	runtime.GC() // the setup's garbage is not the run's
	b.ReportAllocs()
	b.ResetTimer()
	var runTime, parseTime time.Duration
	// The limit in the same op, untimed by b: the bare parse of the same
	// events on this goroutine, half just before the run and half just
	// after it, so that the machine drifting during the op weighs on both.
	parse := func(evs [][]byte) {
		b.StopTimer()
		t := time.Now()
		for _, ev := range evs {
			sink += parse4(&p, ev)
		}
		parseTime += time.Since(t)
		b.StartTimer()
	}
	for range b.N {
		parse(evs[:n/2])
		t0 := time.Now()
		if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &countingWriter{}}); err != nil {
			b.Fatal(err)
		}
		runTime += time.Since(t0)
		parse(evs[n/2:])
	}
	b.ReportMetric(float64(n*b.N)/runTime.Seconds(), "events/s")
	b.ReportMetric(float64(n*b.N)/parseTime.Seconds(), "parse4-events/s")
	b.ReportMetric(parseTime.Seconds()/runTime.Seconds(), "x-parse")
	_ = sink
}

// benchAlerts are SPEC's example's alert rules, for benchYAML.
const benchAlerts = `    alerts:
      - {name: high-error-rate, when: 'error_rate > 0.05', for: 2, severity: critical}
      - {name: slow-p95, when: 'p95_response_time > 2000', severity: warning}
`

// BenchmarkRunManyKeys runs the api-health pipeline, with SPEC's alert
// rules, over 200k events of 20k keys (services, the topic's key too)
// spread over half an hour: ~10 events per key, most alone in their
// minute. With tumbling windows of a minute, or sessions of gap 30s, a run
// writes ~170k results (windows and alert transitions), nearly one per
// event, where RunUntilEnd writes one per 7,500. Its cost is the
// coordinator's, which merges, emits, evaluates the alert rules on and
// forgets every window on one goroutine. One op is one whole run;
// events/s and windows/s (results, alerts included) are the figures.
func BenchmarkRunManyKeys(b *testing.B) {
	const n, keys = 200_000, 20_000
	l, t := testTopic(b, 6)
	defer l.Close()
	pr, _ := producer.New(t, producer.Options{Acks: log.AcksLeader, Partition: -1})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		key := fmt.Appendf(nil, "svc-%d", rng.IntN(keys))
		ev := fmt.Appendf(nil, `{"ts":%d,"service":%q,"status":"ok","response_time":%.1f}`,
			1795341600000+int64(i)*9, key, rng.ExpFloat64()*120)
		if err := pr.Add(key, ev, 0); err != nil { // keyed by service, as produce --key-field service
			b.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		b.Fatal(err)
	}
	for _, window := range []string{"tumbling", "session"} {
		b.Run(window, func(b *testing.B) {
			yaml := benchYAML + benchAlerts
			if window == "session" {
				yaml = strings.Replace(yaml, "{type: tumbling, size: 1m}", "{type: session, gap: 30s}", 1)
			}
			f, err := Parse("bench.yaml", []byte(yaml))
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			b.ReportAllocs()
			out := countingWriter{discard: true}
			for b.Loop() {
				if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &out}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(out.lines-b.N)/b.Elapsed().Seconds(), "windows/s") // less the stats lines
		})
	}
}

// BenchmarkRunScaling is the 1 -> 2 CPU scaling of run --until-end
// measured in one loop: each op runs the pipeline over the same 1M events
// on 1 CPU (GOMAXPROCS 1, one worker) and on 2 (GOMAXPROCS 2, two
// workers), timed apart and in alternating order, so that the machine's
// state of the moment weighs on both; x-1cpu is the ratio of the two
// rates. (RunUntilEnd with -cpu 1,2 gives the same two figures from runs
// minutes apart.) The machine's own scaling is measured in the same op:
// the bare parse of the same events on one goroutine, then split over two
// (parse-x-1cpu); two vCPUs of a VM rarely give twice one.
func BenchmarkRunScaling(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs")
	}
	const n = 1_000_000
	l, f := benchRun(b, n)
	defer l.Close()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var took [3]time.Duration // by CPUs
	run := func(cpus int) {
		runtime.GOMAXPROCS(cpus)
		t := time.Now()
		if err := Run(context.Background(), l, f, Options{UntilEnd: true, Workers: cpus, Stdout: &countingWriter{}}); err != nil {
			b.Fatal(err)
		}
		took[cpus] += time.Since(t)
	}
	evs := benchEvents(n)
	var parsed [3]time.Duration
	var sink [2]float64
	parse := func(cpus int) {
		runtime.GOMAXPROCS(cpus)
		t := time.Now()
		var wg sync.WaitGroup
		for g := range cpus {
			wg.Go(func() {
				var p fastjson.Parser
				var sum float64 // local: the two goroutines share no cache line
				for _, ev := range evs[g*n/cpus : (g+1)*n/cpus] {
					sum += parse4(&p, ev)
				}
				sink[g] = sum
			})
		}
		wg.Wait()
		parsed[cpus] += time.Since(t)
	}
	runtime.GC()
	b.ResetTimer()
	for i := range b.N {
		first, second := 1, 2
		if i%2 == 1 {
			first, second = 2, 1
		}
		run(first)
		run(second)
		b.StopTimer()
		parse(first)
		parse(second)
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/took[2].Seconds(), "events/s")
	b.ReportMetric(float64(n*b.N)/took[1].Seconds(), "1cpu-events/s")
	b.ReportMetric(took[1].Seconds()/took[2].Seconds(), "x-1cpu")
	b.ReportMetric(float64(n*b.N)/parsed[2].Seconds(), "parse-events/s")
	b.ReportMetric(float64(n*b.N)/parsed[1].Seconds(), "parse-1cpu-events/s")
	b.ReportMetric(parsed[1].Seconds()/parsed[2].Seconds(), "parse-x-1cpu")
}

// countingWriter counts the lines written to it, and keeps them unless
// told to discard them.
type countingWriter struct {
	mu      sync.Mutex
	lines   int
	buf     bytes.Buffer
	discard bool
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines += bytes.Count(b, []byte{'\n'})
	if !c.discard {
		c.buf.Write(b)
	}
	return len(b), nil
}

// TestRunInProcess runs the engine as a library: until-end, results equal
// for 1 and 2 workers, stats count every record.
func TestRunInProcess(t *testing.T) {
	l := runLog(t, 20000, 3)
	defer l.Close()
	f, _ := Parse("t.yaml", []byte(benchYAML))
	var outs []string
	for _, workers := range []int{1, 2} {
		var out countingWriter
		var results []string
		var mu sync.Mutex
		err := Run(context.Background(), l, f, Options{UntilEnd: true, Workers: workers, Stdout: &out,
			Observe: func(r *Result) { mu.Lock(); results = append(results, string(r.Line)); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		s := out.buf.String()
		if !strings.Contains(s, `"type":"stats","pipeline":"api-health","records":20000,"events":20000,"rejected":{},"late_dropped":0`) {
			t.Fatalf("stats: %s", s[strings.LastIndex(s[:len(s)-1], "\n")+1:])
		}
		if len(results) != out.lines-1 {
			t.Fatalf("observer saw %d results, stdout has %d", len(results), out.lines-1)
		}
		outs = append(outs, s)
	}
	if outs[0] != outs[1] {
		t.Fatal("1 and 2 workers differ")
	}
}

// countPipeline parses pipeline p over topic events: a count per service
// in tumbling windows of size, with time section {timeConf} and extra
// pipeline keys (each "key: value").
func countPipeline(t testing.TB, timeConf, size string, extra ...string) *File {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "pipelines:\n  - name: p\n    source: {topic: events, start: earliest}\n    time: {%s}\n    group_by: [service]\n    window: {type: tumbling, size: %s}\n", timeConf, size)
	for _, e := range extra {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	b.WriteString("    metrics:\n      - {name: n, agg: count}\n")
	f, err := Parse("t.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSourceStart: source.start earliest, OFFSET, RFC3339 and latest,
// per partition, over partitions that keys filled unevenly. An offset is
// where a partition has one and its end where it is shorter (as
// kafka-consumer-groups --to-offset clamps), not an error; a time is the
// first record at or after it, by record timestamp.
func TestSourceStart(t *testing.T) {
	const n = 3000
	l, tp := testTopic(t, 3)
	defer l.Close()
	pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: -1})
	for i, e := range benchEvents(n) {
		if err := pr.Add([]byte(services[i%3]), e, 1795341600000+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	var sizes [3]int64
	for id := range sizes {
		p, _ := tp.Partition(int32(id))
		sizes[id] = p.HighWatermark()
	}
	lo, hi := min(sizes[0], sizes[1], sizes[2]), max(sizes[0], sizes[1], sizes[2])
	from := (lo + hi) / 2
	if lo >= from {
		t.Fatalf("partitions not uneven: %v", sizes)
	}
	fromOffset := int64(0)
	for _, s := range sizes {
		fromOffset += max(s-from, 0)
	}
	at := time.UnixMilli(1795341600000 + 1234).UTC().Format(time.RFC3339Nano)
	for _, c := range []struct {
		start   string
		records int64
	}{{"earliest", n}, {strconv.FormatInt(from, 10), fromOffset}, {"'" + at + "'", n - 1234}, {"latest", 0}} {
		f, err := Parse("t.yaml", []byte(strings.Replace(benchYAML, "start: earliest", "start: "+c.start, 1)))
		if err != nil {
			t.Fatal(err)
		}
		var out countingWriter
		if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &out}); err != nil {
			t.Fatalf("start %s: %v", c.start, err)
		}
		if want := fmt.Sprintf(`"type":"stats","pipeline":"api-health","records":%d,`, c.records); !strings.Contains(out.buf.String(), want) {
			s := out.buf.String()
			t.Fatalf("start %s over partitions of %v: want %s, got %s", c.start, sizes, want, s[strings.LastIndex(s[:len(s)-1], "\n")+1:])
		}
	}
	// An offset that retention (here DeleteRecords) removed starts at the
	// log start, and says so.
	big := 0
	for id, n := range sizes {
		if n > sizes[big] {
			big = id
		}
	}
	p, _ := tp.Partition(int32(big))
	if _, err := p.DeleteRecords(50); err != nil {
		t.Fatal(err)
	}
	f, _ := Parse("t.yaml", []byte(strings.Replace(benchYAML, "start: earliest", "start: 10", 1)))
	var out countingWriter
	var logged bytes.Buffer
	if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &out, Logger: slog.New(slog.NewTextHandler(&logged, nil))}); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for id, n := range sizes {
		want += max(n-10, 0)
		if id == big {
			want -= 40
		}
	}
	if !strings.Contains(out.buf.String(), fmt.Sprintf(`"records":%d,`, want)) || !strings.Contains(logged.String(), "no longer in the log") {
		t.Fatalf("start 10 below partition %d's log start 50: want %d records and a warning; logged %s", big, want, logged.String())
	}
}

// TestFollowKeepsWindowsForPartitionsWithoutEvents: following, a
// partition that has had no event yet does not hold the results back, but
// the windows others closed are kept for it (until idle_timeout): records
// a producer writes to one partition after another's are judged by their
// own partition's watermark (SPEC) and counted - a key's window seen for
// the first time is emitted, one already emitted re-emitted with revision
// 1 - where those windows were forgotten and the records counted as late.
// A stop and a restart in between keep them too.
func TestFollowKeepsWindowsForPartitionsWithoutEvents(t *testing.T) {
	l, tp := testTopic(t, 2)
	defer l.Close()
	f := countPipeline(t, "field: ts, unit: ms", "10s")
	var mu sync.Mutex
	var results []string
	var r *Runner
	var pl *Pipeline
	start := func() {
		var err error
		r, err = Start(context.Background(), l, f, Options{Stdout: &countingWriter{},
			Observe: func(r *Result) { mu.Lock(); results = append(results, string(r.Line)); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		pl = r.Pipelines()[0]
	}
	start()
	defer func() { r.Stop(); r.Wait() }()
	write := func(part int32, services ...string) {
		pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: part})
		for i := range 100 {
			for _, s := range services {
				pr.Add(nil, fmt.Appendf(nil, `{"ts":%d,"service":%q}`, 1795341600000+int64(i)*1000, s), 0)
			}
		}
		if err := pr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	processed := func(n int64) *Snapshot {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if s := pl.Snapshot(); s != nil && s.Stats.Records == n {
				return s
			}
		}
		t.Fatalf("%d records not processed", n)
		return nil
	}
	// count is the number of key's windows emitted with metrics n.
	count := func(key string, n int) int {
		mu.Lock()
		defer mu.Unlock()
		starts := map[string]bool{}
		for _, line := range results {
			var r struct {
				Key         map[string]string
				WindowStart string `json:"window_start"`
				Revision    int
				Metrics     map[string]int
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.Key["service"] == key && r.Metrics["n"] == n {
				if n == 20 && r.Revision == 0 {
					t.Errorf("key %s window %s: n 20 in revision 0", key, r.WindowStart)
				}
				starts[r.WindowStart] = true
			}
		}
		return len(starts)
	}
	// Key a's first nine windows on partition 0 alone: emitted at once.
	write(0, "a")
	processed(100)
	for deadline := time.Now().Add(30 * time.Second); count("a", 10) < 9; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("partition 0's windows not emitted while partition 1 has no event")
		}
	}
	// Stopped and started again: the checkpoint keeps the windows kept.
	r.Stop()
	if err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	start()
	write(1, "a", "b")
	if s := processed(300); s.Stats.LateDropped != 0 {
		t.Fatalf("partition 1's records, in order and none late by its watermark: %d dropped as late", s.Stats.LateDropped)
	}
	// Key b's windows emitted for the first time, key a's re-emitted with
	// both partitions' events (revisions 1 and, where partition 1's rounds
	// split a window, 2).
	for deadline := time.Now().Add(30 * time.Second); count("b", 10) < 9 || count("a", 20) < 9; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("key b: %d of 9 windows emitted; key a: %d of 9 re-emitted", count("b", 10), count("a", 20))
		}
	}
}

// TestFollowIdlePartitionComesBackLate: a partition idle for idle_timeout
// stops holding the pipeline back, and the windows the others close are
// forgotten; when it comes back with events older than those, its worker
// refuses them as late by the coordinator's purge horizon, so that they
// are counted and copied to the late topic with the watermark that
// refused them - they were counted as late and copied nowhere.
func TestFollowIdlePartitionComesBackLate(t *testing.T) {
	l, tp := testTopic(t, 2)
	defer l.Close()
	f := countPipeline(t, "field: ts, unit: ms, idle_timeout: 200ms", "10s", "late_topic: true")
	r, err := Start(context.Background(), l, f, Options{Stdout: &countingWriter{}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Stop(); r.Wait() }()
	pl := r.Pipelines()[0]
	write := func(part int32, from, to int) {
		pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: part})
		for i := from; i < to; i++ {
			pr.Add(nil, fmt.Appendf(nil, `{"ts":%d,"service":"s"}`, 1795341600000+int64(i)*1000), 0)
		}
		if err := pr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	until := func(what string, cond func(s *Snapshot) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if s := pl.Snapshot(); s != nil && cond(s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in 30s: %+v", what, pl.Snapshot())
			}
		}
	}
	write(1, 0, 1)
	until("partition 1's event", func(s *Snapshot) bool { return s.Stats.Records == 1 })
	time.Sleep(300 * time.Millisecond) // partition 1 goes idle
	write(0, 0, 200)
	// Forgotten means every worker already judges by a horizon past them.
	until("partition 0's windows forgotten", func(s *Snapshot) bool { return s.Stats.Records == 201 && s.OpenWindows == 1 })
	write(1, 1, 100)
	until("partition 1's late events", func(s *Snapshot) bool { return s.Stats.Records == 300 })
	if s := pl.Snapshot(); s.Stats.LateDropped != 99 {
		t.Fatalf("late_dropped %d, want partition 1's 99 events older than the forgotten windows", s.Stats.LateDropped)
	}
	late, _ := l.Topic("p.late")
	p, _ := late.Partition(0)
	for deadline := time.Now().Add(30 * time.Second); p.HighWatermark() != 99; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("p.late holds %d records, want the 99 counted late", p.HighWatermark())
		}
	}
}

// TestUntilEndHoldsForPartitionsWithoutEvents: a partition whose first
// rounds bring no event (more rejected records than a round reads) holds
// the watermark back until it has one: its events are judged by its own
// watermark, whatever another partition read meanwhile.
func TestUntilEndHoldsForPartitionsWithoutEvents(t *testing.T) {
	l, tp := testTopic(t, 2)
	defer l.Close()
	for part, bad := range []int{2 * roundRecords, 0} {
		pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: int32(part)})
		for range bad {
			pr.Add(nil, []byte("not json"), 0)
		}
		for i := range 100 {
			pr.Add(nil, fmt.Appendf(nil, `{"ts":%d,"service":"s%d"}`, 1795341600000+int64(i)*1000, part), 0)
		}
		if err := pr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f := countPipeline(t, "field: ts, unit: ms", "10s")
	for _, workers := range []int{1, 2} {
		var out countingWriter
		if err := Run(context.Background(), l, f, Options{UntilEnd: true, Workers: workers, Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`"records":%d,"events":200,"rejected":{"invalid_json":%d},"late_dropped":0}`, 200+2*roundRecords, 2*roundRecords); !strings.Contains(out.buf.String(), want) {
			s := out.buf.String()
			t.Fatalf("%d workers: want %s, got %s", workers, want, s[strings.LastIndex(s[:len(s)-1], "\n")+1:])
		}
	}
}

// TestFollowAndCancel runs without until-end: results appear as the log
// grows, and cancelling stops the run cleanly.
func TestFollowAndCancel(t *testing.T) {
	l := runLog(t, 1000, 2)
	defer l.Close()
	f, _ := Parse("t.yaml", []byte(benchYAML))
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1000)
	done := make(chan error)
	go func() {
		done <- Run(ctx, l, f, Options{Stdout: &countingWriter{}, Observe: func(r *Result) { got <- string(r.Line) }})
	}()
	// Events a few minutes later close the first windows.
	tp, _ := l.Topic("events")
	pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: -1})
	for i := 0; i < 200; i++ {
		pr.Add([]byte(services[i%8]), fmt.Appendf(nil, `{"ts":%d,"service":%q,"status":"ok","response_time":1}`,
			1795341600000+int64(180000+i), services[i%8]), 0)
	}
	pr.Close()
	select {
	case line := <-got:
		if !strings.Contains(line, `"window_start":"2026-11-22T10:00:00Z"`) {
			t.Fatalf("first result %s", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no result while following")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
}

// TestReadSkipsWhatRetentionDeleted: a following worker whose position
// retention deleted goes on from the log start, counting and logging the
// records it lost; an until-end read never skips.
func TestReadSkipsWhatRetentionDeleted(t *testing.T) {
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tp, err := l.CreateTopic("events", log.TopicConfig{Partitions: 1, SegmentBytes: 4096, RetentionBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tp.Partition(0)
	for i := 0; i < 400; i++ {
		if _, err := p.Append([]log.Record{{Value: fmt.Appendf(nil, `{"n":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, i)}}, log.AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := newFeed(p, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.r.Close()
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	start := p.LogStartOffset()
	if start == 0 {
		t.Fatal("retention deleted nothing")
	}
	var logged bytes.Buffer
	w := &waker{logger: slog.New(slog.NewTextHandler(&logged, nil))}
	recs, err := w.read(fd, make([]log.Record, 0, 16))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[0].Offset != start {
		t.Fatalf("read from %v, want the log start %d", recs, start)
	}
	if w.skipped.Load() != start || !strings.Contains(logged.String(), "deleted by retention") {
		t.Fatalf("skipped %d (want %d), log %q", w.skipped.Load(), start, logged.String())
	}
	// Until-end, the same loss is an error, not a skip.
	fd2, err := newFeed(p, start, p.HighWatermark())
	if err != nil {
		t.Fatal(err)
	}
	defer fd2.r.Close()
	for i := 0; i < 400; i++ {
		p.Append([]log.Record{{Value: []byte(`{"n":0,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)}}, log.AcksLeader)
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.read(fd2, make([]log.Record, 0, 16)); !errors.Is(err, log.ErrOffsetOutOfRange) {
		t.Fatalf("until-end read below the log start: %v", err)
	}
}

// TestPinWorkers: workers are pinned only when they leave a CPU free.
func TestPinWorkers(t *testing.T) {
	for _, c := range []struct {
		workers, procs int
		noPin, want    bool
	}{
		{1, 1, false, false}, {2, 2, false, false}, {1, 2, false, true},
		{6, 16, false, true}, {6, 16, true, false}, {16, 16, false, false},
	} {
		if got := pinWorkers(c.workers, c.procs, c.noPin); got != c.want {
			t.Errorf("pinWorkers(%d workers, %d CPUs, noPin %v) = %v", c.workers, c.procs, c.noPin, got)
		}
	}
}

// What a worker writes per event sits between cache-line pads, so that
// no line is written by two workers (objects allocated together sit side
// by side): 2-CPU runs scaled 1.53x without the pads, ~1.8x with them
// (medians of alternating RunScaling runs).
func TestHotStructsPadded(t *testing.T) {
	for _, c := range []struct {
		name           string
		first, lastEnd uintptr
		size           uintptr
	}{
		{"partState", unsafe.Offsetof(partState{}.partReport), unsafe.Offsetof(partState{}.readEnd) + 8, unsafe.Sizeof(partState{})},
		{"worker", unsafe.Offsetof(worker{}.p), unsafe.Offsetof(worker{}.horizons) + unsafe.Sizeof(worker{}.horizons), unsafe.Sizeof(worker{})},
		{"extractor", unsafe.Offsetof(extractor{}.p), unsafe.Offsetof(extractor{}.num) + unsafe.Sizeof(extractor{}.num), unsafe.Sizeof(extractor{})},
	} {
		if line := uintptr(cacheLine); c.first < line || c.size-c.lastEnd < line {
			t.Errorf("%s: %d bytes before its first field and %d after its last, want %d each", c.name, c.first, c.size-c.lastEnd, cacheLine)
		}
	}
}

// TestCheckpointChecksum: a checkpoint loads as saved; one damaged at rest
// is refused with a one-line error instead of restoring wrong state; one
// written before the checksum (plain gob) still loads.
func TestCheckpointChecksum(t *testing.T) {
	l, _ := testTopic(t, 1)
	defer l.Close()
	f, _ := Parse("t.yaml", []byte(benchYAML))
	c := f.Pipelines[0]
	s := &snapshot{Version: checkpointVersion, Fingerprint: fingerprint(c), Watermark: 1795341600000,
		Parts: []partSnap{{}}}
	if err := saveCheckpoint(l, c.Name, s); err != nil {
		t.Fatal(err)
	}
	got, err := loadCheckpoint(l, c, "")
	if err != nil || got.Watermark != s.Watermark {
		t.Fatalf("load: %+v %v", got, err)
	}
	path := checkpointPath(l, c.Name)
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte(checkpointMagic)) {
		t.Fatalf("checkpoint starts %q", b[:min(len(b), 12)])
	}
	for _, damage := range []func([]byte) []byte{
		func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }, // a flipped bit
		func(b []byte) []byte { return b[:len(b)-3] },           // cut short
		func(b []byte) []byte { return b[:len(checkpointMagic)+2] },
	} {
		os.WriteFile(path, damage(bytes.Clone(b)), 0o644)
		if _, err := loadCheckpoint(l, c, ""); err == nil || !strings.Contains(err.Error(), "is damaged") {
			t.Fatalf("damaged checkpoint: %v", err)
		}
	}
	// Written before the checksum: the gob alone.
	os.WriteFile(path, b[len(checkpointMagic)+4:], 0o644)
	if got, err := loadCheckpoint(l, c, ""); err != nil || got.Watermark != s.Watermark {
		t.Fatalf("checkpoint without checksum: %+v %v", got, err)
	}
	// Written over a source topic of another ID: deleted and created again
	// since, its offsets do not apply. A topic or checkpoint from before
	// topic IDs ("") is taken as the same topic.
	s.SourceID = "old-id"
	if err := saveCheckpoint(l, c.Name, s); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old-id", ""} {
		if _, err := loadCheckpoint(l, c, id); err != nil {
			t.Fatalf("source id %q: %v", id, err)
		}
	}
	if _, err := loadCheckpoint(l, c, "new-id"); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), "deleted since") {
		t.Fatalf("checkpoint over a deleted topic: %v", err)
	}
}

// TestSessionEndsRestore: a partition's session spans, reported and
// restored into a fresh sessionEnds (what a checkpoint does), end rounds
// where the original does — including a span that a late event extended
// below the watermark, whose close is still pending: the next watermark
// move must end a round in both.
func TestSessionEndsRestore(t *testing.T) {
	orig := sessionEnds{lateness: 60_000}
	orig.open(1, 1000, 4000, minWatermark) // [1000, 4000)
	orig.open(2, 1500, 4500, minWatermark)
	if !orig.closed(5000) { // both close
		t.Fatal("no close at 5000")
	}
	orig.open(1, 3900, 6900, minWatermark) // late, accepted: extends key 1's span to 6900 > 5000
	orig.open(2, 4400, 4900, minWatermark) // late, below the watermark: its close is pending
	m := &roundMsg{}
	orig.report(7, m)
	restored := sessionEnds{lateness: 60_000}
	for _, r := range m.spans {
		restored.restore(r.key, append([]span(nil), r.spans...))
	}
	for _, wm := range []int64{5001, 6000, 6900, 7000, 64_900, 64_901, 66_900, 70_000} {
		if a, b := orig.closed(wm), restored.closed(wm); a != b {
			t.Fatalf("at watermark %d: the original ends a round: %v, the restored: %v", wm, a, b)
		}
	}
	if len(orig.spans) != 0 || len(restored.spans) != 0 {
		t.Fatalf("spans left: %v, %v", orig.spans, restored.spans)
	}
}

// TestFollowBacklogOnOnePartition: a following run whose backlog is all
// on one worker's partition goes at that worker's pace. The coordinator
// merges round r of every worker together, and the idle worker used to
// send its empty rounds only at its 100 ms idle timeout: with a window
// end at every event (a round each), these 3,000 events took 300 s.
func TestFollowBacklogOnOnePartition(t *testing.T) {
	l, tp := testTopic(t, 2)
	defer l.Close()
	pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: 0})
	const n = 3000
	for i := range n {
		pr.Add(nil, fmt.Appendf(nil, `{"ts":%d,"service":"a"}`, 1795341600000+int64(i)*1000), 0)
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	f := countPipeline(t, "field: ts, unit: ms", "1s")
	r, err := Start(context.Background(), l, f, Options{Workers: 2, Stdout: &countingWriter{}, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		r.Stop()
		if err := r.Wait(); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s := r.Pipelines()[0].Snapshot(); s != nil && s.Stats.Records == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: %+v", r.Pipelines()[0].Snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionJoinJudgedByTheSession: an event whose own window [t, t+gap)
// is past the watermark plus the allowed lateness, inside a session that
// is not, joins that session (Flink and Kafka Streams judge the merged
// window) — in a partition's spans and in the coordinator, even once the
// coordinator has purged up to past the event's own window; an event
// that meets only a session past the lateness is late, by its own
// partition's watermark.
func TestSessionJoinJudgedByTheSession(t *testing.T) {
	s := sessionEnds{lateness: 60_000}
	if end, ok := s.open(1, 100_000, 230_000, minWatermark); !ok || end != 230_000 {
		t.Fatalf("first event: %d %v", end, ok)
	}
	// Watermark 250,000 less the lateness: the event's own window ends at
	// 180,000, its session at 230,000.
	if end, ok := s.open(1, 150_000, 180_000, 250_000-60_000); !ok || end != 230_000 {
		t.Fatalf("event inside a session still there: merged end %d, accepted %v", end, ok)
	}
	if sp := s.spans[1]; len(sp) != 1 || sp[0].start != 100_000 || sp[0].end != 230_000 {
		t.Fatalf("spans %v", sp)
	}
	if end, ok := s.open(1, 150_000, 180_000, 300_000-60_000); ok {
		t.Fatalf("event meeting only a session past the lateness accepted (merged end %d)", end)
	}

	p := sessionCountPlan(t, "1m", "30s")
	c := newCoordinator(p, nil, nil)
	c.mergeSession(&sessDelta{key: 1, start: 100_000, end: 230_000, events: 6, st: c.states.get(), dead: minWatermark})
	c.expired, c.purged = 250_000, 250_000
	c.mergeSession(&sessDelta{key: 1, start: 150_000, end: 180_000, events: 1, st: c.states.get(), dead: 250_000 - 60_000})
	if l := c.sessionsOf(1); c.latePurged != 0 || len(l) != 1 || l[0].start != 100_000 || l[0].end != 230_000 {
		t.Fatalf("coordinator: late purged %d, sessions %v", c.latePurged, l)
	}
	// A fragment that meets no session and ends too early is purged.
	c.mergeSession(&sessDelta{key: 2, start: 150_000, end: 180_000, events: 1, st: c.states.get(), dead: 250_000 - 60_000})
	if c.latePurged != 1 || len(c.sessionsOf(2)) != 0 {
		t.Fatalf("lone late fragment: late purged %d, sessions %v", c.latePurged, c.sessionsOf(2))
	}
	// Lateness is judged per partition: a fragment from a partition whose
	// watermark (300,000) is ahead of the coordinator's horizon, the
	// minimum over partitions, does not join a session that is too late
	// for that partition (230,000 + 60,000), though the horizon keeps it.
	c.mergeSession(&sessDelta{key: 1, start: 225_000, end: 255_000, events: 1, st: c.states.get(), dead: 300_000 - 60_000})
	if l := c.sessionsOf(1); len(l) != 2 || l[0].end != 230_000 || l[1].start != 225_000 {
		t.Fatalf("fragment of a partition ahead joined a session too late for it: %v", l)
	}
}
