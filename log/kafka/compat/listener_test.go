package compat

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/kafka"
)

// startListener opens a log in a temporary directory and serves the Kafka
// protocol over it on 127.0.0.1 until the test ends.
func startListener(t *testing.T) (string, *log.Log) {
	t.Helper()
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- kafka.New(l, kafka.Options{}).Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the listener did not stop")
		}
		l.Close()
	})
	return ln.Addr().String(), l
}

// written is a record as a client reports having written it.
type written struct {
	partition int32
	offset    int64
	key       string
	value     string
	header    string // the value of header "n", if any
}

// checkInLog reads each record back from the log at the partition and
// offset the client was told, and checks it is the one the client wrote;
// and that the topic holds nothing else.
func checkInLog(t *testing.T, l *log.Log, topic string, recs []written) {
	t.Helper()
	tp, err := l.Topic(topic)
	if err != nil {
		t.Fatal(err)
	}
	byPos := map[[2]int64]written{}
	for _, w := range recs {
		byPos[[2]int64{int64(w.partition), w.offset}] = w
	}
	total := 0
	for id := range tp.Partitions() {
		p, err := tp.Partition(id)
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.NewReader(p.LogStartOffset())
		if err != nil {
			t.Fatal(err)
		}
		for r.Offset() < p.HighWatermark() {
			got, err := r.Read(nil)
			if err != nil || len(got) == 0 {
				t.Fatalf("%s/%d: read at %d: %v", topic, id, r.Offset(), err)
			}
			for _, g := range got {
				w, ok := byPos[[2]int64{int64(id), g.Offset}]
				if !ok {
					t.Fatalf("%s/%d offset %d: %q=%q, which the client did not write there", topic, id, g.Offset, g.Key, g.Value)
				}
				var header []byte
				for _, h := range g.Headers {
					if string(h.Key) == "n" {
						header = h.Value
					}
				}
				if string(g.Key) != w.key || string(g.Value) != w.value || !bytes.Equal(header, []byte(w.header)) {
					t.Fatalf("%s/%d offset %d: %q=%q (header %q), the client wrote %q=%q (header %q)",
						topic, id, g.Offset, g.Key, g.Value, header, w.key, w.value, w.header)
				}
				total++
			}
		}
		r.Close()
	}
	if total != len(recs) {
		t.Fatalf("%s holds %d records, the client wrote %d", topic, total, len(recs))
	}
}
