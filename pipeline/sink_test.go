package pipeline

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastflow/fastflow/log"
)

func sinkLog(t *testing.T, lines []string) *log.Log {
	t.Helper()
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := l.CreateTopic("events", log.TopicConfig{Partitions: 1})
	p, _ := tp.Partition(0)
	recs := make([]log.Record, len(lines))
	for i, s := range lines {
		recs[i] = log.Record{Value: []byte(s), TimestampMs: 1795341600000}
	}
	if _, err := p.Append(recs, log.AcksAll); err != nil {
		t.Fatal(err)
	}
	return l
}

func readTopic(t *testing.T, l *log.Log, name string) []log.Record {
	t.Helper()
	tp, err := l.Topic(name)
	if err != nil {
		t.Fatalf("topic %s: %v", name, err)
	}
	var out []log.Record
	for id := int32(0); id < tp.Partitions(); id++ {
		p, _ := tp.Partition(id)
		r, _ := p.NewReader(0)
		recs, _ := r.Read(make([]log.Record, 0, 1000))
		for _, rc := range recs {
			rc.Key, rc.Value = append([]byte(nil), rc.Key...), append([]byte(nil), rc.Value...)
			out = append(out, rc)
		}
	}
	return out
}

func TestSinksAndSideTopics(t *testing.T) {
	var mu sync.Mutex
	var posted []string
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", 400)
			return
		}
		mu.Lock()
		posted = append(posted, string(b))
		mu.Unlock()
	}))
	defer am.Close()
	lines := []string{
		`{"ts":1795341600000,"service":"pay","status":"error"}`,
		`{"ts":1795341601000,"service":"pay","status":"error"}`,
		`not json`,
		`{"ts":"soon","service":"pay"}`,
		`{"ts":1795341720000,"service":"pay","status":"ok"}`, // closes 10:00 and 10:01
		`{"ts":1795341600500,"service":"pay","status":"ok"}`, // too late (lateness 0)
		`{"ts":1795341900000,"service":"pay","status":"ok"}`,
	}
	l := sinkLog(t, lines)
	defer l.Close()
	f, err := Parse("s.yaml", []byte(`pipelines:
  - name: sinks
    source: {topic: events}
    time: {field: ts, unit: ms}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    dlq: true
    late_topic: true
    metrics:
      - {name: n, agg: count}
      - {name: errors, agg: count, where: 'status == "error"'}
    alerts:
      - {name: errors, when: 'errors > 0', severity: page}
    sinks:
      - {type: topic, topic: sinks.results}
      - {type: webhook, url: '`+am.URL+`/api/v2/alerts', format: alertmanager}
`))
	if err != nil {
		t.Fatal(err)
	}
	var out countingWriter
	if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if out.lines != 1 {
		t.Fatalf("no stdout sink: %d lines on stdout, want the stats line alone", out.lines)
	}
	// Results topic: windows and alerts, keyed by the group key.
	res := readTopic(t, l, "sinks.results")
	var kinds []string
	for _, r := range res {
		var o struct{ Type, State string }
		json.Unmarshal(r.Value, &o)
		kinds = append(kinds, o.Type+o.State)
		if string(r.Key) != `{"service":"pay"}` {
			t.Fatalf("result key %q", r.Key)
		}
	}
	// 10:00 (errors: fires), 10:02 (none: resolves), 10:05 at the end; 10:01 had no events.
	if strings.Join(kinds, ",") != "window,alertfiring,window,alertresolved,window" {
		t.Fatalf("results topic: %v", kinds)
	}
	// Dead letters with their reason; the too-late record with the watermark.
	dlq := readTopic(t, l, "sinks.dlq")
	if len(dlq) != 2 || !strings.Contains(string(dlq[0].Value), `{"reason":"invalid_json","record":{"topic":"events","partition":0,"offset":2,`) ||
		!strings.Contains(string(dlq[1].Value), `"reason":"bad_time"`) || !strings.Contains(string(dlq[1].Value), `"value":{"ts":"soon"`) {
		t.Fatalf("dlq: %v", dlq)
	}
	late := readTopic(t, l, "sinks.late")
	if len(late) != 1 || !strings.Contains(string(late[0].Value), `"event_time":"2026-11-22T10:00:00.5Z","watermark":"2026-11-22T10:02:00Z","record":{"topic":"events","partition":0,"offset":5`) {
		t.Fatalf("late: %v", late)
	}
	// Alertmanager got the firing and the resolved alert, in v2 form.
	mu.Lock()
	defer mu.Unlock()
	if len(posted) != 2 {
		t.Fatalf("alertmanager got %d posts: %v", len(posted), posted)
	}
	var fire, resolve []amAlert
	json.Unmarshal([]byte(posted[0]), &fire)
	json.Unmarshal([]byte(posted[1]), &resolve)
	if len(fire) != 1 || fire[0].Labels["alertname"] != "errors" || fire[0].Labels["service"] != "pay" ||
		fire[0].Labels["severity"] != "page" || fire[0].Labels["pipeline"] != "sinks" || fire[0].EndsAt != "" || fire[0].Annotations["value"] != "2" {
		t.Fatalf("firing alert: %s", posted[0])
	}
	if len(resolve) != 1 || resolve[0].EndsAt == "" || resolve[0].StartsAt != fire[0].StartsAt ||
		resolve[0].Annotations["window_end"] != "2026-11-22T10:03:00Z" {
		t.Fatalf("resolved alert: %s", posted[1])
	}
}

// A webhook that keeps failing never blocks the pipeline: deliveries are
// retried, then dropped and counted in the stats line.
func TestWebhookRetriesAndDrops(t *testing.T) {
	var calls atomic.Int32
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable) // the first attempts fail, the retry succeeds
			return
		}
		w.WriteHeader(200)
	}))
	defer down.Close()
	p := testPlan(t, `pipelines:
  - name: x
    source: {topic: e}
    window: {type: tumbling, size: 1m}
    metrics: [{name: n, agg: count}]
    alerts: [{name: a, when: 'n > 0'}]
    sinks: [{type: webhook, url: '`+down.URL+`'}]
`)
	h := newWebhook(p, p.cfg.Sinks[0], slog.New(slog.DiscardHandler))
	ev := alertEvent{rule: &p.alerts[0], firing: true, key: "", start: 0, end: 60000}
	h.enqueue([]byte(`{"type":"alert"}`), &ev)
	deadline := time.Now().Add(20 * time.Second)
	for h.sent.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.sent.Load() != 1 || calls.Load() != 3 {
		t.Fatalf("sent %d after %d calls", h.sent.Load(), calls.Load())
	}
	h.close()
	// Nothing listens: the queue fills, the overflow is dropped at once.
	dead := newWebhook(p, SinkConfig{Type: "webhook", URL: "http://127.0.0.1:1/", Format: "json"}, slog.New(slog.DiscardHandler))
	dead.closeWait = 200 * time.Millisecond
	for i := 0; i < webhookQueue+100; i++ {
		dead.enqueue([]byte(`{}`), &ev)
	}
	if d := dead.dropped.Load(); d < 99 { // one is out of the queue, being delivered
		t.Fatalf("dropped %d of a full queue", d)
	}
	dead.close()
	if dead.dropped.Load() < webhookQueue {
		t.Fatalf("after close, %d dropped", dead.dropped.Load())
	}
}

// TestStatsCountWhatWebhooksDropAtTheEnd: at the end of an --until-end run
// the webhooks get their close wait to deliver what they hold; what they
// cannot is logged as sink_dropped after that wait, beside a stats line
// that keeps to SPEC's fields (SPEC's own example, run without an
// Alertmanager, printed "sink_dropped" in it).
func TestStatsCountWhatWebhooksDropAtTheEnd(t *testing.T) {
	var lines []string
	for i, s := range []string{"a", "b", "c", "a", "b", "c"} {
		lines = append(lines, `{"ts":`+strconv.Itoa(1000+i*30000)+`,"s":"`+s+`"}`)
	}
	l := sinkLog(t, lines)
	defer l.Close()
	f, err := Parse("t.yaml", []byte(`pipelines:
  - name: x
    source: {topic: events}
    time: {field: ts, unit: ms}
    group_by: [s]
    window: {type: tumbling, size: 1m}
    metrics: [{name: n, agg: count}]
    alerts: [{name: busy, when: 'n > 0'}]
    sinks: [{type: stdout}, {type: webhook, url: 'http://127.0.0.1:1/api/v2/alerts', format: alertmanager}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var out, logged strings.Builder
	logger := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &out, Logger: logger}); err != nil {
		t.Fatal(err)
	}
	printed := strings.Split(strings.TrimSpace(out.String()), "\n")
	alerts := strings.Count(out.String(), `"type":"alert"`)
	want := `{"type":"stats","pipeline":"x","records":6,"events":6,"rejected":{},"late_dropped":0}`
	if last := printed[len(printed)-1]; alerts != 3 || last != want {
		t.Fatalf("%d alerts; stats line %s, want %s", alerts, last, want)
	}
	if !strings.Contains(logged.String(), `msg="webhook sinks dropped alerts they could not deliver" pipeline=x sink_dropped=3`) ||
		strings.Contains(logged.String(), "context canceled") { // the ones given up on at close were "retrying"
		t.Fatalf("logged:\n%s\nwant sink_dropped=3", logged.String())
	}
}
