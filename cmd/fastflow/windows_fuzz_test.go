package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
	"github.com/fastflow/fastflow/pipeline"
)

// FuzzWindowsMatchReference runs the engine in process on short event
// sequences the fuzzer shapes — window kind and sizes, disorder, lateness,
// keys, late and too-late events — on one partition, and compares every
// line with the sequential reference (genericRef): the windows, their
// revisions and metrics, and late_dropped.
func FuzzWindowsMatchReference(f *testing.F) {
	f.Add([]byte("\x02\x01\x00\x02\x03" + "\x00\x10\x00\x00\x30\x00\x01\x40\x00\x00\x10\xf0\x02\x80\x00\x00\x00\xe0"))
	f.Add([]byte("\x00\x04\x00\x01\x01" + "\x00\x40\x00\x01\x40\x00\x02\x40\x00\x00\x90\xff\x01\x10\xd0"))
	f.Add([]byte("\x01\x05\x01\x00\x02" + "\x00\x20\x00\x01\x60\x00\x02\x05\xf8\x00\xa0\x00\x01\x00\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 8 || len(data) > 5+3*400 {
			return
		}
		kind := []string{"tumbling", "hopping", "session"}[data[0]%3]
		size := int64(1+data[1]%8) * 1000
		advance := int64(1+int64(data[2])%(size/1000)) * 1000
		gap := int64(1+data[1]%8) * 1000
		ooo, lateness := int64(data[3]%4)*1000, int64(data[4]%4)*1000
		window := map[string]string{
			"tumbling": fmt.Sprintf("{type: tumbling, size: %dms}", size),
			"hopping":  fmt.Sprintf("{type: hopping, size: %dms, advance: %dms}", size, advance),
			"session":  fmt.Sprintf("{type: session, gap: %dms}", gap),
		}[kind]
		var lines []string
		ts := int64(1795341600000)
		for ev := data[5:]; len(ev) >= 3; ev = ev[3:] {
			ts += int64(ev[1]) * 20
			t := ts
			if ev[2] >= 200 {
				t -= int64(ev[2]-200) * 300 // up to 16.5 s late
			}
			status := "ok"
			if ev[0]&4 != 0 {
				status = "error"
			}
			lines = append(lines, fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q,"response_time":%d.5}`,
				t, []string{"a", "b", "c"}[ev[0]%3], status, ev[1]))
		}
		want := genericRef(lines, kind, size, advance, gap, ooo, lateness)

		l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		tp, err := l.CreateTopic("events", log.TopicConfig{Partitions: 1})
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader})
		for _, line := range lines {
			if err := pr.Add(nil, []byte(line), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := pr.Close(); err != nil {
			t.Fatal(err)
		}
		file, err := pipeline.Parse("w.yaml", []byte(`pipelines:
  - name: w
    source: {topic: events}
    time: {field: ts, unit: ms, max_out_of_order: `+fmt.Sprint(ooo)+`ms, allowed_lateness: `+fmt.Sprint(lateness)+`ms}
    group_by: [service]
    window: `+window+`
    metrics:
      - {name: n, agg: count}
      - {name: errors, agg: count, where: 'status != "ok"'}
      - {name: slow, agg: count, where: 'response_time >= 250'}
      - {name: total, agg: sum, field: response_time}
      - {name: lo, agg: min, field: response_time}
      - {name: hi, agg: max, field: response_time}
`))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := pipeline.Run(context.Background(), l, file, pipeline.Options{UntilEnd: true, Stdout: &out, NoPin: true}); err != nil {
			t.Fatal(err)
		}
		got := refFormat(t, out.String())
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s %s, out of order %d ms, lateness %d ms, %d events:\n%s\ngot:\n%s\nwant:\n%s", kind, window, ooo, lateness,
				len(lines), strings.Join(lines, "\n"), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
