package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline/internal/ring"
)

// batchRecords is how many records a fetcher puts in one batch.
const batchRecords = 1024

// batch is records read from one partition, with their bytes copied into
// an arena the batch owns, so that they outlive the log reader's buffer.
type batch struct {
	recs  []log.Record
	arena []byte
	eof   bool  // the partition has nothing more to give (until-end)
	end   int64 // the position after the batch: past its last record, and past gaps and transaction markers
}

func (b *batch) reset() {
	b.recs, b.arena, b.eof, b.end = b.recs[:0], b.arena[:0], false, 0
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

// feed is one partition's path from the fetcher to its worker: full
// batches one way, empty ones back, each over an SPSC ring.
type feed struct {
	id int32
	// p and r read a local partition; both are nil for a Kafka source,
	// whose poller fills the feed and keeps hw.
	p     *log.Partition
	r     *log.Reader
	hw    atomic.Int64 // Kafka: the offset after the last record delivered
	lagHW atomic.Int64 // Kafka: the partition's high watermark, for lag
	end   int64        // until-end: stop here; -1 follows the log
	// direct: the worker reads r itself and the fetcher leaves the feed
	// alone. Until-end local feeds are direct: no copy into batches and no
	// handoff, where following needs the fetcher's waiting and waking.
	direct bool
	full   *ring.Ring[*batch]
	free   *ring.Ring[*batch]
	done   bool // fetcher side: EOF sent
	// next is the offset after the last record fetched; the worker reads it
	// to tell "caught up" from "batch in flight" when following.
	fetched atomic.Int64
}

const feedDepth = 4 // batches in flight per partition

func newFeed(p *log.Partition, from, end int64) (*feed, error) {
	r, err := p.NewReader(from)
	if err != nil {
		return nil, err
	}
	if end >= 0 {
		// Direct: no batches; the worker reads into its own slice.
		f := &feed{id: p.ID(), end: end, p: p, r: r, direct: true}
		f.fetched.Store(from)
		return f, nil
	}
	f := newEmptyFeed(p.ID(), from, end)
	f.p, f.r = p, r
	return f, nil
}

// newEmptyFeed is a feed without a reader: a Kafka source's poller fills it.
func newEmptyFeed(id int32, from, end int64) *feed {
	f := &feed{id: id, end: end, full: ring.New[*batch](feedDepth), free: ring.New[*batch](feedDepth)}
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

// fetcher reads a worker's partitions into their feeds.
type fetcher struct {
	feeds     []*feed
	wake      chan struct{} // appends, and batches coming back
	delivered chan struct{} // to its worker: a batch is waiting
	// peers are the other workers' delivered channels: a round is complete
	// only when every worker sent it, so idle workers must answer as soon
	// as one has data, not at their idle timeout.
	peers   []chan struct{}
	read    []log.Record
	stops   []func()
	logger  *slog.Logger
	skipped atomic.Int64 // records retention deleted before they were read
}

func newFetcher(feeds []*feed, logger *slog.Logger) (*fetcher, error) {
	f := &fetcher{feeds: feeds, wake: make(chan struct{}, 1), delivered: make(chan struct{}, 1),
		read: make([]log.Record, 0, batchRecords), logger: logger}
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
func (f *fetcher) close() {
	for _, stop := range f.stops {
		stop()
	}
	for _, fd := range f.feeds {
		if fd.r != nil {
			fd.r.Close()
		}
	}
}

// run fills the feeds until ctx is done or, until-end, every feed is
// done.
func (f *fetcher) run(ctx context.Context) error {
	if len(f.feeds) > 0 && f.feeds[0].p == nil {
		// A Kafka source: its poller fills every worker's feeds.
		<-ctx.Done()
		return ctx.Err()
	}
	for {
		progress, open := false, false
		for _, fd := range f.feeds {
			if fd.done || fd.direct {
				continue
			}
			open = true
			b, ok := fd.free.Pop()
			if !ok {
				continue
			}
			got, err := f.fill(fd, b)
			if err != nil {
				return err
			}
			if got || b.eof {
				fd.full.Push(b) // cannot fail: feedDepth batches exist
				progress = true
				signal(f.delivered)
				for _, p := range f.peers {
					signal(p)
				}
			} else {
				fd.free.Push(b)
			}
		}
		if !open {
			return nil
		}
		if progress {
			continue
		}
		// Nothing to read and no batch to fill: wait for an append, a batch
		// coming back, or a periodic look (a returned batch signals wake
		// only through the worker's notify).
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-f.wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// fill reads what is available into b; it reports whether b got records.
func (f *fetcher) fill(fd *feed, b *batch) (bool, error) {
	b.reset()
	for len(b.recs) < batchRecords {
		want := batchRecords - len(b.recs)
		if fd.end >= 0 {
			if left := fd.end - fd.r.Offset(); left < int64(want) {
				want = int(left)
			}
		}
		if want == 0 {
			break
		}
		recs, err := fd.r.Read(f.read[:0:want])
		if errors.Is(err, log.ErrOffsetOutOfRange) && fd.end < 0 {
			// Retention deleted records before they were read: go on from
			// the log start, as Kafka's auto.offset.reset=earliest does.
			from := fd.r.Offset()
			if err := fd.r.SeekOffset(fd.p.LogStartOffset()); err != nil {
				return false, err
			}
			f.logger.Warn("records deleted by retention before they were processed",
				"topic", fd.p.Topic(), "partition", fd.p.ID(), "from", from, "to", fd.r.Offset())
			f.skipped.Add(fd.r.Offset() - from)
			continue
		}
		if err != nil {
			return false, err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			b.add(&recs[i])
		}
	}
	fd.fetched.Store(fd.r.Offset())
	b.end = fd.r.Offset()
	if fd.end >= 0 && fd.r.Offset() >= fd.end {
		b.eof, fd.done = true, true
	}
	return len(b.recs) > 0, nil
}

// notify wakes the fetcher after a batch came back.
func (f *fetcher) notify() { signal(f.wake) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
