package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
	"github.com/fastflow/fastflow/pipeline"
)

const testYAML = `topics:
  - {name: events, partitions: 3}
pipelines:
  - name: api-health
    source: {topic: events}
    time: {field: ts, unit: ms}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: request_count, agg: count}
      - {name: error_count, agg: count, where: 'status == "error"'}
      - {name: error_rate, agg: ratio, of: error_count, over: request_count}
      - {name: p95_response_time, agg: percentile, field: response_time, q: 0.95}
    alerts:
      - {name: high-error-rate, when: 'error_rate > 0.05', severity: critical}
`

// startServer runs a server on 127.0.0.1 over a fresh data directory.
func startServer(t testing.TB, yaml string) (base string, l *log.Log) {
	t.Helper()
	return startServerWith(t, yaml, Options{})
}

// startServerWith is startServer with the server's options.
func startServerWith(t testing.TB, yaml string, opts Options) (base string, l *log.Log) {
	t.Helper()
	base, l, _ = runServer(t, yaml, opts)
	return base, l
}

// runServer is startServerWith that also returns a function that stops
// the server (ends Serve's context) and returns once Serve has.
func runServer(t testing.TB, yaml string, opts Options) (base string, l *log.Log, stop func()) {
	t.Helper()
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := pipeline.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.CreateTopics(l, f, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := New(l, f, opts)
	go func() { done <- srv.Serve(ctx, ln) }()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	t.Cleanup(func() { stop(); l.Close() })
	return "http://" + ln.Addr().String(), l, stop
}

func post(t *testing.T, url, ctype, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("reply is not JSON: %q", b)
	}
	return resp.StatusCode, v
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: not JSON: %q", url, b)
		}
	}
	return resp.StatusCode
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHTTPAPI(t *testing.T) {
	base, l := startServer(t, testYAML)

	// The stream, subscribed before anything happens.
	streamCtx, stopStream := context.WithCancel(context.Background())
	defer stopStream()
	req, _ := http.NewRequestWithContext(streamCtx, "GET", base+"/api/v1/stream", nil)
	streamResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := streamResp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream content type %q", ct)
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(streamResp.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "event: ") {
				name = strings.TrimPrefix(line, "event: ")
			} else if strings.HasPrefix(line, "data: ") && name != "progress" {
				events <- name + " " + strings.TrimPrefix(line, "data: ")
			}
		}
	}()

	// Ingest: JSON lines keyed by a field; each record's partition and offset come back.
	var lines strings.Builder
	for i := 0; i < 100; i++ {
		status := "ok"
		if i%5 == 0 {
			status = "error"
		}
		fmt.Fprintf(&lines, `{"ts":%d,"service":"svc-%d","status":%q,"response_time":%d}`+"\n", 1795341600000+int64(i)*100, i%3, status, 10+i)
	}
	code, reply := post(t, base+"/topics/events/records?key_field=service&acks=all", "application/x-ndjson", lines.String())
	if code != 200 {
		t.Fatalf("ingest: %d %v", code, reply)
	}
	recs := reply["records"].([]any)
	if len(recs) != 100 {
		t.Fatalf("%d results", len(recs))
	}
	for i, r := range recs {
		m := r.(map[string]any)
		want := partition.ForKey([]byte(fmt.Sprintf("svc-%d", i%3)), 3)
		if int32(m["partition"].(float64)) != want {
			t.Fatalf("record %d on partition %v, murmur2 says %d", i, m["partition"], want)
		}
	}
	// A JSON array; then a later event closes the first minute.
	code, reply = post(t, base+"/topics/events/records?key_field=service", "application/json",
		`[{"ts":1795341700000,"service":"svc-0","status":"ok"},{"ts":1795341700000,"service":"svc-1","status":"ok"},{"ts":1795341700000,"service":"svc-2","status":"ok"}]`)
	if code != 200 || len(reply["records"].([]any)) != 3 {
		t.Fatalf("array ingest: %d %v", code, reply)
	}

	// Bad requests: 4xx with a JSON error, nothing written.
	tp, _ := l.Topic("events")
	hw := func() int64 {
		var n int64
		for id := int32(0); id < 3; id++ {
			p, _ := tp.Partition(id)
			n += p.HighWatermark()
		}
		return n
	}
	before := hw()
	bad := func(path, ctype, body string, want int, msg string) {
		t.Helper()
		code, reply := post(t, base+path, ctype, body)
		if code != want || !strings.Contains(fmt.Sprint(reply["error"]), msg) {
			t.Errorf("POST %s: %d %v, want %d %q", path, code, reply, want, msg)
		}
	}
	bad("/topics/nope/records", "application/json", `{"a":1}`, 404, `topic "nope" does not exist`)
	bad("/topics/events/records", "application/json", `[{"a":1},`, 400, "not a JSON array")
	// A million [ (fastjson's validator took minutes on it), and an array
	// that is JSON but nests deeper than fastjson's parser goes.
	bad("/topics/events/records", "application/json", strings.Repeat("[", 1<<20), 400, "not a JSON array")
	bad("/topics/events/records", "application/json", strings.Repeat("[", 500)+strings.Repeat("]", 500), 400, "nested deeper than 300 levels")
	bad("/topics/events/records", "application/json", "", 400, "no records")
	bad("/topics/events/records?acks=2", "application/json", `{"a":1}`, 400, "invalid acks")
	bad("/topics/events/records?partition=9", "application/json", `{"a":1}`, 400, "invalid partition")
	bad("/topics/events/records", "application/json", `{"a":1}`+"\n"+`{"big":"`+strings.Repeat("x", 2<<20)+`"}`, 413, "record 1 is")
	bad("/topics/events/records", "application/json", strings.Repeat("x", maxIngestBytes+10), 413, "body over")
	if after := hw(); after != before {
		t.Fatalf("bad requests wrote %d records", after-before)
	}

	// The first minute's windows appear in the API and on the stream.
	var ws struct {
		Pipeline string            `json:"pipeline"`
		Windows  []json.RawMessage `json:"windows"`
	}
	waitUntil(t, "windows", func() bool {
		getJSON(t, base+"/api/v1/pipelines/api-health/windows?last=5", &ws)
		return len(ws.Windows) == 3
	})
	if getJSON(t, base+"/api/v1/pipelines/api-health/windows?key=svc-1", &ws) != 200 || len(ws.Windows) != 1 ||
		!strings.Contains(string(ws.Windows[0]), `"key":{"service":"svc-1"}`) || !strings.Contains(string(ws.Windows[0]), `"request_count":33`) {
		t.Fatalf("windows of svc-1: %s", ws.Windows)
	}
	getJSON(t, base+`/api/v1/pipelines/api-health/windows?key={"service":"svc-2"}`, &ws)
	if len(ws.Windows) != 1 {
		t.Fatalf("windows by key object: %s", ws.Windows)
	}
	if code := getJSON(t, base+"/api/v1/pipelines/nope/windows", nil); code != 404 {
		t.Fatalf("unknown pipeline: %d", code)
	}
	if code := getJSON(t, base+"/api/v1/pipelines/api-health/windows?last=0", nil); code != 400 {
		t.Fatalf("last=0: %d", code)
	}
	if getJSON(t, base+"/api/v1/pipelines/api-health/windows?keys=2", &ws) != 200 || len(ws.Windows) != 2 {
		t.Fatalf("keys=2: %s", ws.Windows)
	}
	if code := getJSON(t, base+"/api/v1/pipelines/api-health/windows?keys=0", nil); code != 400 {
		t.Fatalf("keys=0: %d", code)
	}
	// Alerts: svc-0 has 20% errors.
	var alerts struct{ Active, Recent []AlertView }
	getJSON(t, base+"/api/v1/alerts", &alerts)
	if len(alerts.Active) == 0 || alerts.Active[0].Alert != "high-error-rate" || alerts.Active[0].State != "firing" || alerts.Active[0].ActiveAt == "" {
		t.Fatalf("alerts: %+v", alerts)
	}
	got := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-events:
			got[strings.Fields(ev)[0]] = true
		case <-timeout:
			t.Fatalf("stream delivered %v", got)
		}
	}
	// Pipelines: progress and lag.
	var pipes []PipelineView
	waitUntil(t, "pipeline progress", func() bool {
		getJSON(t, base+"/api/v1/pipelines", &pipes)
		return len(pipes) == 1 && pipes[0].Stats.Records == 103
	})
	if pipes[0].Watermark == "" || len(pipes[0].Lag) != 3 || pipes[0].Metrics[3] != "p95_response_time" {
		t.Fatalf("pipelines: %+v", pipes[0])
	}
	// Metrics: a window gauge with its key label, and fastflow's own.
	body := scrape(t, base)
	for _, want := range []string{
		`fastflow_api_health_request_count{service="svc-1"} 33`,
		`fastflow_ingest_records_total{topic="events"} 103`,
		`fastflow_pipeline_records_total{pipeline="api-health"} 103`,
		`fastflow_pipeline_rejected_total{pipeline="api-health",reason="invalid_json"} 0`,
		`fastflow_pipeline_lag_records{partition="0",pipeline="api-health",topic="events"} 0`,
		`fastflow_pipeline_keys{pipeline="api-health"} 3`,
		`fastflow_pipeline_keys_forgotten_total{pipeline="api-health"} 0`,
		`fastflow_result_latency_seconds_count{pipeline="api-health"}`,
		`go_goroutines`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var health map[string]any
	if getJSON(t, base+"/healthz", &health) != 200 || health["status"] != "ok" {
		t.Fatalf("healthz: %v", health)
	}
	// The dashboard and its assets are served from the binary.
	for _, path := range []string{"/", "/static/app.js", "/static/uPlot.iife.min.js", "/static/uPlot.min.css"} {
		resp, err := http.Get(base + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, err, resp.Status)
		}
		resp.Body.Close()
	}
}

func TestServeWithoutPipelines(t *testing.T) {
	base, _ := startServer(t, "topics:\n  - {name: raw, partitions: 1}\n")
	code, reply := post(t, base+"/topics/raw/records", "text/plain", "hello\nworld\n")
	if code != 200 || len(reply["records"].([]any)) != 2 {
		t.Fatalf("%d %v", code, reply)
	}
	var pipes []PipelineView
	if getJSON(t, base+"/api/v1/pipelines", &pipes) != 200 || len(pipes) != 0 {
		t.Fatalf("pipelines: %v", pipes)
	}
}

// TestLogAndGroupMetrics: /metrics shows the log as kafka_exporter shows
// a Kafka cluster: each partition's high watermark, log-start offset and
// size, and each consumer group's committed offset and lag; the topics
// and groups APIs show the same as JSON.
func TestLogAndGroupMetrics(t *testing.T) {
	base, l := startServer(t, "topics:\n  - {name: raw, partitions: 2}\n")
	if code, _ := post(t, base+"/topics/raw/records?partition=1", "text/plain", "a\nb\nc\nd\ne\n"); code != 200 {
		t.Fatalf("ingest: %d", code)
	}
	g, _ := l.Group("audit")
	if err := g.Commit("raw", 1, 2); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, base)
	for _, want := range []string{
		`fastflow_log_high_watermark{partition="0",topic="raw"} 0`,
		`fastflow_log_high_watermark{partition="1",topic="raw"} 5`,
		`fastflow_log_start_offset{partition="1",topic="raw"} 0`,
		`fastflow_group_committed_offset{group="audit",partition="1",topic="raw"} 2`,
		`fastflow_group_lag_records{group="audit",partition="1",topic="raw"} 3`,
	} {
		if !bytes.Contains(body, []byte(want+"\n")) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !regexp.MustCompile(`fastflow_log_size_bytes\{partition="1",topic="raw"\} [1-9]`).Match(body) {
		t.Errorf("/metrics lacks partition 1's size")
	}
	if b := ReadBuild(); !bytes.Contains(body, []byte(fmt.Sprintf(`fastflow_build_info{goversion=%q,revision=%q,version=%q} 1`+"\n", b.GoVersion, b.Revision, b.Version))) {
		t.Errorf("/metrics lacks fastflow_build_info for %+v", b)
	}
	// The same as JSON, as the CLI's topic describe and group describe
	// print it.
	var topics []log.TopicInfo
	if getJSON(t, base+"/api/v1/topics", &topics) != 200 || len(topics) != 1 || topics[0].Topic != "raw" ||
		len(topics[0].Parts) != 2 || topics[0].Parts[1].HighWatermark != 5 || topics[0].Config.Retention != "168h0m0s" {
		t.Fatalf("topics API: %+v", topics)
	}
	var groups []log.GroupPartition
	if getJSON(t, base+"/api/v1/groups", &groups) != 200 || len(groups) != 2 || groups[1].Group != "audit" ||
		*groups[1].Committed != 2 || *groups[1].Lag != 3 || groups[0].Committed != nil {
		t.Fatalf("groups API: %+v", groups)
	}
	// A group's name is any text (Kafka clients choose it), a label value.
	g, _ = l.Group("orders service:v2 é\"x\"")
	if err := g.Commit("raw", 1, 4); err != nil {
		t.Fatal(err)
	}
	if want := `fastflow_group_lag_records{group="orders service:v2 é\"x\"",partition="1",topic="raw"} 1`; !bytes.Contains(scrape(t, base), []byte(want+"\n")) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestIngestSpreadsRecordsWithoutKey: records without a key go to one
// partition a batch (1024 records) at a time, and each request starts on
// the partition after the previous one's: a large request and a run of
// small ones both spread over the partitions, in request order within
// each. (Every record went to partition 0 before.)
func TestIngestSpreadsRecordsWithoutKey(t *testing.T) {
	base, _ := startServer(t, "topics:\n  - {name: raw, partitions: 3}\n")
	partitionsOf := func(body string) []int {
		t.Helper()
		code, reply := post(t, base+"/topics/raw/records", "application/x-ndjson", body)
		if code != 200 {
			t.Fatalf("%d %v", code, reply)
		}
		var ps []int
		last := map[int]float64{}
		for _, r := range reply["records"].([]any) {
			m := r.(map[string]any)
			p, off := int(m["partition"].(float64)), m["offset"].(float64)
			if o, ok := last[p]; ok && off != o+1 {
				t.Fatalf("partition %d: offset %v after %v", p, off, o)
			}
			last[p] = off
			ps = append(ps, p)
		}
		return ps
	}
	var big strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&big, `{"n":%d}`+"\n", i)
	}
	ps := partitionsOf(big.String())
	first := ps[0]
	for i, p := range ps {
		if want := (first + i/1024) % 3; p != want {
			t.Fatalf("record %d on partition %d, want %d (batches of 1024 from %d)", i, p, want, first)
		}
	}
	// Small requests: each on the partition after the previous request's.
	prev := ps[0]
	for i := range 6 {
		p := partitionsOf(fmt.Sprintf(`{"small":%d}`, i))[0]
		if p != (prev+1)%3 {
			t.Fatalf("request %d on partition %d after %d", i, p, prev)
		}
		prev = p
	}
}

// With Pyroscope set, the server streams profiles to it: the test stands
// in for the Pyroscope server's ingest endpoint and sees fastflow's CPU
// profile arrive (pyroscope-go uploads what it has when it stops).
func TestPyroscopeProfilesAreSent(t *testing.T) {
	got := make(chan string, 16)
	pyro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case got <- r.URL.Path + "?" + r.URL.RawQuery:
		default:
		}
	}))
	defer pyro.Close()
	l, err := log.Open(t.TempDir(), log.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(l, nil, Options{Pyroscope: pyro.URL}).Serve(ctx, ln) }()
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		if !strings.HasPrefix(req, "/ingest?") || !strings.Contains(req, "name=fastflow") {
			t.Fatalf("pyroscope got %s", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no profile reached the Pyroscope endpoint")
	}
}

// scrape returns the server's /metrics.
func scrape(t *testing.T, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestIngestTimestampField: ?timestamp_field= sets each record's
// timestamp from a field in unix ms or RFC 3339; a record where it is
// missing or not a timestamp is stored with the append's time and counted
// in the reply's bad_timestamp, as produce --timestamp-field counts it.
func TestIngestTimestampField(t *testing.T) {
	base, l := startServer(t, "topics:\n  - {name: raw, partitions: 1}\n")
	before := time.Now().UnixMilli()
	code, reply := post(t, base+"/topics/raw/records?timestamp_field=at", "application/x-ndjson",
		`{"at":1795341600123}`+"\n"+`{"at":"2026-11-22T10:00:01.5+01:00"}`+"\n"+`{"at":"yesterday"}`+"\n"+`{"other":1}`+"\n")
	if code != 200 || reply["bad_timestamp"] != float64(2) {
		t.Fatalf("ingest: %d %v, want bad_timestamp 2", code, reply)
	}
	tp, _ := l.Topic("raw")
	p, _ := tp.Partition(0)
	r, err := p.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := r.Read(nil)
	if err != nil || len(recs) != 4 {
		t.Fatalf("read %d records: %v", len(recs), err)
	}
	if recs[0].TimestampMs != 1795341600123 || recs[1].TimestampMs != 1795338001500 {
		t.Fatalf("timestamps %d and %d, want the fields'", recs[0].TimestampMs, recs[1].TimestampMs)
	}
	for _, rec := range recs[2:] {
		if rec.TimestampMs < before {
			t.Fatalf("record %s stored at %d, before the request", rec.Value, rec.TimestampMs)
		}
	}
	if code, reply = post(t, base+"/topics/raw/records?timestamp_field=at", "application/json", `{"at":1795341600123}`); code != 200 || reply["bad_timestamp"] != nil {
		t.Fatalf("a good timestamp: %d %v", code, reply)
	}
}

// TestIngestContentEncoding: a compressed body (gzip, deflate, zstd: what
// log shippers send when told to compress) is stored as the records it
// holds; an encoding the server does not know, a corrupt body or one that
// decompresses past the limit is refused and writes nothing.
func TestIngestContentEncoding(t *testing.T) {
	base, l := startServer(t, "topics:\n  - {name: raw, partitions: 1}\n")
	send := func(enc string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/topics/raw/records", bytes.NewReader(body))
		req.Header.Set("Content-Encoding", enc)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	lines := `{"n":1}` + "\n" + `{"n":2}` + "\n"
	compress := func(w io.WriteCloser, buf *bytes.Buffer) []byte {
		w.Write([]byte(lines))
		w.Close()
		return buf.Bytes()
	}
	var gz, zl, zs bytes.Buffer
	zsw, _ := zstd.NewWriter(&zs)
	want := 0
	for _, c := range []struct {
		enc  string
		body []byte
	}{
		{"gzip", compress(gzip.NewWriter(&gz), &gz)},
		{"x-gzip", gz.Bytes()},
		{"deflate", compress(zlib.NewWriter(&zl), &zl)},
		{"zstd", compress(zsw, &zs)},
		{"identity", []byte(lines)},
		{"", []byte(lines)},
	} {
		if code, reply := send(c.enc, c.body); code != 200 {
			t.Fatalf("%q: %d %s", c.enc, code, reply)
		}
		want += 2
	}
	bomb := func() []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		line := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}` + "\n")
		for n := 0; n <= maxIngestBytes; n += len(line) {
			w.Write(line)
		}
		w.Close()
		return b.Bytes()
	}()
	for _, c := range []struct {
		enc  string
		body []byte
		code int
		msg  string
	}{
		{"br", []byte(lines), 415, `Content-Encoding \"br\" is not supported`},
		{"gzip", []byte(lines), 400, "reading gzip body"},
		{"gzip", gz.Bytes()[:len(gz.Bytes())-6], 400, "reading body"},
		{"zstd", []byte("not zstd"), 400, "reading body"},
		{"gzip", bomb, 413, "body over"},
	} {
		if code, reply := send(c.enc, c.body); code != c.code || !strings.Contains(reply, c.msg) {
			t.Errorf("%q: %d %s; want %d %s", c.enc, code, reply, c.code, c.msg)
		}
	}
	tp, _ := l.Topic("raw")
	p, _ := tp.Partition(0)
	if hw := p.HighWatermark(); hw != int64(want) {
		t.Fatalf("high watermark %d, want %d", hw, want)
	}
	r, err := p.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A read's records are checked before the next read reuses its buffer.
	for i := 0; i < want; {
		recs, err := r.Read(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if got := fmt.Sprintf(`{"n":%d}`, i%2+1); string(rec.Value) != got {
				t.Fatalf("record %d: %q, want %q", i, rec.Value, got)
			}
			i++
		}
	}
}

// TestIngestBodyIdleTimeout: a client that sends a request's headers and
// part of its body, then nothing, gets 408 once the body has not moved for
// bodyIdleTimeout, and nothing is stored; a body that trickles in, a byte
// at a time, for several times that long is stored whole.
func TestIngestBodyIdleTimeout(t *testing.T) {
	oldBody, oldConn := bodyIdleTimeout, connIdleTimeout
	bodyIdleTimeout, connIdleTimeout = 300*time.Millisecond, 500*time.Millisecond
	defer func() { bodyIdleTimeout, connIdleTimeout = oldBody, oldConn }()
	base, l := startServer(t, "topics:\n  - {name: raw, partitions: 1}\n")
	addr := strings.TrimPrefix(base, "http://")
	request := func(body string, total int, pause time.Duration) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /topics/raw/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n", total)
		for i := range len(body) {
			if _, err := c.Write([]byte{body[i]}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(pause)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		status, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return status
	}
	if status := request(`{"a":1}`, 100, 0); !strings.Contains(status, " 408 ") {
		t.Fatalf("a body stalled part way: %q, want 408", status)
	}
	tp, _ := l.Topic("raw")
	part, err := tp.Partition(0)
	if err != nil {
		t.Fatal(err)
	}
	if hw := part.HighWatermark(); hw != 0 {
		t.Fatalf("%d records stored from a stalled body", hw)
	}
	body := `{"slow":1}` + "\n" + `{"slow":2}` // 21 bytes, 100 ms apart: 2 s in all
	if status := request(body, len(body), 100*time.Millisecond); !strings.Contains(status, " 200 ") {
		t.Fatalf("a body trickling in: %q, want 200", status)
	}
	if hw := part.HighWatermark(); hw != 2 {
		t.Fatalf("%d records stored from the trickled body, want 2", hw)
	}
	// A keep-alive connection that sends nothing after its request is
	// closed once connIdleTimeout has passed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("an idle keep-alive connection: read %d bytes, %v; want it closed (EOF)", n, err)
	}
}

// TestMetricsOfKeysThatPrintAlike: GET /metrics answers 200 whatever the
// keys and names: client_golang fails a whole scrape (500) on two series
// of one name and labels, or one name with two helps. Keys that print
// alike as labels (the string "100" and the number 100; null and "") give
// one series, the first by key text; an ID past 2^53 keeps its digits
// (9007199254740993 was decoded to a float64, 9007199254740992's twin);
// two group-by fields that sanitize alike get two labels (host_name,
// host_name_2); and of two metrics that sanitize to one name (n-x and n_x,
// pipelines a-b and a_b, which serve refuses: CheckMetricNames) the first
// is shown.
func TestMetricsOfKeysThatPrintAlike(t *testing.T) {
	const yaml = `topics:
  - {name: events, partitions: 1}
pipelines:
  - name: a-b
    source: {topic: events}
    time: {field: ts}
    group_by: [id, host.name, host_name]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: n, agg: count}
      - {name: n-x, agg: count}
      - {name: n_x, agg: count, where: 'id == 0'}
  - name: a_b
    source: {topic: events}
    time: {field: ts}
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: n, agg: count}
`
	f, err := pipeline.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMetricNames(f); err == nil || !strings.Contains(err.Error(), "t.yaml:12: pipelines[0].metrics[2].name: a-b.n_x would be fastflow_a_b_n_x in /metrics, as a-b.n-x is") {
		t.Fatalf("CheckMetricNames: %v", err)
	}
	base, _ := startServer(t, yaml)
	var body strings.Builder
	const t0 = 1795341600000
	for _, id := range []string{`"100"`, `100`, `9007199254740992`, `9007199254740993`, `null`, `""`} {
		fmt.Fprintf(&body, `{"ts":%d,"id":%s,"host":{"name":"h"},"host_name":"x"}`+"\n", t0, id)
	}
	fmt.Fprintf(&body, `{"ts":%d,"id":1}`+"\n", t0+3_600_000) // closes the minute
	if code, reply := post(t, base+"/topics/events/records", "application/x-ndjson", body.String()); code != 200 {
		t.Fatalf("ingest: %d %v", code, reply)
	}
	want := []string{
		`fastflow_a_b_n{host_name="h",host_name_2="x",id="100"} 1`,
		`fastflow_a_b_n{host_name="h",host_name_2="x",id="9007199254740992"} 1`,
		`fastflow_a_b_n{host_name="h",host_name_2="x",id="9007199254740993"} 1`,
		`fastflow_a_b_n{host_name="h",host_name_2="x",id=""} 1`,
		`fastflow_a_b_n_x{host_name="h",host_name_2="x",id="100"} 1`,
	}
	var got string
	waitUntil(t, "window gauges", func() bool {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d: %s", resp.StatusCode, b)
		}
		got = string(b)
		for _, w := range want {
			if !strings.Contains(got, w+"\n") {
				return false
			}
		}
		return true
	})
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, `fastflow_a_b_n{`) && !strings.Contains(line, "host_name") {
			t.Errorf("pipeline a_b's n, whose name is a-b's: %s", line)
		}
	}
	// ?key= finds a key by a value's exact number, or by the key itself.
	for param, want := range map[string]int{
		"9007199254740993": 1, "9007199254740992": 1, "9007199254740992.0": 1, "100": 2, "1e2": 1,
		`{"id":9007199254740993,"host.name":"h","host_name":"x"}`: 1, `{"id":1e2,"host.name":"h","host_name":"x"}`: 1,
		`{"id":"100","host.name":"h","host_name":"x"}`: 1, `{"id":9007199254740993}`: 0,
	} {
		var ws struct{ Windows []json.RawMessage }
		if getJSON(t, base+"/api/v1/pipelines/a-b/windows?key="+url.QueryEscape(param), &ws) != 200 || len(ws.Windows) != want {
			t.Errorf("?key=%s: %d windows, want %d", param, len(ws.Windows), want)
		}
	}
	// Six keys, four label sets (the later minute is still open).
	if n := strings.Count(got, "\nfastflow_a_b_n{"); n != 4 {
		t.Errorf("%d series of fastflow_a_b_n, want 4:\n%s", n, got)
	}
}

// TestOwnMetricNames: every metric fastflow exposes of its own is in
// ownNames, which no pipeline gauge may take (CheckMetricNames); and a
// pipeline metric named as one of them is refused.
func TestOwnMetricNames(t *testing.T) {
	base, _ := startServer(t, testYAML)
	post(t, base+"/topics/events/records", "application/x-ndjson", `{"ts":1,"service":"a"}`+"\n"+`{"ts":3600000,"service":"a"}`)
	waitUntil(t, "a window", func() bool { return bytes.Contains(scrape(t, base), []byte("fastflow_api_health_request_count")) })
	for _, line := range strings.Split(string(scrape(t, base)), "\n") {
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if strings.HasPrefix(name, "fastflow_") && !strings.HasPrefix(name, "fastflow_api_health_") && !ownNames[name] {
			t.Errorf("%s is not in ownNames", name)
		}
	}
	own := strings.Replace(testYAML, "name: api-health", "name: pipeline", 1)
	own = strings.Replace(own, "    metrics:\n", "    metrics:\n      - {name: records_total, agg: count}\n", 1)
	f, err := pipeline.Parse("t.yaml", []byte(own))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMetricNames(f); err == nil || !strings.Contains(err.Error(), "pipeline.records_total would be fastflow_pipeline_records_total in /metrics, one of fastflow's own metrics") {
		t.Fatalf("CheckMetricNames: %v", err)
	}
}

// TestCrossOriginPostRefused: a web page open in a browser on the machine
// cannot write records into the server's topics (cross-site request
// forgery against 127.0.0.1): a POST the browser marks cross-site
// (Sec-Fetch-Site), or from another Origin than the host, is 403 and
// stores nothing; clients that are not browsers send neither header;
// reads are not affected; a trusted origin (serve --allow-origin) may
// POST.
func TestCrossOriginPostRefused(t *testing.T) {
	base, l := startServerWith(t, "topics:\n  - {name: events, partitions: 1}\n", Options{TrustedOrigins: []string{"https://app.example.com"}})
	do := func(method, path string, headers ...string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"a":1}`))
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const post = "/topics/events/records"
	for _, c := range []struct {
		method, path string
		headers      []string
		want         int
	}{
		{"POST", post, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"POST", post, []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"POST", post, []string{"Origin", "http://evil.example"}, 403},
		{"POST", post, nil, 200},
		{"POST", post, []string{"Sec-Fetch-Site", "same-origin"}, 200},
		{"POST", post, []string{"Sec-Fetch-Site", "none"}, 200},
		{"POST", post, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://app.example.com"}, 200},
		{"GET", "/api/v1/topics", []string{"Sec-Fetch-Site", "cross-site"}, 200},
	} {
		if got := do(c.method, c.path, c.headers...); got != c.want {
			t.Errorf("%s %s %v: %d, want %d", c.method, c.path, c.headers, got, c.want)
		}
	}
	tp, _ := l.Topic("events")
	p, _ := tp.Partition(0)
	if hw := p.HighWatermark(); hw != 4 {
		t.Errorf("%d records stored, want the 4 POSTs allowed", hw)
	}
}

// TestIngestRecordsPerRequestBounded: a body of more than maxIngestRecords
// records is 413 and stores nothing, as lines or as an array: each record
// costs the request ~450 bytes of memory, and 32 MiB of 2-byte lines
// (16.7 M records) took 7.5 GB. At the bound, the records are stored.
func TestIngestRecordsPerRequestBounded(t *testing.T) {
	defer func(n int) { maxIngestRecords = n }(maxIngestRecords)
	maxIngestRecords = 10
	base, l := startServer(t, "topics:\n  - {name: events, partitions: 1}\n")
	url := base + "/topics/events/records"
	lines := strings.Repeat("1\n\n", 10)
	for _, c := range []struct {
		body string
		want int
	}{
		{lines + "2\n", 413},
		{"[" + strings.Repeat("1,", 10) + "2]", 413},
		{lines + "\n \r\n", 200},
		{"[" + strings.Repeat("1,", 9) + "2]", 200},
	} {
		code, reply := post(t, url, "application/x-ndjson", c.body)
		if code != c.want || code == 413 && reply["error"] != "body holds more than 10 records; split it" {
			t.Errorf("%q: %d %v, want %d", c.body, code, reply, c.want)
		}
	}
	tp, _ := l.Topic("events")
	p, _ := tp.Partition(0)
	if hw := p.HighWatermark(); hw != 20 {
		t.Errorf("%d records stored, want the 20 of the bodies at the bound", hw)
	}
}

// A stream ends as the server stops: Serve's http.Server.Shutdown waits
// for the requests under way, and a stream would have kept it, and the
// pipelines' stop and checkpoint after it, waiting 10 s (docker stop's
// grace period: killed before the checkpoint); the connection stayed open
// after Serve returned.
func TestStreamEndsAtShutdown(t *testing.T) {
	base, _, stop := runServer(t, testYAML, Options{})
	resp, err := http.Get(base + "/api/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || first != "retry: 2000\n" {
		t.Fatalf("stream starts %q: %v", first, err)
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	stop()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("stream ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream is still open 30 s after Serve returned")
	}
}

// A stream whose client takes none of its writes for streamWriteTimeout
// is dropped, its subscription with it: a stalled connection would have
// held its handler, and a subscription every event is offered to, for as
// long as the connection lasted.
func TestStreamDropsStalledClient(t *testing.T) {
	defer func(d time.Duration) { streamWriteTimeout = d }(streamWriteTimeout)
	streamWriteTimeout = 200 * time.Millisecond
	s := New(nil, nil, Options{})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	stalledGet(t, ts.Listener.Addr().String(), "/api/v1/stream")
	subscribers := func() int {
		s.store.hub.mu.Lock()
		defer s.store.hub.mu.Unlock()
		return len(s.store.hub.subs)
	}
	waitUntil(t, "the stream subscribes", func() bool { return subscribers() == 1 })
	data := json.RawMessage(`"` + strings.Repeat("x", 64<<10) + `"`)
	waitUntil(t, "the stalled stream is dropped", func() bool {
		s.store.hub.publish("window", data) // until the connection's buffers are full
		return subscribers() == 0
	})
}

// A response the client takes none of for responseWriteTimeout is given
// up and its connection closed: the windows of many keys are megabytes,
// and a stalled client held the handler's goroutine and the response for
// as long as its connection lasted.
func TestStalledReaderOfResponseDropped(t *testing.T) {
	defer func(d time.Duration) { responseWriteTimeout = d }(responseWriteTimeout)
	responseWriteTimeout = 300 * time.Millisecond
	f, err := pipeline.Parse("t.yaml", []byte(testYAML))
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil, f, Options{})
	service := strings.Repeat("s", 2000)
	for k := range 10_000 {
		for w := range 10 {
			start := time.UnixMilli(int64(w) * 60_000).UTC()
			line := fmt.Sprintf(`{"type":"window","pipeline":"api-health","key":{"service":"%s-%d"},"window_start":%q,"window_end":%q,"revision":0,"metrics":{"request_count":%d}}`,
				service, k, start.Format(time.RFC3339), start.Add(time.Minute).Format(time.RFC3339), k)
			s.observe(&pipeline.Result{Pipeline: "api-health", Line: []byte(line), EndMs: start.Add(time.Minute).UnixMilli()})
		}
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	closed := make(chan struct{})
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			close(closed)
		}
	}
	ts.Start()
	defer ts.Close()
	stalledGet(t, ts.Listener.Addr().String(), "/api/v1/pipelines/api-health/windows?last=240") // ~30 MB
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the connection that reads nothing is still open 30 s on")
	}
}

// stalledGet sends a GET of path to addr on a connection with a small
// receive buffer, and never reads the response.
func stalledGet(t *testing.T, addr, path string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
}
