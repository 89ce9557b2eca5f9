// Package producer sends records to a topic the way a Kafka producer
// does: it routes each record to a partition (an explicit one, murmur2 of
// the key, or sticky round-robin for null keys; package partition), packs
// records into per-partition batches, and appends full batches while it
// keeps accepting records, one appender goroutine per partition, so that
// the partitions' writes and fsyncs overlap.
//
// Partitions added to the topic meanwhile (topic alter --partitions, a
// Kafka client's CreatePartitions, from any process) are taken up within
// about a second of records (RefreshInterval), as a Kafka producer takes
// them up at its next metadata refresh: keys hash over the new count from
// then on, and null-key batches go round all the partitions.
//
// A Producer cannot be used from concurrent goroutines (it is one
// producer); Add copies what it is given.
package producer

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
)

// Options configure a Producer. Zero fields take their defaults.
type Options struct {
	// Acks is the durability each batch waits for. Default AcksNone (the
	// zero value); set it.
	Acks log.Acks
	// Partition, if >= 0, sends every record to that partition. Set it to
	// -1 to route by key.
	Partition int32
	// BatchRecords and BatchBytes close a batch, like Kafka's batch.size.
	// Defaults DefaultBatchRecords and DefaultBatchBytes.
	BatchRecords int
	BatchBytes   int
}

// The default batch bounds: a batch of records without a key goes to one
// partition, and the next batch to the next partition.
const (
	DefaultBatchRecords = 1024
	DefaultBatchBytes   = 1 << 20
)

// Stats count what a Producer has appended: records in batches whose
// append succeeded, not those added since or lost to an append error.
// With log.AcksNone an append succeeds once queued; Lost counts the
// records of its partitions that a failed write lost after that.
type Stats struct {
	Records      int64   `json:"records"`
	Bytes        int64   `json:"bytes"` // keys, values and headers
	NoKey        int64   `json:"no_key"`
	Lost         int64   `json:"lost,omitempty"`
	PerPartition []int64 `json:"-"`
}

// RefreshInterval is how often, at most, a Producer looks for partitions
// added to its topic: on a Flush, or once records have been added since
// (every refreshRecords records, so that Add reads the clock rarely).
const RefreshInterval = time.Second

const refreshRecords = 1024

// Producer sends records to one topic.
type Producer struct {
	topic  *log.Topic
	opts   Options
	sticky *partition.Sticky
	parts  []*appender
	err    atomic.Pointer[error] // the first append error

	added       int       // records added since the last look at the partitions
	nextRefresh time.Time // when to look again
}

// batch is records plus the arena their bytes live in.
type batch struct {
	recs  []log.Record
	arena []byte
}

// copyIn appends v to the arena and returns its copy there, not nil
// even when v is empty (an empty key is not a null one).
func (b *batch) copyIn(v []byte) []byte {
	if b.arena == nil {
		b.arena = []byte{}
	}
	start := len(b.arena)
	b.arena = append(b.arena, v...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// appender appends one partition's batches in its own goroutine.
type appender struct {
	p    *log.Partition
	cur  *batch
	full chan *batch // to the goroutine
	free chan *batch // back from it
	done sync.WaitGroup

	// What its appends stored, counted by the goroutine.
	records, bytes, noKey atomic.Int64
	lostBefore            int64 // the partition's Lost when the appender began
}

// New returns a Producer for topic t.
func New(t *log.Topic, opts Options) (*Producer, error) {
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = DefaultBatchRecords
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	n := t.Partitions()
	if opts.Partition >= n {
		return nil, errors.New("partition out of range: topic " + t.Name() + " has fewer partitions")
	}
	return &Producer{
		topic:       t,
		opts:        opts,
		sticky:      partition.NewSticky(n),
		parts:       make([]*appender, n),
		nextRefresh: time.Now().Add(RefreshInterval),
	}, nil
}

// refresh takes up partitions added to the topic, at most once per
// RefreshInterval. A topic deleted meanwhile is left to the appends to
// report.
func (pr *Producer) refresh() {
	pr.added = 0
	now := time.Now()
	if now.Before(pr.nextRefresh) {
		return
	}
	pr.nextRefresh = now.Add(RefreshInterval)
	if pr.topic.Reload() != nil {
		return
	}
	if n := pr.topic.Partitions(); int(n) > len(pr.parts) {
		pr.parts = append(pr.parts, make([]*appender, int(n)-len(pr.parts))...)
		pr.sticky = partition.NewStickyAt(n, uint32(pr.sticky.Partition()))
	}
}

func (pr *Producer) appender(id int32) (*appender, error) {
	if a := pr.parts[id]; a != nil {
		return a, nil
	}
	p, err := pr.topic.Partition(id)
	if err != nil {
		return nil, err
	}
	// Two batches: one filling, one being appended.
	a := &appender{p: p, cur: &batch{}, full: make(chan *batch, 1), free: make(chan *batch, 2),
		lostBefore: p.Stats().Lost}
	a.free <- &batch{}
	a.done.Add(1)
	go func() {
		defer a.done.Done()
		for b := range a.full {
			if _, err := a.p.Append(b.recs, pr.opts.Acks); err != nil {
				pr.fail(err)
			} else {
				a.stored(b)
			}
			b.recs, b.arena = b.recs[:0], b.arena[:0]
			a.free <- b
		}
	}()
	pr.parts[id] = a
	return a, nil
}

// stored counts batch b, appended.
func (a *appender) stored(b *batch) {
	noKey := 0
	for i := range b.recs {
		if b.recs[i].Key == nil {
			noKey++
		}
	}
	a.records.Add(int64(len(b.recs)))
	a.bytes.Add(int64(len(b.arena)))
	a.noKey.Add(int64(noKey))
}

func (pr *Producer) fail(err error) { pr.err.CompareAndSwap(nil, &err) }

// Err returns the first error an append met, if any.
func (pr *Producer) Err() error {
	if e := pr.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Add sends one record. key may be nil (a null key); tsMs 0 means now.
// It returns the first error any append met.
func (pr *Producer) Add(key, value []byte, tsMs int64) error {
	return pr.AddHeaders(key, value, nil, tsMs)
}

// AddHeaders is Add with the record's headers (copied too).
func (pr *Producer) AddHeaders(key, value []byte, headers []log.Header, tsMs int64) error {
	if err := pr.Err(); err != nil {
		return err
	}
	if pr.added++; pr.added >= refreshRecords {
		pr.refresh()
	}
	id := pr.opts.Partition
	switch {
	case id >= 0:
	case key != nil:
		id = partition.ForKey(key, int32(len(pr.parts)))
	default:
		id = pr.sticky.Partition()
	}
	a, err := pr.appender(id)
	if err != nil {
		return err
	}
	b := a.cur
	// Each slice is taken right after its append: an append may move the
	// arena, and the slices keep what they point to.
	r := log.Record{TimestampMs: tsMs}
	if key != nil {
		r.Key = b.copyIn(key)
	}
	r.Value = b.copyIn(value)
	if len(headers) > 0 {
		r.Headers = make([]log.Header, len(headers))
		for i, h := range headers {
			r.Headers[i].Key = b.copyIn(h.Key)
			if h.Value != nil {
				r.Headers[i].Value = b.copyIn(h.Value)
			}
		}
	}
	b.recs = append(b.recs, r)
	if len(b.recs) >= pr.opts.BatchRecords || len(b.arena) >= pr.opts.BatchBytes {
		pr.send(a)
		if id == pr.sticky.Partition() {
			pr.sticky.BatchDone() // Kafka's sticky partitioner moves when its batch is sent
		}
	}
	return pr.Err()
}

// send hands a's filling batch to its goroutine and takes a free one.
// The arena may have been reallocated while filling: the records point
// into whichever array was current when they were added, and both stay
// alive until the append is done.
func (pr *Producer) send(a *appender) {
	if len(a.cur.recs) == 0 {
		return
	}
	a.full <- a.cur
	a.cur = <-a.free
}

// Flush sends every partly filled batch and waits until every batch sent
// so far is appended (with the producer's acks).
func (pr *Producer) Flush() error {
	for _, a := range pr.parts {
		if a != nil {
			pr.send(a)
		}
	}
	for _, a := range pr.parts {
		if a != nil {
			// Of a's two batches one is a.cur; once the other is back in
			// free, nothing is in flight.
			a.free <- <-a.free
		}
	}
	pr.sticky.BatchDone()
	pr.refresh()
	return pr.Err()
}

// Close flushes and stops the appenders. With log.AcksNone it also writes
// what its partitions hold queued, and returns an error if a write lost
// records appended since the Producer began (Stats.Lost): Kafka's acks=0
// producer is never told, but a process that owns the log can be.
func (pr *Producer) Close() error {
	err := pr.Flush()
	for _, a := range pr.parts {
		if a != nil {
			close(a.full)
			a.done.Wait()
		}
	}
	if pr.opts.Acks != log.AcksNone {
		return err
	}
	var lostErr error
	for _, a := range pr.parts {
		if a == nil {
			continue
		}
		a.p.Flush() // a failure counts in Lost
		if a.p.Stats().Lost > a.lostBefore && lostErr == nil {
			lostErr = a.p.LostError()
		}
	}
	if lost := pr.Stats().Lost; lost > 0 {
		return fmt.Errorf("%d records appended with acks=0 to %s were lost: %w", lost, pr.topic.Name(), lostErr)
	}
	return err
}

// Stats returns what was appended so far: after Flush or Close, every
// record the Producer stored, and only those; when an append failed, the
// records of that batch and of those not sent are not counted.
func (pr *Producer) Stats() Stats {
	st := Stats{PerPartition: make([]int64, len(pr.parts))}
	for id, a := range pr.parts {
		if a == nil {
			continue
		}
		n := a.records.Load()
		st.PerPartition[id] = n
		st.Records += n
		st.Bytes += a.bytes.Load()
		st.NoKey += a.noKey.Load()
		st.Lost += a.p.Stats().Lost - a.lostBefore
	}
	return st
}
