package demo

import (
	"context"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
)

// maxBehind bounds the events Traffic owes at once.
const maxBehind = 1 << 17

// Traffic produces rate events per second (wall time) into t, keyed by
// service, until ctx is done. Event time starts at g.Start and runs speed
// times faster than the wall clock, so that a demo shows many windows in a
// minute; events are jittered by ±2s, within the pipeline's
// max_out_of_order. A rate the machine cannot keep up with is produced as
// fast as it can: at most maxBehind events are owed at once (the rest are
// skipped), and ctx is checked between batches of them, so that Traffic
// stops when told (at 10^12 events/s it went on until the log closed
// under it).
func Traffic(ctx context.Context, t *log.Topic, g *Generator, rate, speed float64) error {
	pr, err := producer.New(t, producer.Options{Acks: log.AcksLeader, Partition: -1, BatchRecords: 256})
	if err != nil {
		return err
	}
	defer pr.Close()
	const tick = 20 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	begin := time.Now()
	var sent float64
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			elapsed := now.Sub(begin)
			due := rate * elapsed.Seconds()
			eventNow := g.Start.Add(time.Duration(float64(elapsed) * speed))
			sent = max(sent, due-maxBehind)
			for ; sent < due; sent++ {
				if int64(sent)%1024 == 0 && ctx.Err() != nil {
					return nil
				}
				var svc string
				buf, svc = g.Event(buf[:0], eventNow, 2*time.Second)
				if err := pr.Add([]byte(svc), buf, 0); err != nil {
					return err
				}
			}
			if err := pr.Flush(); err != nil {
				return err
			}
		}
	}
}
