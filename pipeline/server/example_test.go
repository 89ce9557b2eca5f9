package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline"
	"github.com/fastflow/fastflow/pipeline/server"
)

// Embed the server: run a file's pipelines over a log, ingest over HTTP,
// observe results as they are emitted, and query the API.
func Example() {
	dir, _ := os.MkdirTemp("", "fastflow-server-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	f, err := pipeline.Parse("example.yaml", []byte(`
topics:
  - {name: events, partitions: 1}
pipelines:
  - name: requests
    source: {topic: events}
    time: {field: ts, unit: ms}
    group_by: [service]
    window: {type: tumbling, size: 1s}
    metrics:
      - {name: count, agg: count}
      - {name: max_ms, agg: max, field: ms}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := server.New(l, f, server.Options{})
	results := make(chan string, 16)
	srv.OnResult(func(r *pipeline.Result) {
		results <- string(r.Line) // Line is valid during the call: copied
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	base := "http://" + ln.Addr().String()
	body := `{"ts":1000,"service":"api","ms":12}
{"ts":1400,"service":"api","ms":30}
{"ts":2100,"service":"api","ms":7}`
	resp, err := http.Post(base+"/topics/events/records", "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	// The event at 2.1 s moves the watermark past the first window's end.
	select {
	case line := <-results:
		fmt.Println(line)
	case <-time.After(30 * time.Second):
		fmt.Println("no result")
	}
	resp, _ = http.Get(base + "/api/v1/pipelines/requests/windows?last=1")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, strings.Contains(string(b), `"count":2`))

	stop()
	fmt.Println(<-done)
	// Output:
	// {"type":"window","pipeline":"requests","key":{"service":"api"},"window_start":"1970-01-01T00:00:01Z","window_end":"1970-01-01T00:00:02Z","revision":0,"metrics":{"count":2,"max_ms":30}}
	// 200 true
	// <nil>
}
