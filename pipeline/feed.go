package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline/internal/ring"
)

// batchRecords is how many records a worker reads from a local partition
// at once, and a Kafka poller puts in one batch.
const batchRecords = 1024

// batch is records of one partition that a Kafka poller received, with
// their bytes copied into an arena the batch owns, so that they outlive
// the client's buffers.
type batch struct {
	recs  []log.Record
	arena []byte
	end   int64 // the position after the batch: past its last record, and past gaps and transaction markers
}

func (b *batch) reset() {
	b.recs, b.arena, b.end = b.recs[:0], b.arena[:0], 0
}

// add copies r into the batch.
func (b *batch) add(r *log.Record) {
	n := len(b.arena)
	b.arena = append(b.arena, r.Key...)
	b.arena = append(b.arena, r.Value...)
	c := log.Record{Partition: r.Partition, Offset: r.Offset, TimestampMs: r.TimestampMs}
	if r.Key != nil {
		c.Key = b.arena[n : n+len(r.Key) : n+len(r.Key)]
	}
	if r.Value != nil {
		c.Value = b.arena[n+len(r.Key) : len(b.arena) : len(b.arena)]
	}
	b.recs = append(b.recs, c)
}

// feed is one partition's source for its worker. A local partition's
// worker reads it itself through r, in place: the records are processed
// in the reader's buffer, with no copy and no handoff. A Kafka partition's
// records come from the poller in batches, full ones one way and empty
// ones back, each over an SPSC ring.
type feed struct {
	id int32
	// p and r read a local partition; both are nil for a Kafka source,
	// whose poller fills the feed and keeps hw.
	p     *log.Partition
	r     *log.Reader
	hw    atomic.Int64 // Kafka: the offset after the last record delivered
	lagHW atomic.Int64 // Kafka: the partition's high watermark, for lag
	end   int64        // until-end: stop here; -1 follows the log
	full  *ring.Ring[*batch]
	free  *ring.Ring[*batch]
	// fetched is the offset after the last record a Kafka poller
	// delivered; the worker reads it to tell "caught up" from "batch in
	// flight". For a local feed it is where reading started.
	fetched atomic.Int64
}

const feedDepth = 4 // batches in flight per partition

func newFeed(p *log.Partition, from, end int64) (*feed, error) {
	// pread, not NewMappedReader: on a VM where first touching a mapped
	// page is dear, mapped reads cost 2.7x as much, and a mapping gained a
	// pipeline 7% at best (README, "How the log works"). The worker
	// processes a read's records before its next read.
	r, err := p.NewReader(from)
	if err != nil {
		return nil, err
	}
	f := &feed{id: p.ID(), end: end, p: p, r: r}
	f.fetched.Store(from)
	return f, nil
}

// newKafkaFeed is a feed without a reader: a Kafka source's poller fills
// it, and it follows (a Kafka source has no end).
func newKafkaFeed(id int32, from int64) *feed {
	f := &feed{id: id, end: -1, full: ring.New[*batch](feedDepth), free: ring.New[*batch](feedDepth)}
	for i := 0; i < feedDepth; i++ {
		f.free.Push(&batch{recs: make([]log.Record, 0, batchRecords), arena: make([]byte, 0, 256<<10)})
	}
	f.fetched.Store(from)
	return f
}

// highWater is where the feed's worker is caught up: the local
// partition's high watermark, or what a Kafka poller delivered.
func (f *feed) highWater() int64 {
	if f.p != nil {
		return f.p.HighWatermark()
	}
	return f.hw.Load()
}

// lagHighWater is the partition's high watermark as last known, for lag.
func (f *feed) lagHighWater() int64 {
	if f.p != nil {
		return f.p.HighWatermark()
	}
	return f.lagHW.Load()
}

// waker wakes a worker when there may be records for it: on an append to
// one of its local partitions (Partition.Listen, inotify for appends by
// another process) it signals the worker and, through peers, every other
// worker. A Kafka source's poller signals delivered itself.
type waker struct {
	feeds     []*feed
	wake      chan struct{} // appends to the worker's partitions
	delivered chan struct{} // to its worker: records may be waiting
	// peers are the other workers' delivered channels: a round is complete
	// only when every worker sent it, so idle workers must answer as soon
	// as one has data, not at their idle timeout.
	peers   []chan struct{}
	stops   []func()
	logger  *slog.Logger
	skipped atomic.Int64 // records retention deleted before they were read
}

func newWaker(feeds []*feed, logger *slog.Logger) (*waker, error) {
	f := &waker{feeds: feeds, wake: make(chan struct{}, 1), delivered: make(chan struct{}, 1), logger: logger}
	for _, fd := range feeds {
		if fd.end < 0 && fd.p != nil {
			stop, err := fd.p.Listen(f.wake)
			if err != nil {
				f.close()
				return nil, err
			}
			f.stops = append(f.stops, stop)
		}
	}
	return f, nil
}

// close stops listening to the partitions and closes the readers.
func (f *waker) close() {
	for _, stop := range f.stops {
		stop()
	}
	for _, fd := range f.feeds {
		if fd.r != nil {
			fd.r.Close()
		}
	}
}

// run turns appends into wake-ups until ctx is done; it returns at once
// if no partition is followed.
func (f *waker) run(ctx context.Context) error {
	if len(f.stops) == 0 {
		if len(f.feeds) > 0 && f.feeds[0].p == nil {
			// A Kafka source: run until the engine stops, like the others.
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	for {
		select {
		case <-f.wake:
			signal(f.delivered)
			for _, p := range f.peers {
				signal(p)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read reads the next records of a local feed into dst (Reader.Read),
// up to the feed's end. A following feed whose records retention deleted
// before they were read goes on from the log start, as Kafka's
// auto.offset.reset=earliest does, and the loss is counted and logged.
func (f *waker) read(fd *feed, dst []log.Record) ([]log.Record, error) {
	for {
		want := int64(cap(dst))
		if fd.end >= 0 {
			want = min(want, fd.end-fd.r.Offset())
			if want <= 0 {
				return dst[:0], nil
			}
		}
		recs, err := fd.r.Read(dst[:0:want])
		if errors.Is(err, log.ErrOffsetOutOfRange) && fd.end < 0 {
			from := fd.r.Offset()
			if err := fd.r.SeekOffset(fd.p.LogStartOffset()); err != nil {
				return dst[:0], err
			}
			f.logger.Warn("records deleted by retention before they were processed",
				"topic", fd.p.Topic(), "partition", fd.p.ID(), "from", from, "to", fd.r.Offset())
			f.skipped.Add(fd.r.Offset() - from)
			continue
		}
		return recs, err
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
