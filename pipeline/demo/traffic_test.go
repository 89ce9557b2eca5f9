package demo

import (
	"context"
	"testing"
	"time"

	"github.com/fastflow/fastflow/log"
)

// Traffic stops when its context ends, whatever the rate: at 10^12
// events/s, one tick owes it billions of events, and it went on producing
// them (until the log closed under it: "demo traffic: log closed").
func TestTrafficStopsAtAnyRate(t *testing.T) {
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tp, err := l.CreateTopic("events", log.TopicConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Traffic(ctx, tp, NewGenerator(time.Unix(1795341600, 0), 1), 1e12, 20) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Traffic at 10^12 events/s still runs 30 s after its context ended")
	}
	p, _ := tp.Partition(0)
	q, _ := tp.Partition(1)
	if p.HighWatermark()+q.HighWatermark() == 0 {
		t.Fatal("no event produced")
	}
}
