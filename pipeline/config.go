package pipeline

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fastflow/fastflow/agg"
	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/atomicfile"
)

// File is a pipelines file: topics to create if missing, and pipelines.
type File struct {
	Name      string
	Topics    []TopicDef
	Pipelines []*Config
	// Serve holds `fastflow serve`'s listeners when the file sets them;
	// command-line flags override them.
	Serve ServeConfig
	at    map[string]int // key path -> line
}

// ServeConfig is the file's serve: section.
type ServeConfig struct {
	// HTTP is the HTTP listen address.
	HTTP string
	// Kafka is the Kafka protocol listen address; empty serves none.
	Kafka string
	// KafkaAdvertise is the host:port Kafka clients are told to connect
	// to, when it is not the listen address (a container, a NAT).
	KafkaAdvertise string
	// KafkaAutoCreate, if positive, lets Kafka clients create the topics
	// they ask for, with this many partitions.
	KafkaAutoCreate int
}

// Errorf returns a *ConfigError for the key at path (e.g.
// "pipelines[0].source.topic"), at its line in the file.
func (f *File) Errorf(path, format string, args ...any) error {
	line := 1
	for q := path; q != ""; q = parent(q) {
		if l, ok := f.at[q]; ok {
			line = l
			break
		}
	}
	return &ConfigError{File: f.Name, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// TopicDef is an entry of topics:.
type TopicDef struct {
	Name   string
	Config log.TopicConfig
}

// Config is one pipeline, as written in YAML (durations parsed, defaults
// filled).
type Config struct {
	Name   string
	Source Source
	// Time: without it, the record's log timestamp is the event time.
	Time      *TimeConfig
	GroupBy   []string
	Window    WindowConfig
	Metrics   []MetricConfig
	Alerts    []AlertConfig
	Sinks     []SinkConfig
	DLQ       bool // copy rejected records to <name>.dlq
	LateTopic bool // copy too-late records to <name>.late
}

// Source is where a pipeline reads: a topic of the local log, or of a
// Kafka cluster.
type Source struct {
	Topic string // the local topic; empty with Kafka
	Kafka *KafkaSource
	Start log.Start // without a checkpoint
}

// KafkaSource is a topic of a Kafka cluster, consumed as a member of a
// consumer group: N fastflow instances in one group split its partitions.
type KafkaSource struct {
	Brokers []string
	Topic   string
	// Group is the consumer group; default the pipeline's name.
	Group string
	// CheckpointTopic holds the pipelines' state per partition in the
	// cluster, so that it moves with the partition; default
	// fastflow-checkpoints (compacted, created if missing).
	CheckpointTopic string
	// SessionTimeout is how long the group waits for a member that stops
	// heartbeating (killed, or cut off) before its partitions go to the
	// others, Kafka's session.timeout.ms; default 45s, Kafka's.
	SessionTimeout time.Duration
}

// DefaultSessionTimeout is KafkaSource.SessionTimeout's default, the
// Kafka consumer's.
const DefaultSessionTimeout = 45 * time.Second

// DefaultCheckpointTopic is KafkaSource.CheckpointTopic's default.
const DefaultCheckpointTopic = "fastflow-checkpoints"

// topic is the source topic's name, local or in the Kafka cluster.
func (s *Source) topic() string {
	if s.Kafka != nil {
		return s.Kafka.Topic
	}
	return s.Topic
}

// TopicName names the source for messages: the topic, with the cluster's
// first broker for Kafka.
func (s *Source) TopicName() string {
	if s.Kafka != nil {
		return "kafka://" + s.Kafka.Brokers[0] + "/" + s.Kafka.Topic
	}
	return s.Topic
}

// TimeConfig is event time.
type TimeConfig struct {
	// Field holds the event time; empty, the record's log timestamp is the
	// event time and the rest of the section still applies (a watermark
	// over record timestamps, like Flink's bounded out-of-orderness on
	// Kafka record timestamps).
	Field           string
	Unit            string // ms, s, us, ns, rfc3339 (of Field; default ms)
	MaxOutOfOrder   time.Duration
	AllowedLateness time.Duration
	// IdleTimeout: a partition without new records for this long (processing
	// time) stops holding the pipeline's watermark back. Default 30s.
	IdleTimeout time.Duration
}

// WindowConfig is the window definition.
type WindowConfig struct {
	Type    string // tumbling, hopping, session
	Size    time.Duration
	Advance time.Duration
	Gap     time.Duration
}

// MetricConfig is one metric.
type MetricConfig struct {
	Name  string
	Agg   string
	Field string
	Where string
	Of    string
	Over  string
	Q     float64
}

// AlertConfig is one alert rule.
type AlertConfig struct {
	Name     string
	When     string
	For      int
	Severity string
}

// SinkConfig is one sink.
type SinkConfig struct {
	Type    string // stdout, topic, webhook, kafka
	Topic   string
	Brokers []string // kafka
	URL     string
	Format  string // webhook: alertmanager or json
}

// ConfigError is a configuration error: file, line and key path.
type ConfigError struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Path, e.Msg)
}

// LoadFile reads and checks a pipelines file. Every error is a
// *ConfigError.
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse parses and checks a pipelines file's content; name is used in
// errors.
func Parse(name string, data []byte) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 1
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		msg := yamlLine.ReplaceAllString(err.Error(), "")
		return nil, &ConfigError{File: name, Line: line, Msg: strings.TrimPrefix(msg, "yaml: ")}
	}
	d := &decoder{file: name, at: map[string]int{}}
	f := &File{Name: name, at: d.at}
	if len(doc.Content) == 0 {
		return nil, &ConfigError{File: name, Line: 1, Msg: "empty file: want topics: and pipelines:"}
	}
	root := doc.Content[0]
	err := d.mapping(root, "", map[string]func(*yaml.Node, string) error{
		"topics": func(n *yaml.Node, p string) error {
			return d.sequence(n, p, func(n *yaml.Node, p string) error {
				t, err := d.topic(n, p)
				if err != nil {
					return err
				}
				// Declared twice, a topic took the second declaration's
				// settings, partitions too, which cannot be taken back.
				for _, o := range f.Topics {
					if o.Name == t.Name {
						return d.errf(n, join(p, "name"), "duplicate topic %q", t.Name)
					}
				}
				f.Topics = append(f.Topics, t)
				return nil
			})
		},
		"pipelines": func(n *yaml.Node, p string) error {
			return d.sequence(n, p, func(n *yaml.Node, p string) error {
				c, err := d.pipeline(n, p)
				f.Pipelines = append(f.Pipelines, c)
				return err
			})
		},
		"serve": func(n *yaml.Node, p string) error {
			return d.mapping(n, p, map[string]func(*yaml.Node, string) error{
				"http":              d.address(&f.Serve.HTTP),
				"kafka":             d.address(&f.Serve.Kafka),
				"kafka_advertise":   d.address(&f.Serve.KafkaAdvertise),
				"kafka_auto_create": d.integer(&f.Serve.KafkaAutoCreate, 0, 1<<16),
			})
		},
	})
	if err != nil {
		return nil, err
	}
	if len(f.Pipelines) == 0 && len(f.Topics) == 0 && f.Serve == (ServeConfig{}) {
		return nil, &ConfigError{File: name, Line: root.Line, Msg: "no pipelines:, topics: or serve:"}
	}
	seen := map[string]bool{}
	for i, c := range f.Pipelines {
		if seen[c.Name] {
			return nil, &ConfigError{File: name, Line: d.lines[i], Path: fmt.Sprintf("pipelines[%d].name", i), Msg: fmt.Sprintf("duplicate pipeline %q", c.Name)}
		}
		seen[c.Name] = true
	}
	return f, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): ?`)

func (d *decoder) topic(n *yaml.Node, path string) (TopicDef, error) {
	var t TopicDef
	var partitions int
	var maxRecordBytes int64
	c := &t.Config
	err := d.mapping(n, path, map[string]func(*yaml.Node, string) error{
		"name":             d.str(&t.Name),
		"partitions":       d.integer(&partitions, 1, 1<<16),
		"retention":        topicText(d, &c.Retention, log.ParseRetention),
		"retention_bytes":  topicText(d, &c.RetentionBytes, log.ParseSize),
		"segment_bytes":    topicText(d, &c.SegmentBytes, log.ParseSize),
		"max_record_bytes": topicText(d, &maxRecordBytes, log.ParseSize),
		"cleanup":          d.str(&c.Cleanup),
		"timestamp_type":   topicText(d, &c.TimestampType, log.ParseTimestampType),
		"delete_retention": d.duration(&c.DeleteRetention, false),
	})
	if err != nil {
		return t, err
	}
	if !log.ValidTopicName(t.Name) {
		return t, d.errf(n, join(path, "name"), "missing or invalid topic name %q", t.Name)
	}
	if partitions == 0 {
		return t, d.errf(n, join(path, "partitions"), "required")
	}
	c.Partitions = int32(partitions)
	c.MaxRecordBytes = int(maxRecordBytes)
	if err := c.WithDefaults().Validate(); err != nil {
		return t, d.errf(n, path, "%v", err)
	}
	return t, nil
}

// maxPipelineName bounds a pipeline's name so that what is named after it
// is a valid name too: its checkpoint file, NAME.checkpoint (written as
// NAME.checkpoint.tmp first, in a file name's 255 bytes), and its
// NAME.dlq and NAME.late topics (249 bytes).
const maxPipelineName = 255 - len(checkpointSuffix+atomicfile.TempSuffix)

func (d *decoder) pipeline(n *yaml.Node, path string) (*Config, error) {
	c := &Config{}
	var keyOf = map[string]*yaml.Node{}
	node := func(key string, fn func(*yaml.Node, string) error) func(*yaml.Node, string) error {
		return func(n *yaml.Node, p string) error {
			keyOf[key] = n
			return fn(n, p)
		}
	}
	var sourceNode, windowNode *yaml.Node
	var startText string
	err := d.mapping(n, path, map[string]func(*yaml.Node, string) error{
		"name": node("name", d.str(&c.Name)),
		"source": func(n *yaml.Node, p string) error {
			sourceNode = n
			return d.mapping(n, p, map[string]func(*yaml.Node, string) error{
				"topic": d.str(&c.Source.Topic),
				"start": d.str(&startText),
				"kafka": func(n *yaml.Node, p string) error {
					c.Source.Kafka = &KafkaSource{}
					return d.kafkaSource(n, p, c.Source.Kafka)
				},
			})
		},
		"time": func(n *yaml.Node, p string) error {
			c.Time = &TimeConfig{IdleTimeout: 30 * time.Second}
			return d.timeSection(n, p, c.Time)
		},
		"group_by": func(n *yaml.Node, p string) error {
			return d.sequence(n, p, func(n *yaml.Node, p string) error {
				var f string
				if err := d.path(&f)(n, p); err != nil {
					return err
				}
				if f == "" {
					return d.errf(n, p, "empty field name")
				}
				if slices.Contains(c.GroupBy, f) {
					// The key would hold the name twice: {"id":1,"id":1}.
					return d.errf(n, p, "duplicate field %q", f)
				}
				c.GroupBy = append(c.GroupBy, f)
				return nil
			})
		},
		"window": func(n *yaml.Node, p string) error {
			windowNode = n
			return d.window(n, p, &c.Window)
		},
		"metrics": func(n *yaml.Node, p string) error {
			return d.sequence(n, p, func(n *yaml.Node, p string) error {
				m, err := d.metric(n, p)
				if err != nil {
					return err
				}
				c.Metrics = append(c.Metrics, m)
				return d.checkMetric(n, p, &m)
			})
		},
		"alerts": func(n *yaml.Node, p string) error {
			return d.sequence(n, p, func(n *yaml.Node, p string) error {
				a, err := d.alert(n, p)
				if err != nil {
					return err
				}
				c.Alerts = append(c.Alerts, a)
				return nil
			})
		},
		"sinks": func(n *yaml.Node, p string) error {
			return d.sequence(n, p, func(n *yaml.Node, p string) error {
				s, err := d.sink(n, p, c.Sinks)
				if err != nil {
					return err
				}
				c.Sinks = append(c.Sinks, s)
				return nil
			})
		},
		"dlq":        d.boolean(&c.DLQ),
		"late_topic": d.boolean(&c.LateTopic),
	})
	if err != nil {
		return c, err
	}
	d.lines = append(d.lines, n.Line)
	if !log.ValidTopicName(c.Name) || log.IsInternal(c.Name) || len(c.Name) > maxPipelineName {
		at := n
		if keyOf["name"] != nil {
			at = keyOf["name"]
		}
		return c, d.errf(at, join(path, "name"), "missing or invalid pipeline name %q (1 to %d of a-z A-Z 0-9 . _ -)", c.Name, maxPipelineName)
	}
	if sourceNode == nil || c.Source.Topic == "" && c.Source.Kafka == nil {
		at := n
		if sourceNode != nil {
			at = sourceNode
		}
		return c, d.errf(at, join(path, "source.topic"), "required (or source.kafka)")
	}
	if c.Source.Topic != "" && c.Source.Kafka != nil {
		return c, d.errf(sourceNode, join(path, "source"), "topic: or kafka:, not both")
	}
	if k := c.Source.Kafka; k != nil && k.Group == "" {
		k.Group = c.Name
	}
	if c.Source.Start, err = log.ParseStart(startText); err != nil || c.Source.Start.Kind == log.StartNone {
		return c, d.errf(sourceNode, join(path, "source.start"), "want earliest, latest, an offset or an RFC 3339 time, not %q", startText)
	}
	if windowNode == nil {
		return c, d.errf(n, join(path, "window"), "required")
	}
	if len(c.Metrics) == 0 {
		return c, d.errf(n, join(path, "metrics"), "at least one metric is required")
	}
	if len(c.Sinks) == 0 {
		c.Sinks = []SinkConfig{{Type: "stdout"}}
	}
	if err := d.checkNoLoop(n, path, c); err != nil {
		return c, err
	}
	// Compiling catches references between metrics and alerts.
	if _, err := compile(c); err != nil {
		ce := err.(*compileError)
		return c, d.errAt(join(path, ce.path), n.Line, "%s", ce.msg)
	}
	return c, nil
}

// checkNoLoop refuses a pipeline that would read what it writes.
func (d *decoder) checkNoLoop(n *yaml.Node, path string, c *Config) error {
	// A local topic the pipeline writes must not be the one it reads: its
	// own output would come back as input, forever when following.
	if c.Source.Kafka == nil {
		for i, s := range c.Sinks {
			if s.Type == "topic" && s.Topic == c.Source.Topic {
				return d.errAt(join(path, fmt.Sprintf("sinks[%d].topic", i)), n.Line,
					"%q is the pipeline's source: its results would come back as its input", s.Topic)
			}
		}
		for _, side := range []struct {
			on   bool
			key  string
			name string
		}{{c.DLQ, "dlq", c.Name + ".dlq"}, {c.LateTopic, "late_topic", c.Name + ".late"}} {
			if side.on && side.name == c.Source.Topic {
				return d.errAt(join(path, side.key), n.Line,
					"writes %q, the pipeline's source: its copies would come back as its input", side.name)
			}
		}
	}
	// So must a Kafka sink's topic on the source's cluster (as far as a
	// broker address they share tells), and its checkpoint topic.
	if k := c.Source.Kafka; k != nil {
		for i, s := range c.Sinks {
			if s.Type == "kafka" && s.Topic == k.Topic && slices.ContainsFunc(s.Brokers, func(b string) bool { return slices.Contains(k.Brokers, b) }) {
				return d.errAt(join(path, fmt.Sprintf("sinks[%d].topic", i)), n.Line,
					"%q on %s is the pipeline's source: its results would come back as its input", s.Topic, strings.Join(s.Brokers, ","))
			}
		}
		if k.CheckpointTopic == k.Topic {
			return d.errAt(join(path, "source.kafka.checkpoint_topic"), n.Line,
				"%q is the pipeline's source: its checkpoints would come back as its input", k.CheckpointTopic)
		}
	}
	return nil
}

// kafkaSource decodes source.kafka into k, with its defaults.
func (d *decoder) kafkaSource(n *yaml.Node, p string, k *KafkaSource) error {
	if err := d.mapping(n, p, map[string]func(*yaml.Node, string) error{
		"brokers":          d.addresses(&k.Brokers),
		"topic":            d.str(&k.Topic),
		"group":            d.str(&k.Group),
		"checkpoint_topic": d.str(&k.CheckpointTopic),
		"session_timeout":  d.duration(&k.SessionTimeout, false),
	}); err != nil {
		return err
	}
	switch {
	case len(k.Brokers) == 0:
		return d.errf(n, join(p, "brokers"), "required: the Kafka cluster's bootstrap brokers, host:port")
	case !log.ValidTopicName(k.Topic):
		return d.errf(n, join(p, "topic"), "missing or invalid topic name %q", k.Topic)
	}
	if k.CheckpointTopic == "" {
		k.CheckpointTopic = DefaultCheckpointTopic
	}
	if k.SessionTimeout == 0 {
		k.SessionTimeout = DefaultSessionTimeout
	}
	if !log.ValidTopicName(k.CheckpointTopic) {
		return d.errf(n, join(p, "checkpoint_topic"), "invalid topic name %q", k.CheckpointTopic)
	}
	if k.Group != "" && !log.ValidGroupName(k.Group) {
		return d.errf(n, join(p, "group"), "invalid group name %q", k.Group)
	}
	return nil
}

// timeSection decodes a pipeline's time section into tc.
func (d *decoder) timeSection(n *yaml.Node, p string, tc *TimeConfig) error {
	if err := d.mapping(n, p, map[string]func(*yaml.Node, string) error{
		"field":            d.path(&tc.Field),
		"unit":             d.str(&tc.Unit),
		"max_out_of_order": d.duration(&tc.MaxOutOfOrder, true),
		"allowed_lateness": d.duration(&tc.AllowedLateness, true),
		"idle_timeout":     d.duration(&tc.IdleTimeout, false),
	}); err != nil {
		return err
	}
	switch tc.Unit {
	case "":
		if tc.Field != "" {
			tc.Unit = "ms"
		}
	case "ms", "s", "us", "ns", "rfc3339":
		if tc.Field == "" {
			return d.errf(n, join(p, "unit"), "the unit of time.field, which is missing (without field, the record timestamp is the event time)")
		}
	default:
		return d.errf(n, join(p, "unit"), "unknown unit %q (want ms, s, us, ns or rfc3339)", tc.Unit)
	}
	return nil
}

// metric decodes one of metrics; checkMetric checks it.
func (d *decoder) metric(n *yaml.Node, p string) (MetricConfig, error) {
	var m MetricConfig
	var q string
	err := d.mapping(n, p, map[string]func(*yaml.Node, string) error{
		"name": d.str(&m.Name), "agg": d.str(&m.Agg), "field": d.path(&m.Field),
		"where": d.str(&m.Where), "of": d.str(&m.Of), "over": d.str(&m.Over), "q": d.str(&q),
	})
	if err != nil {
		return m, err
	}
	if q != "" {
		v, err := strconv.ParseFloat(q, 64)
		if err != nil || !(v > 0 && v <= 1) {
			return m, d.errf(n, join(p, "q"), "want a quantile in (0, 1], e.g. 0.95, not %q", q)
		}
		m.Q = v
	}
	return m, nil
}

// alert decodes one of alerts, with its defaults.
func (d *decoder) alert(n *yaml.Node, p string) (AlertConfig, error) {
	a := AlertConfig{For: 1, Severity: "warning"}
	err := d.mapping(n, p, map[string]func(*yaml.Node, string) error{
		"name": d.str(&a.Name), "when": d.str(&a.When), "for": d.integer(&a.For, 1, 1<<20),
		"severity": d.str(&a.Severity),
	})
	switch {
	case err != nil:
		return a, err
	case a.Name == "":
		return a, d.errf(n, join(p, "name"), "required")
	case a.When == "":
		return a, d.errf(n, join(p, "when"), "required")
	}
	return a, nil
}

// sink decodes one of sinks, which must not repeat one of before.
func (d *decoder) sink(n *yaml.Node, p string, before []SinkConfig) (SinkConfig, error) {
	var s SinkConfig
	if err := d.mapping(n, p, map[string]func(*yaml.Node, string) error{
		"type": d.str(&s.Type), "topic": d.str(&s.Topic), "url": d.str(&s.URL), "format": d.str(&s.Format),
		"brokers": d.addresses(&s.Brokers),
	}); err != nil {
		return s, err
	}
	if err := d.checkSink(n, p, &s); err != nil {
		return s, err
	}
	for i, o := range before {
		if o.Type == s.Type && o.Topic == s.Topic && o.URL == s.URL && o.Format == s.Format && slices.Equal(o.Brokers, s.Brokers) {
			return s, d.errf(n, p, "the same sink as sinks[%d]: each result would go out twice", i)
		}
	}
	return s, nil
}

func (d *decoder) window(n *yaml.Node, p string, w *WindowConfig) error {
	err := d.mapping(n, p, map[string]func(*yaml.Node, string) error{
		"type":    d.str(&w.Type),
		"size":    d.duration(&w.Size, false),
		"advance": d.duration(&w.Advance, false),
		"gap":     d.duration(&w.Gap, false),
	})
	if err != nil {
		return err
	}
	need := func(ok bool, key, msg string) error {
		if !ok {
			return d.errf(n, join(p, key), "%s", msg)
		}
		return nil
	}
	switch w.Type {
	case "tumbling":
		if err := need(w.Size > 0, "size", "required for a tumbling window"); err != nil {
			return err
		}
		if err := need(w.Advance == 0 && w.Gap == 0, "type", "a tumbling window takes size only"); err != nil {
			return err
		}
	case "hopping":
		if err := need(w.Size > 0 && w.Advance > 0, "advance", "a hopping window needs size and advance"); err != nil {
			return err
		}
		if err := need(w.Advance <= w.Size, "advance", "must not exceed size"); err != nil {
			return err
		}
		// A mistaken unit (advance: 1ms for 1m) would make every event
		// update millions of windows: refused before anything runs.
		if k := agg.WindowsPerEvent(int64(w.Size), int64(w.Advance)); k > agg.MaxWindowsPerEvent {
			return d.errf(n, join(p, "advance"), "puts every event in %d windows (size / advance); at most %d, e.g. advance: %v",
				k, agg.MaxWindowsPerEvent, (w.Size+agg.MaxWindowsPerEvent-1)/agg.MaxWindowsPerEvent)
		}
		if err := need(w.Gap == 0, "gap", "a hopping window takes size and advance only"); err != nil {
			return err
		}
	case "session":
		if err := need(w.Gap > 0, "gap", "required for a session window"); err != nil {
			return err
		}
		if err := need(w.Size == 0 && w.Advance == 0, "type", "a session window takes gap only"); err != nil {
			return err
		}
	default:
		return d.errf(n, join(p, "type"), "unknown window type %q (want tumbling, hopping or session)", w.Type)
	}
	for _, v := range []time.Duration{w.Size, w.Advance, w.Gap} {
		if v%time.Millisecond != 0 {
			return d.errf(n, p, "window durations must be whole milliseconds")
		}
	}
	return nil
}

func (d *decoder) checkMetric(n *yaml.Node, p string, m *MetricConfig) error {
	if m.Name == "" {
		return d.errf(n, join(p, "name"), "required")
	}
	kind, ok := agg.ParseKind(m.Agg)
	if !ok {
		if m.Agg == "" {
			return d.errf(n, join(p, "agg"), "required")
		}
		return d.errf(n, join(p, "agg"), "unknown %q (want count, sum, avg, min, max, percentile, ratio or rate)", m.Agg)
	}
	bad := func(key string, ok bool, msg string) error {
		if ok {
			return nil
		}
		return d.errf(n, join(p, key), "%s", msg)
	}
	switch kind {
	case agg.Count:
		if err := bad("field", m.Field == "", "count takes no field (filter with where)"); err != nil {
			return err
		}
	case agg.SumKind, agg.Avg, agg.Min, agg.Max, agg.Percentile:
		if err := bad("field", m.Field != "", "required for "+m.Agg); err != nil {
			return err
		}
		if err := bad("q", kind != agg.Percentile || m.Q > 0, "required for percentile (e.g. q: 0.95)"); err != nil {
			return err
		}
	case agg.Ratio:
		if err := bad("of", m.Of != "" && m.Over != "", "ratio needs of and over"); err != nil {
			return err
		}
	case agg.Rate:
		if err := bad("of", m.Of != "", "rate needs of"); err != nil {
			return err
		}
		if err := bad("over", m.Over == "", "rate takes no over (it divides of by the window's length in seconds)"); err != nil {
			return err
		}
	}
	// What an aggregate does not use is refused, not ignored.
	if err := bad("q", kind == agg.Percentile || m.Q == 0, "only percentile takes q"); err != nil {
		return err
	}
	if kind == agg.Ratio || kind == agg.Rate {
		if err := bad("field", m.Field == "", m.Agg+" takes no field (it computes from the metrics it names)"); err != nil {
			return err
		}
		if err := bad("where", m.Where == "", m.Agg+" takes no where (filter the metrics it names: of, over)"); err != nil {
			return err
		}
	}
	if kind != agg.Ratio && kind != agg.Rate && (m.Of != "" || m.Over != "") {
		return d.errf(n, join(p, "of"), "only ratio and rate take of/over")
	}
	return nil
}

func (d *decoder) checkSink(n *yaml.Node, p string, s *SinkConfig) error {
	switch s.Type {
	case "stdout":
		if s.Topic != "" || s.URL != "" || s.Format != "" || s.Brokers != nil {
			return d.errf(n, p, "a stdout sink takes no topic, url, format or brokers")
		}
	case "topic", "kafka":
		if !log.ValidTopicName(s.Topic) {
			return d.errf(n, join(p, "topic"), "missing or invalid topic name %q", s.Topic)
		}
		if s.URL != "" || s.Format != "" {
			return d.errf(n, p, "a %s sink takes no url or format", s.Type)
		}
		if s.Type == "topic" && s.Brokers != nil {
			return d.errf(n, join(p, "brokers"), "a topic sink writes the local log; for a Kafka cluster use type: kafka")
		}
		if s.Type == "kafka" && len(s.Brokers) == 0 {
			return d.errf(n, join(p, "brokers"), "required: the Kafka cluster's bootstrap brokers, host:port")
		}
	case "webhook":
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return d.errf(n, join(p, "url"), "want an http(s) URL, not %q", s.URL)
		}
		if s.Format == "" {
			s.Format = "json"
		}
		if s.Format != "json" && s.Format != "alertmanager" {
			return d.errf(n, join(p, "format"), "unknown format %q (want alertmanager or json)", s.Format)
		}
	case "":
		return d.errf(n, join(p, "type"), "required (stdout, topic, kafka or webhook)")
	default:
		return d.errf(n, join(p, "type"), "unknown sink type %q (want stdout, topic, kafka or webhook)", s.Type)
	}
	return nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
