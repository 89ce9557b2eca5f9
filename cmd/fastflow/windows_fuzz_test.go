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
	"github.com/fastflow/fastflow/partition"
	"github.com/fastflow/fastflow/pipeline"
)

// fuzzWindows is a pipeline and its events as a fuzzer shapes them:
// window kind and sizes, out-of-order bound, lateness, then 3 bytes an
// event — its key (of keys), status, time step, and how late it is.
type fuzzWindows struct {
	kind, window                      string
	size, advance, gap, ooo, lateness int64
	lines                             []string
	keys                              []string // each line's
}

func decodeFuzzWindows(data []byte, keys []string) (fw fuzzWindows, ok bool) {
	if len(data) < 8 || len(data) > 5+3*400 {
		return fw, false
	}
	fw.kind = []string{"tumbling", "hopping", "session"}[data[0]%3]
	fw.size = int64(1+data[1]%8) * 1000
	fw.advance = int64(1+int64(data[2])%(fw.size/1000)) * 1000
	fw.gap = int64(1+data[1]%8) * 1000
	fw.ooo, fw.lateness = int64(data[3]%4)*1000, int64(data[4]%4)*1000
	fw.window = map[string]string{
		"tumbling": fmt.Sprintf("{type: tumbling, size: %dms}", fw.size),
		"hopping":  fmt.Sprintf("{type: hopping, size: %dms, advance: %dms}", fw.size, fw.advance),
		"session":  fmt.Sprintf("{type: session, gap: %dms}", fw.gap),
	}[fw.kind]
	ts := int64(1795341600000)
	for ev := data[5:]; len(ev) >= 3; ev = ev[3:] {
		ts += int64(ev[1]) * 20
		t := ts
		if ev[2] >= 200 {
			t -= int64(ev[2]-200) * 300 // up to 16.5 s late
		}
		status := "ok"
		if ev[0]&0x80 != 0 {
			status = "error"
		}
		key := keys[int(ev[0]&0x7f)%len(keys)]
		fw.lines = append(fw.lines, fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q,"response_time":%d.5}`, t, key, status, ev[1]))
		fw.keys = append(fw.keys, key)
	}
	return fw, true
}

// run produces the events into a topic of parts partitions, keyed by
// service, runs the pipeline with --until-end on workers workers, and
// returns its output as genericRef writes it.
func (fw *fuzzWindows) run(t *testing.T, parts int32, workers int) []string {
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tp, err := l.CreateTopic("events", log.TopicConfig{Partitions: parts})
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: -1})
	for i, line := range fw.lines {
		if err := pr.Add([]byte(fw.keys[i]), []byte(line), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := pipeline.Parse("w.yaml", []byte(refPipelineYAML(fw.window, fw.ooo, fw.lateness)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := pipeline.Run(context.Background(), l, file, pipeline.Options{UntilEnd: true, Stdout: &out, NoPin: true, Workers: workers}); err != nil {
		t.Fatal(err)
	}
	return refFormat(t, out.String())
}

func (fw *fuzzWindows) String() string {
	return fmt.Sprintf("%s, out of order %d ms, lateness %d ms, %d events:\n%s", fw.window, fw.ooo, fw.lateness, len(fw.lines), strings.Join(fw.lines, "\n"))
}

// FuzzWindowsMatchReference runs the engine in process on short event
// sequences the fuzzer shapes, on one partition, and compares every line
// with the sequential reference (genericRef): the windows, their
// revisions and metrics, and late_dropped.
func FuzzWindowsMatchReference(f *testing.F) {
	f.Add([]byte("\x02\x01\x00\x02\x03" + "\x00\x10\x00\x00\x30\x00\x01\x40\x00\x00\x10\xf0\x02\x80\x00\x00\x00\xe0"))
	f.Add([]byte("\x00\x04\x00\x01\x01" + "\x00\x40\x00\x01\x40\x00\x02\x40\x00\x00\x90\xff\x01\x10\xd0"))
	f.Add([]byte("\x01\x05\x01\x00\x02" + "\x00\x20\x00\x01\x60\x00\x02\x05\xf8\x00\xa0\x00\x01\x00\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fw, ok := decodeFuzzWindows(data, []string{"a", "b", "c"})
		if !ok {
			return
		}
		want := genericRef(fw.lines, fw.kind, fw.size, fw.advance, fw.gap, fw.ooo, fw.lateness)
		got := fw.run(t, 1, 1)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s\ngot:\n%s\nwant:\n%s", &fw, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// FuzzWindowsPerPartitionMatchReference: the same over 2 or 3 partitions
// keyed by service, on 1 or 2 workers. Lateness is judged per partition,
// so each partition's events through the reference must end with the
// windows the pipeline ends with (each window's last revision; sessions a
// later one contains left out), and the late events add up.
func FuzzWindowsPerPartitionMatchReference(f *testing.F) {
	f.Add(byte(0), []byte("\x02\x01\x00\x02\x03"+"\x00\x10\x00\x01\x30\x00\x02\x40\x00\x03\x10\xf0\x04\x80\x00\x05\x00\xe0"))
	f.Add(byte(3), []byte("\x00\x04\x00\x01\x01"+"\x00\x40\x00\x01\x40\x00\x02\x40\x00\x03\x90\xff\x04\x10\xd0"))
	f.Add(byte(1), []byte("\x01\x05\x01\x00\x02"+"\x00\x20\x00\x01\x60\x00\x02\x05\xf8\x03\xa0\x00\x04\x00\xfe"))
	f.Add(byte(2), []byte("210010000X000\xd7")) // an event inside an open session
	keys := []string{"a", "b", "c", "d", "e", "f"}
	f.Fuzz(func(t *testing.T, shape byte, data []byte) {
		fw, ok := decodeFuzzWindows(data, keys)
		if !ok {
			return
		}
		parts, workers := int32(2+shape%2), 1+int(shape/2%2)
		byPart := make([][]string, parts)
		for i, line := range fw.lines {
			p := partition.ForKey([]byte(fw.keys[i]), parts)
			byPart[p] = append(byPart[p], line)
		}
		want, wantLate := finalPerPartition(t, byPart, fw.kind, fw.size, fw.advance, fw.gap, fw.ooo, fw.lateness)
		got, gotLate := finalSessions(t, fw.run(t, parts, workers))
		if gotLate != wantLate || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%d partitions, %d workers, %s\ngot (late_dropped %d):\n%s\nwant (late_dropped %d):\n%s", parts, workers, &fw,
				gotLate, strings.Join(got, "\n"), wantLate, strings.Join(want, "\n"))
		}
	})
}
