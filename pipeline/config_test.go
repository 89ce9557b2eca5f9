package pipeline

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastflow/fastflow/log"
)

// specExample is SPEC's example, verbatim: testdata/spec-example.yaml,
// which cmd/fastflow's TestSpecExampleVerbatim runs too.
func specExample(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "spec-example.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestParseSpecExample(t *testing.T) {
	f, err := Parse("api.yaml", []byte(specExample(t)))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Pipelines[0]
	if c.Name != "api-health" || c.Source.Topic != "events" || c.Source.Start.Kind != log.StartEarliest ||
		c.Time.Field != "ts" || c.Time.MaxOutOfOrder != 5*time.Second || c.Time.AllowedLateness != time.Minute ||
		c.Window.Type != "tumbling" || c.Window.Size != time.Minute || len(c.Metrics) != 7 || len(c.Alerts) != 2 ||
		c.Alerts[0].For != 2 || c.Alerts[1].For != 1 || len(c.Sinks) != 3 || c.Sinks[2].Format != "alertmanager" {
		t.Fatalf("parsed %+v", c)
	}
	p, err := compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.fields) != 1 || len(p.preds) != 1 || p.preds[0].kind != litString || string(p.preds[0].s) != "error" ||
		p.alerts[0].metric != 2 || p.alerts[0].threshold != 0.05 || p.alerts[0].op != opGt || p.maxOOO != 5000 || p.lateness != 60000 {
		t.Fatalf("compiled %+v", p)
	}
}

func TestConfigErrors(t *testing.T) {
	base := strings.Replace(specExample(t), "  - {type: webhook, url: 'http://127.0.0.1:9093/api/v2/alerts', format: alertmanager}\n", "", 1)
	f := func(old, new, want string) {
		t.Helper()
		src := base
		if old != "" {
			if !strings.Contains(src, old) {
				t.Fatalf("test bug: %q not in the example", old)
			}
			src = strings.Replace(src, old, new, 1)
		}
		_, err := Parse("api.yaml", []byte(src))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a ConfigError", want, err)
			return
		}
		if got := err.Error(); !strings.Contains(got, want) {
			t.Errorf("error %q does not contain %q", got, want)
		}
		if ce.File != "api.yaml" || ce.Line < 1 {
			t.Errorf("error %q has no file and line", err)
		}
	}
	f("agg: count}", "agg: p95}", `api.yaml:9: pipelines[0].metrics[0].agg: unknown "p95"`)
	f("    group_by: [service]\n", "    group_by: [service]\n    colour: blue\n", `api.yaml:6: pipelines[0].colour: unknown key`)
	f("size: 1m}", "size: 1 minute}", `pipelines[0].window.size: invalid duration "1 minute"`)
	f("size: 1m}", "size: 0s}", `api.yaml:6: pipelines[0].window.size: want a positive duration, not "0s"`)
	f("max_out_of_order: 5s", "max_out_of_order: -5s", `pipelines[0].time.max_out_of_order: want a duration of 0 or more, not "-5s"`)
	f("of: error_count,", "of: errors,", `api.yaml:11: pipelines[0].metrics[2].of: no metric named "errors"`)
	f(`where: 'status == "error"'`, `where: 'status ~ "error"'`, `pipelines[0].metrics[1].where:`)
	f(`where: 'status == "error"'`, `where: 'status == error'`, `must be a quoted string`)
	f(`when: 'error_rate > 0.05'`, `when: 'error_ratio > 0.05'`, `api.yaml:17: pipelines[0].alerts[0].when: "error_ratio > 0.05": no metric named "error_ratio"`)
	f(`when: 'error_rate > 0.05'`, `when: 'error_rate > lots'`, `threshold must be a number`)
	f("type: tumbling", "type: sliding", `unknown window type "sliding"`)
	f("{type: tumbling, size: 1m}", "{type: hopping, size: 1h, advance: 1ms}",
		`api.yaml:6: pipelines[0].window.advance: puts every event in 3600000 windows (size / advance); at most 10000, e.g. advance: 360ms`)
	if _, err := Parse("api.yaml", []byte(strings.Replace(base, "{type: tumbling, size: 1m}", "{type: hopping, size: 10000s, advance: 1s}", 1))); err != nil {
		t.Fatalf("10,000 windows an event: %v", err)
	}
	f("size: 1m}", "gap: 1m}", `window.size: required for a tumbling window`)
	f("unit: ms", "unit: minutes", `time.unit: unknown unit "minutes"`)
	f("field: ts, unit: ms", "unit: s", `api.yaml:4: pipelines[0].time.unit: the unit of time.field, which is missing`)
	f("q: 0.95", "q: 95", `metrics[5].q: want a quantile in (0, 1]`)
	f(", q: 0.95}", "}", `metrics[5].q: required for percentile`)
	f("agg: avg, field: response_time", "agg: avg", `metrics[3].field: required for avg`)
	f("group_by: [service]", "group_by: [service, region, service]", `api.yaml:5: pipelines[0].group_by[2]: duplicate field "service"`)
	f("group_by: [service]", "group_by: [service.]", `pipelines[0].group_by[0]: field "service." has an empty name`)
	f("field: response_time}", "field: response..time}", `metrics[3].field: field "response..time" has an empty name`)
	f("field: ts,", "field: .ts,", `time.field: field ".ts" has an empty name`)
	f(`where: 'status == "error"'`, `where: 'status. == "error"'`, `metrics[1].where: "status. == \"error\"": field "status." has an empty name`)
	// What an aggregate does not use is refused, not ignored.
	f("{name: request_count, agg: count}", "{name: request_count, agg: count, q: 0.5}", `metrics[0].q: only percentile takes q`)
	f("{name: error_rate, agg: ratio, of: error_count, over: request_count}",
		"{name: error_rate, agg: ratio, of: error_count, over: request_count, q: 0.9}", `metrics[2].q: only percentile takes q`)
	f("{name: error_rate, agg: ratio, of: error_count, over: request_count}",
		`{name: error_rate, agg: ratio, of: error_count, over: request_count, where: 'status == "ok"'}`, `metrics[2].where: ratio takes no where`)
	f("{name: error_rate, agg: ratio, of: error_count, over: request_count}",
		"{name: error_rate, agg: ratio, of: error_count, over: request_count, field: response_time}", `metrics[2].field: ratio takes no field`)
	f("{name: throughput, agg: rate, of: request_count}", `{name: throughput, agg: rate, of: request_count, where: 'status == "ok"'}`, `metrics[6].where: rate takes no where`)
	f("{name: throughput, agg: rate, of: request_count}", "{name: throughput, agg: rate, of: request_count, over: error_count}", `metrics[6].over: rate takes no over`)
	f("{name: throughput, agg: rate, of: request_count}", "{name: throughput, agg: rate, of: request_count, field: response_time}", `metrics[6].field: rate takes no field`)
	f("start: earliest", "start: yesterday", `source.start: want earliest, latest`)
	f("{type: stdout}", "{type: email}", `sinks[0].type: unknown sink type "email"`)
	f("{type: stdout}", "{type: stdout}\n      - {type: stdout}", `api.yaml:21: pipelines[0].sinks[1]: the same sink as sinks[0]: each result would go out twice`)
	f("{type: topic, topic: api-health.results}", "{type: topic, topic: api-health.results}\n      - {type: webhook, url: 'http://127.0.0.1:9/'}\n      - {topic: api-health.results, type: topic}",
		`pipelines[0].sinks[3]: the same sink as sinks[1]`)
	f("name: api-health", "name: 'api health'", `invalid pipeline name`)
	f("for: 2", "for: 0", `alerts[0].for: want an integer from 1`)
	f("{name: throughput, agg: rate, of: request_count}", "{name: request_count, agg: rate, of: error_count}", `duplicate metric "request_count"`)
	f("pipelines:", "pipelines:\n  - oops: [", `api.yaml:`)
	f("    source: {topic: events, start: earliest}        # start: earliest | latest | OFFSET | RFC3339\n", "", `source.topic: required`)
	src := "source: {topic: events, start: earliest}"
	f(src, "source: {kafka: {topic: events}}", `api.yaml:3: pipelines[0].source.kafka.brokers: required`)
	f(src, "source: {kafka: {brokers: [kafka1], topic: events}}", `source.kafka.brokers[0]: "kafka1" is not a host:port address`)
	f(src, "source: {kafka: {brokers: ['k:9092']}}", `source.kafka.topic: missing or invalid topic name ""`)
	f(src, "source: {kafka: {brokers: ['k:9092'], topic: e, group: "+strings.Repeat("g", 256)+"}}", `source.kafka.group: invalid group name "ggg`)
	f(src, "source: {topic: events, kafka: {brokers: ['k:9092'], topic: e}}", `source: topic: or kafka:, not both`)
	f(src, "source: {kafka: {brokers: ['k:9092'], topic: e, partitions: 3}}", `source.kafka.partitions: unknown key`)
	f(src, "source: {kafka: {brokers: ['k:9092'], topic: e, session_timeout: 0s}}", `source.kafka.session_timeout: want a positive duration, not "0s"`)
	f(src, "source: {kafka: {brokers: ['k:9092'], topic: e, checkpoint_topic: e}}", `source.kafka.checkpoint_topic: "e" is the pipeline's source`)
	loop := strings.Replace(strings.Replace(specExample(t), src, "source: {kafka: {brokers: ['j:9092', 'k:9092'], topic: e}}", 1),
		"{type: stdout}", "{type: kafka, brokers: ['k:9092'], topic: e}", 1)
	if _, err := Parse("api.yaml", []byte(loop)); err == nil || !strings.Contains(err.Error(), `sinks[0].topic: "e" on k:9092 is the pipeline's source`) {
		t.Fatalf("a Kafka sink writing the source topic: %v", err)
	}
	f("{type: stdout}", "{type: kafka, topic: out}", `sinks[0].brokers: required`)
	f("{type: stdout}", "{type: topic, topic: events}", `api.yaml:20: pipelines[0].sinks[0].topic: "events" is the pipeline's source`)
	f("source: {topic: events, start: earliest}", "source: {topic: api-health.dlq}\n    dlq: true", `pipelines[0].dlq: writes "api-health.dlq", the pipeline's source`)
	f("{type: stdout}", "{type: topic, topic: out, brokers: ['k:9092']}", `for a Kafka cluster use type: kafka`)
	f("{type: stdout}", "{type: kafka, brokers: ['k:9092']}", `sinks[0].topic: missing or invalid topic name`)
}

func TestKafkaSourceConfig(t *testing.T) {
	src := strings.Replace(specExample(t), "source: {topic: events, start: earliest}",
		"source: {kafka: {brokers: ['k1:9092', 'k2:9092'], topic: events}, start: latest}", 1)
	src = strings.Replace(src, "{type: stdout}", "{type: kafka, brokers: ['k1:9092'], topic: out}", 1)
	f, err := Parse("k.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Pipelines[0]
	k := c.Source.Kafka
	if k == nil || c.Source.Topic != "" || len(k.Brokers) != 2 || k.Topic != "events" || k.Group != "api-health" ||
		k.CheckpointTopic != DefaultCheckpointTopic || k.SessionTimeout != DefaultSessionTimeout || c.Source.Start.Kind != log.StartLatest {
		t.Fatalf("source %+v %+v", c.Source, k)
	}
	if s := c.Sinks[0]; s.Type != "kafka" || s.Topic != "out" || len(s.Brokers) != 1 {
		t.Fatalf("sink %+v", s)
	}
	if c.Source.TopicName() != "kafka://k1:9092/events" {
		t.Fatalf("TopicName %q", c.Source.TopicName())
	}
}

func TestTopicsSection(t *testing.T) {
	src := "topics:\n  - {name: events, partitions: 6, retention: 7d}\n  - {name: kv, partitions: 1, cleanup: compact}\n" + specExample(t)
	f, err := Parse("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Topics) != 2 || f.Topics[0].Config.Partitions != 6 || f.Topics[0].Config.Retention != 7*24*time.Hour || f.Topics[1].Config.Cleanup != "compact" {
		t.Fatalf("topics %+v", f.Topics)
	}
	if _, err := Parse("x.yaml", []byte("topics:\n  - {name: events}\n")); err == nil || !strings.Contains(err.Error(), "partitions: required") {
		t.Fatalf("topic without partitions: %v", err)
	}
	if _, err := Parse("x.yaml", []byte("topics:\n  - {name: e, partitions: 1, cleanup: shred}\n")); err == nil || !strings.Contains(err.Error(), "cleanup_policy") {
		t.Fatalf("bad cleanup: %v", err)
	}
	// Declared twice, a topic took the second declaration, and an existing
	// one of 1 partition grew to 2 (which cannot be undone).
	if _, err := Parse("x.yaml", []byte("topics:\n  - {name: e, partitions: 1}\n  - {name: e, partitions: 2}\n")); err == nil ||
		!strings.Contains(err.Error(), `x.yaml:3: topics[1].name: duplicate topic "e"`) {
		t.Fatalf("a topic declared twice: %v", err)
	}
}

// TestTopicsSectionTakesCLIText: a topic's settings read as `fastflow
// topic create` takes them (sizes with units, -1 retention, create or
// append), so that a topic declared in a file can be what the CLI makes.
func TestTopicsSectionTakesCLIText(t *testing.T) {
	src := "topics:\n" +
		"  - {name: a, partitions: 2, retention: -1, retention_bytes: 10GiB, segment_bytes: 64KiB, max_record_bytes: 2MiB, timestamp_type: append, delete_retention: 1h}\n" +
		"  - {name: b, partitions: 1, retention: 168h, retention_bytes: 1048576, segment_bytes: 65536, max_record_bytes: 1000, timestamp_type: CreateTime}\n"
	f, err := Parse("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []log.TopicConfig{
		{Partitions: 2, Retention: -1, RetentionBytes: 10 << 30, SegmentBytes: 64 << 10, MaxRecordBytes: 2 << 20, TimestampType: log.TimestampAppend, DeleteRetention: time.Hour},
		{Partitions: 1, Retention: 168 * time.Hour, RetentionBytes: 1 << 20, SegmentBytes: 65536, MaxRecordBytes: 1000, TimestampType: log.TimestampCreate},
	}
	for i, w := range want {
		if got := f.Topics[i].Config; got != w {
			t.Errorf("topic %d: %+v, want %+v", i, got, w)
		}
	}
	for text, msg := range map[string]string{
		"retention_bytes: 2XB":      `x.yaml:2: topics[0].retention_bytes: "2XB" is not a size`,
		"retention_bytes: [1]":      `x.yaml:2: topics[0].retention_bytes: want a single value`,
		"retention: 0":              `x.yaml:2: topics[0].retention: "0" is not a positive duration`,
		"segment_bytes: 1KiB":       `x.yaml:2: topics[0]: segment_bytes must be between 4 KiB and 1 GiB, not 1024`,
		"max_record_bytes: 100GiB":  `x.yaml:2: topics[0]: max_record_bytes must be between 1 and 64 MiB, not 107374182400`,
		"timestamp_type: log":       `x.yaml:2: topics[0].timestamp_type: "log" is not a timestamp type`,
		"delete_retention: forever": `x.yaml:2: topics[0].delete_retention: invalid duration "forever"`,
	} {
		_, err := Parse("x.yaml", []byte("topics:\n  - {name: e, partitions: 1, "+text+"}\n"))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want %q", text, err, msg)
		}
	}
}

func TestPredicates(t *testing.T) {
	f := func(s string, wantErr bool) {
		t.Helper()
		_, err := parsePredicate(s)
		if (err != nil) != wantErr {
			t.Errorf("parsePredicate(%q): %v", s, err)
		}
	}
	f(`status == "error"`, false)
	f(`status=='error'`, false)
	f(`code >= 500`, false)
	f(`latency_ms < -1.5e3`, false)
	f(`ok == true`, false)
	f(`user.tier != null`, false)
	f(`ok < true`, true)
	f(`== 5`, true)
	f(`status == "unterminated`, true)
	f(`status`, true)
}

// TestCreateTopicsAppliesDeclaredSettings: a file declares its topics: an
// existing topic takes the settings the file gives (a changed retention
// applies on the next start), keeps those it leaves out (what `topic
// alter` set); more partitions are added (as Strimzi adds them), fewer,
// which cannot be removed, are a warning.
func TestCreateTopicsAppliesDeclaredSettings(t *testing.T) {
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopic("events", log.TopicConfig{Partitions: 3, Retention: time.Hour, MaxRecordBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	f, err := Parse("x.yaml", []byte("topics:\n  - {name: events, partitions: 6, retention: 7d, retention_bytes: 1GiB}\n  - {name: fresh, partitions: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if err := CreateTopics(l, f, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	tp, _ := l.Topic("events")
	want := log.TopicConfig{Partitions: 6, Retention: 7 * 24 * time.Hour, RetentionBytes: 1 << 30, MaxRecordBytes: 1000}.WithDefaults()
	if got := tp.Config(); got != want {
		t.Fatalf("existing topic: %+v, want %+v", got, want)
	}
	if fresh, err := l.Topic("fresh"); err != nil || fresh.Partitions() != 2 {
		t.Fatalf("new topic: %v", err)
	}
	for _, msg := range []string{"level=INFO msg=\"adding partitions the file declares\" topic=events partitions=3 declared=6",
		"level=INFO msg=\"topic configuration changed to the file's\" topic=events"} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, logs.String())
		}
	}
	// Nothing to change: nothing logged.
	logs.Reset()
	if err := CreateTopics(l, f, slog.New(slog.NewTextHandler(&logs, nil))); err != nil || logs.Len() != 0 {
		t.Fatalf("second time: %v\n%s", err, logs.String())
	}
	// Fewer partitions than the topic has: they cannot be removed.
	f, _ = Parse("x.yaml", []byte("topics:\n  - {name: events, partitions: 2, retention: 7d, retention_bytes: 1GiB}\n"))
	if err := CreateTopics(l, f, slog.New(slog.NewTextHandler(&logs, nil))); err != nil || tp.Partitions() != 6 ||
		!strings.Contains(logs.String(), "level=WARN msg=\"topic exists with more partitions than the file declares; partitions cannot be removed\" topic=events partitions=6 declared=2") {
		t.Fatalf("fewer partitions declared: %v, %d\n%s", err, tp.Partitions(), logs.String())
	}
}

// FuzzParse: any bytes as a pipelines file give a checked File or one
// *ConfigError on one line naming the file and a line in it — never a
// panic, and never a File that compile then refuses (what run would
// find only after it started).
func FuzzParse(f *testing.F) {
	f.Add([]byte(specExample(f)))
	f.Add([]byte(`topics:
  - {name: events, partitions: 6, retention: 7d, retention_bytes: 10GiB, segment_bytes: 16MiB, cleanup: compact}
pipelines:
  - name: s
    source: {topic: events, start: "2026-11-22T10:00:00Z"}
    time: {field: req.ts, unit: rfc3339, idle_timeout: 1s}
    group_by: [a, b.c]
    window: {type: session, gap: 30s}
    metrics:
      - {name: n, agg: count, where: 'x >= 1.5'}
      - {name: m, agg: min, field: v}
      - {name: s, agg: sum, field: v, where: 'ok == true'}
      - {name: p, agg: percentile, field: v, q: 0.999}
      - {name: r, agg: rate, of: n}
    alerts:
      - {name: a, when: 'p != 3', for: 3}
    sinks: [{type: webhook, url: 'http://127.0.0.1:1/x', format: json}, {type: topic, topic: out}]
    dlq: true
    late_topic: true
serve: {http: 127.0.0.1:8080, kafka: 127.0.0.1:9092}
`))
	f.Add([]byte("pipelines:\n  - name: h\n    source: {topic: e, start: 5}\n    window: {type: hopping, size: 5m, advance: 1m}\n    metrics: [{name: c, agg: count}]\n    sinks: [{type: stdout}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "f.yaml" || ce.Line < 1 || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q (%T) is not one ConfigError line", err, err)
			}
			return
		}
		for _, c := range file.Pipelines {
			if _, err := compile(c); err != nil {
				t.Fatalf("Parse accepted what compile refuses: %v", err)
			}
		}
	})
}
