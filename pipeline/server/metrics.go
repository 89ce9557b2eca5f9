package server

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline"
)

// metrics is what GET /metrics exposes:
//
//   - the latest window value of every pipeline metric, as a gauge named
//     fastflow_<pipeline>_<metric>, labelled by the group-by fields, e.g.
//     fastflow_api_health_p95_response_time{service="payments"};
//   - fastflow's own: ingest records and bytes per topic; per pipeline
//     records read, events, rejected by reason, late dropped, sink drops,
//     watermark, open windows, lag per partition; event→result latency;
//   - the log's, as kafka_exporter shows a Kafka cluster's: per topic and
//     partition the high watermark, log-start offset and size; per
//     consumer group, topic and partition the committed offset and the lag
//     (committed offsets are shared by `fastflow consume --group` and Kafka
//     clients through the listener);
//   - Go runtime and process metrics.
type metrics struct {
	reg           *prometheus.Registry
	ingestRecords *prometheus.CounterVec
	ingestBytes   *prometheus.CounterVec
	latency       *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.ingestRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fastflow_ingest_records_total", Help: "Records stored by POST /topics/{topic}/records."}, []string{"topic"})
	m.ingestBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fastflow_ingest_bytes_total", Help: "Body bytes (decompressed) of POST /topics/{topic}/records requests that stored records."}, []string{"topic"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fastflow_result_latency_seconds",
		Help:    "Wall time from a window's end to the emission of its result: how long results trail the events.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"pipeline"})
	b := ReadBuild()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fastflow_build_info", Help: "1, labelled with the version, VCS revision and Go version fastflow was built from.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}})
	build.Set(1)
	m.reg.MustRegister(m.ingestRecords, m.ingestBytes, m.latency, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&pipelineCollector{s: s}, &logCollector{l: s.log})
	return m
}

func (m *metrics) ingested(topic string, records, bytes int) {
	m.ingestRecords.WithLabelValues(topic).Add(float64(records))
	m.ingestBytes.WithLabelValues(topic).Add(float64(bytes))
}

// pipelineCollector reports the pipelines' snapshots and window values at
// scrape time. It is unchecked (describes nothing up front): the label
// sets of window gauges depend on the pipelines' group-by fields.
type pipelineCollector struct{ s *Server }

func (c *pipelineCollector) Describe(chan<- *prometheus.Desc) {}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	counter := func(name, help string, v float64, labels map[string]string) {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, nil, labels), prometheus.CounterValue, v)
	}
	gaugeOf := func(name, help string, v float64, labels map[string]string) {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, nil, labels), prometheus.GaugeValue, v)
	}
	if s.runner != nil {
		for _, p := range s.runner.Pipelines() {
			name := p.Config.Name
			l := map[string]string{"pipeline": name}
			var restarts int64
			if f := p.Failure(); f != nil {
				restarts = f.Restarts
			}
			counter("fastflow_pipeline_restarts_total", "Failures of the pipeline, each followed by a restart from its last checkpoint.", float64(restarts), l)
			snap := p.Snapshot()
			if snap == nil {
				continue
			}
			st := snap.Stats
			counter("fastflow_pipeline_records_total", "Records read from the source.", float64(st.Records), l)
			counter("fastflow_pipeline_events_total", "Records accepted as events (not rejected).", float64(st.Events), l)
			counter("fastflow_pipeline_late_dropped_total", "Events refused by every window they belong to.", float64(st.LateDropped), l)
			counter("fastflow_pipeline_sink_dropped_total", "Alerts a webhook could not deliver.", float64(st.SinkDropped), l)
			for r, n := range pipeline.RejectReasons {
				counter("fastflow_pipeline_rejected_total", "Records rejected, by reason.", float64(st.Rejected[r]),
					map[string]string{"pipeline": name, "reason": n})
			}
			if snap.Watermark != math.MinInt64 && snap.Watermark != math.MaxInt64 {
				gaugeOf("fastflow_pipeline_watermark_seconds", "The pipeline's watermark (event time).", float64(snap.Watermark)/1000, l)
			}
			gaugeOf("fastflow_pipeline_open_windows", "Windows held (not yet forgotten).", float64(snap.OpenWindows), l)
			gaugeOf("fastflow_pipeline_keys", "Group keys held (open windows, alert states, not yet forgotten).", float64(snap.Keys), l)
			counter("fastflow_pipeline_keys_forgotten_total", "Group keys forgotten once nothing held them.", float64(snap.KeysForgotten), l)
			topic := p.Config.Source.Topic
			if k := p.Config.Source.Kafka; k != nil {
				topic = k.Topic
			}
			for id, pos := range snap.Positions {
				hw, ok := snap.HighWater[id]
				if !ok {
					continue
				}
				gaugeOf("fastflow_pipeline_lag_records", "Records in the source partition not yet processed.",
					float64(max(0, hw-pos)),
					map[string]string{"pipeline": name, "topic": topic, "partition": strconv.Itoa(int(id))})
			}
		}
	}
	c.windowGauges(gaugeOf)
}

// windowGauges reports each key's latest value of each pipeline metric.
// One scrape fails whole if two series share a name and labels, or a name
// has two helps or label sets (client_golang answers 500): so keys that
// print alike as labels — the string "100" and the number 100, null and
// "" — give one series, the first by key text, and a name two metrics
// share once sanitized (CheckMetricNames refuses such a file; not so a
// pipeline given to New directly) shows the first metric only, and one of
// fastflow's own names (ownNames) none. Labels are the key's values as
// written (pipeline.LabelValue): an ID past 2^53 keeps its digits.
func (c *pipelineCollector) windowGauges(gaugeOf func(name, help string, v float64, labels map[string]string)) {
	gauges := c.s.store.gauges()
	labelNames := map[string][]string{} // by pipeline
	slices.SortFunc(gauges, func(a, b gauge) int {
		return cmp.Or(strings.Compare(a.pipeline, b.pipeline), strings.Compare(a.metric, b.metric), bytes.Compare(a.key, b.key))
	})
	type origin struct{ pipeline, metric string }
	owner := map[string]origin{}
	seen := map[string]bool{}
	var id strings.Builder
	for _, g := range gauges {
		name := MetricName(g.pipeline, g.metric)
		if o, ok := owner[name]; ok && o != (origin{g.pipeline, g.metric}) || ownNames[name] {
			continue
		}
		owner[name] = origin{g.pipeline, g.metric}
		names, ok := labelNames[g.pipeline]
		if !ok {
			names = pipeline.LabelNames(g.groupBy)
			labelNames[g.pipeline] = names
		}
		var key map[string]json.RawMessage
		json.Unmarshal(g.key, &key)
		labels := make(map[string]string, len(names))
		id.Reset()
		id.WriteString(name)
		for i, f := range g.groupBy {
			v, _ := pipeline.LabelValue(key[f])
			labels[names[i]] = v
			id.WriteByte(0xff)
			id.WriteString(v)
		}
		if seen[id.String()] {
			continue
		}
		seen[id.String()] = true
		gaugeOf(name, "Latest window value of "+g.metric+" in pipeline "+g.pipeline+".", g.value, labels)
	}
}

// ownNames are the names of fastflow's own metrics, which a pipeline's
// gauge must not take (pipeline "pipeline", metric "records_total").
// TestOwnMetricNames keeps the list whole.
var ownNames = map[string]bool{}

func init() {
	for _, n := range []string{"build_info", "group_committed_offset", "group_lag_records", "ingest_bytes_total",
		"ingest_records_total", "log_high_watermark", "log_size_bytes", "log_start_offset", "pipeline_events_total",
		"pipeline_keys", "pipeline_keys_forgotten_total", "pipeline_lag_records", "pipeline_late_dropped_total",
		"pipeline_open_windows", "pipeline_records_total", "pipeline_rejected_total", "pipeline_restarts_total",
		"pipeline_sink_dropped_total", "pipeline_watermark_seconds", "result_latency_seconds",
		"result_latency_seconds_bucket", "result_latency_seconds_sum", "result_latency_seconds_count"} {
		ownNames["fastflow_"+n] = true
	}
}

// CheckMetricNames refuses a file two of whose pipeline metrics would have
// one gauge name in GET /metrics once sanitized (pipelines a-b and a_b,
// metrics p95-ms and p95_ms), or one a name of fastflow's own metrics:
// one of them could not be shown.
func CheckMetricNames(f *pipeline.File) error {
	type origin struct{ pipeline, metric int }
	owner := map[string]origin{}
	for i, p := range f.Pipelines {
		for j, m := range p.Metrics {
			name := MetricName(p.Name, m.Name)
			if ownNames[name] {
				return f.Errorf(fmt.Sprintf("pipelines[%d].metrics[%d].name", i, j),
					"%s.%s would be %s in /metrics, one of fastflow's own metrics: rename it", p.Name, m.Name, name)
			}
			if o, ok := owner[name]; ok {
				q := f.Pipelines[o.pipeline]
				return f.Errorf(fmt.Sprintf("pipelines[%d].metrics[%d].name", i, j),
					"%s.%s would be %s in /metrics, as %s.%s is: rename one", p.Name, m.Name, name, q.Name, q.Metrics[o.metric].Name)
			}
			owner[name] = origin{i, j}
		}
	}
	return nil
}

// logCollector reports the log's partitions and consumer groups at scrape
// time.
type logCollector struct{ l *log.Log }

var (
	descHighWater = prometheus.NewDesc("fastflow_log_high_watermark",
		"The partition's high watermark: the offset the next record gets.", []string{"topic", "partition"}, nil)
	descLogStart = prometheus.NewDesc("fastflow_log_start_offset",
		"The partition's first offset still held (retention moves it).", []string{"topic", "partition"}, nil)
	descLogSize = prometheus.NewDesc("fastflow_log_size_bytes",
		"Bytes of the partition's segment files.", []string{"topic", "partition"}, nil)
	descCommitted = prometheus.NewDesc("fastflow_group_committed_offset",
		"The consumer group's committed offset in the partition.", []string{"group", "topic", "partition"}, nil)
	descGroupLag = prometheus.NewDesc("fastflow_group_lag_records",
		"Records in the partition past the group's committed offset.", []string{"group", "topic", "partition"}, nil)
)

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHighWater, descLogStart, descLogSize, descCommitted, descGroupLag} {
		ch <- d
	}
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	topics, _ := describeTopics(c.l)
	for _, t := range topics {
		for _, p := range t.Parts {
			pid := strconv.Itoa(int(p.Partition))
			ch <- prometheus.MustNewConstMetric(descHighWater, prometheus.GaugeValue, float64(p.HighWatermark), t.Topic, pid)
			ch <- prometheus.MustNewConstMetric(descLogStart, prometheus.GaugeValue, float64(p.LogStartOffset), t.Topic, pid)
			ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(p.SizeBytes), t.Topic, pid)
		}
	}
	groups, _ := describeGroups(c.l)
	for _, g := range groups {
		if g.Committed == nil {
			continue
		}
		pid := strconv.Itoa(int(g.Partition))
		ch <- prometheus.MustNewConstMetric(descCommitted, prometheus.GaugeValue, float64(*g.Committed), g.Group, g.Topic, pid)
		ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(*g.Lag), g.Group, g.Topic, pid)
	}
}

// MetricName is the Prometheus name of a pipeline metric's gauge:
// fastflow_<pipeline>_<metric>, with characters Prometheus does not allow
// replaced by underscores.
func MetricName(pipe, metric string) string {
	return "fastflow_" + pipeline.PromName(pipe) + "_" + pipeline.PromName(metric)
}
