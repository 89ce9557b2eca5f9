package pipeline_test

import (
	"context"
	"fmt"
	"os"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline"
)

// A pipeline over a topic: requests per service per minute, and their
// p90, emitted when the run reaches the end of the log. Percentiles are
// HDR histogram values: the highest value equivalent to the nearest-rank
// sample, within 0.1%.
func Example() {
	dir, _ := os.MkdirTemp("", "fastflow-pipeline-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	f, err := pipeline.Parse("example.yaml", []byte(`
topics:
  - {name: events, partitions: 1}
pipelines:
  - name: latency
    source: {topic: events}
    time: {field: ts, unit: ms}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: requests, agg: count}
      - {name: p90_ms, agg: percentile, field: ms, q: 0.9}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	pipeline.CreateTopics(l, f, nil)
	t, _ := l.Topic("events")
	p, _ := t.Partition(0)
	var recs []log.Record
	for i := range 10 {
		recs = append(recs, log.Record{Value: fmt.Appendf(nil, `{"ts":%d,"service":"search","ms":%d}`, 1795341600000+int64(i)*1000, 10*(i+1))})
	}
	p.Append(recs, log.AcksLeader)

	pipeline.Run(context.Background(), l, f, pipeline.Options{UntilEnd: true, Stdout: os.Stdout, NoPin: true})
	// Output:
	// {"type":"window","pipeline":"latency","key":{"service":"search"},"window_start":"2026-11-22T10:00:00Z","window_end":"2026-11-22T10:01:00Z","revision":0,"metrics":{"requests":10,"p90_ms":90.046463}}
	// {"type":"stats","pipeline":"latency","records":10,"events":10,"rejected":{},"late_dropped":0}
}
