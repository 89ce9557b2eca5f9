package pipeline

import (
	"math"
	"strconv"
	"time"

	"github.com/fastflow/fastflow/agg"
	"github.com/fastflow/fastflow/log"
)

// The JSON lines of SPEC's "Output" section, written without reflection.

// appendKey writes the key object {"field":value,...} from the group-by
// field names and the encoded key (JSON values, NUL-separated).
func appendKey(dst []byte, fields []string, key string) []byte {
	dst = append(dst, '{')
	rest := key
	for i, f := range fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = log.AppendJSONString(dst, f)
		dst = append(dst, ':')
		v := rest
		if j := indexNUL(rest); j >= 0 {
			v, rest = rest[:j], rest[j+1:]
		}
		dst = append(dst, v...)
	}
	return append(dst, '}')
}

func indexNUL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return -1
}

// appendTime writes unix ms as an RFC 3339 UTC string, with a fraction
// only when there is one.
func appendTime(dst []byte, ms int64) []byte {
	dst = append(dst, '"')
	dst = time.UnixMilli(ms).UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendFloat writes f as encoding/json does: shortest repr, exponent only
// for very large or small magnitudes.
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if m := len(dst); m-n >= 4 && dst[m-4] == 'e' && dst[m-3] == '-' && dst[m-2] == '0' {
			dst[m-2] = dst[m-1]
			dst = dst[:m-1]
		}
	}
	return dst
}

func appendValue(dst []byte, v agg.Value) []byte {
	switch {
	case !v.OK:
		return append(dst, "null"...)
	case v.Integer:
		return strconv.AppendInt(dst, int64(v.V), 10)
	}
	return appendFloat(dst, v.V)
}

// windowLine is one emitted window result.
type windowLine struct {
	start, end int64
	key        string
	revision   int
	values     []agg.Value
}

func (p *plan) appendWindow(dst []byte, w *windowLine) []byte {
	dst = append(dst, `{"type":"window","pipeline":`...)
	dst = log.AppendJSONString(dst, p.cfg.Name)
	dst = append(dst, `,"key":`...)
	dst = appendKey(dst, p.cfg.GroupBy, w.key)
	dst = append(dst, `,"window_start":`...)
	dst = appendTime(dst, w.start)
	dst = append(dst, `,"window_end":`...)
	dst = appendTime(dst, w.end)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, int64(w.revision), 10)
	dst = append(dst, `,"metrics":{`...)
	for i, m := range p.cfg.Metrics {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = log.AppendJSONString(dst, m.Name)
		dst = append(dst, ':')
		dst = appendValue(dst, w.values[i])
	}
	return append(dst, "}}"...)
}

// alertEvent is an alert transition.
type alertEvent struct {
	rule       *alertRule
	firing     bool
	key        string
	start, end int64
	value      agg.Value
}

func (p *plan) appendAlert(dst []byte, a *alertEvent) []byte {
	dst = append(dst, `{"type":"alert","pipeline":`...)
	dst = log.AppendJSONString(dst, p.cfg.Name)
	dst = append(dst, `,"alert":`...)
	dst = log.AppendJSONString(dst, a.rule.name)
	dst = append(dst, `,"severity":`...)
	dst = log.AppendJSONString(dst, a.rule.severity)
	dst = append(dst, `,"state":`...)
	if a.firing {
		dst = append(dst, `"firing"`...)
	} else {
		dst = append(dst, `"resolved"`...)
	}
	dst = append(dst, `,"key":`...)
	dst = appendKey(dst, p.cfg.GroupBy, a.key)
	dst = append(dst, `,"window_start":`...)
	dst = appendTime(dst, a.start)
	dst = append(dst, `,"window_end":`...)
	dst = appendTime(dst, a.end)
	dst = append(dst, `,"metric":`...)
	dst = log.AppendJSONString(dst, p.cfg.Metrics[a.rule.metric].Name)
	dst = append(dst, `,"value":`...)
	dst = appendValue(dst, a.value)
	dst = append(dst, `,"threshold":`...)
	dst = appendFloat(dst, a.rule.threshold)
	return append(dst, '}')
}

// Stats are a pipeline's counters.
type Stats struct {
	Records     int64
	Events      int64
	Rejected    [numReasons]int64
	LateDropped int64
	SinkDropped int64
	Skipped     int64 // deleted by retention before they were processed (following)
}

func (p *plan) appendStats(dst []byte, s *Stats) []byte {
	dst = append(dst, `{"type":"stats","pipeline":`...)
	dst = log.AppendJSONString(dst, p.cfg.Name)
	dst = append(dst, `,"records":`...)
	dst = strconv.AppendInt(dst, s.Records, 10)
	dst = append(dst, `,"events":`...)
	dst = strconv.AppendInt(dst, s.Events, 10)
	dst = append(dst, `,"rejected":{`...)
	first := true
	for r, n := range s.Rejected {
		if n == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = log.AppendJSONString(dst, reasonNames[r])
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, n, 10)
	}
	dst = append(dst, `},"late_dropped":`...)
	dst = strconv.AppendInt(dst, s.LateDropped, 10)
	return append(dst, '}')
}

// warnStats logs what the stats line, SPEC's fields only, does not say:
// alerts a webhook could not deliver and records retention deleted before
// they were read.
func (p *plan) warnStats(s *Stats) {
	if s.SinkDropped > 0 {
		p.logger().Warn("webhook sinks dropped alerts they could not deliver", "pipeline", p.cfg.Name, "sink_dropped", s.SinkDropped)
	}
	if s.Skipped > 0 {
		p.logger().Warn("records deleted by retention before the pipeline read them", "pipeline", p.cfg.Name, "skipped_by_retention", s.Skipped)
	}
}
