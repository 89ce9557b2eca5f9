package pipeline

import (
	"bytes"
	"fmt"
	"unsafe"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
	"github.com/fastflow/fastflow/partition"
)

// localSink is a topic of the data directory that a pipeline writes: a
// topic sink, its dead-letter topic or its late topic.
//
// A following run checkpoints after whole rounds, so a run killed between
// two checkpoints has written results that its restart, resuming from the
// older one, computes and writes again. Flink avoids that with sinks that
// commit on checkpoints (two-phase commit) and Kafka Streams with
// transactions. Here the restart reads what the killed run wrote after
// its checkpoint (the checkpoint holds each output partition's end) and
// does not write those records again: per partition, the records it would
// write that equal, in order, the ones already there are skipped. The same
// log and checkpoint give the same results, so that is every record the
// killed run wrote. Where they differ — a partition that a following run
// judged idle at another moment, another writer in the same topic — the
// restart writes from the first record that differs on: a record is
// skipped only where an identical one is already in the topic, so nothing
// is lost; at worst some are there twice, as without this.
type localSink struct {
	t      *log.Topic
	pr     *producer.Producer
	replay *replay // nil: nothing to skip
}

// add writes a record, unless it is the next the stopped run wrote.
func (s *localSink) add(key, value []byte, tsMs int64) error {
	if s.replay != nil && s.replay.skip(key, value) {
		if s.replay.left == 0 {
			s.replay = nil
		}
		return nil
	}
	return s.pr.Add(key, value, tsMs)
}

// outputSnap is a local output topic's partition ends when a checkpoint
// was taken, its records up to them fsynced.
type outputSnap struct {
	Topic string
	ID    string // the topic's ID: a topic deleted and created again is another
	Ends  []int64
}

// ends fsyncs the topic's partitions and returns their ends (each read
// before its fsync, which covers it). The sink's producer has been
// flushed.
func (s *localSink) ends() (outputSnap, error) {
	o := outputSnap{Topic: s.t.Name(), ID: s.t.ID(), Ends: make([]int64, s.t.Partitions())}
	for i := range o.Ends {
		p, err := s.t.Partition(int32(i))
		if err != nil {
			return o, err
		}
		o.Ends[i] = p.HighWatermark()
		if err := p.Sync(); err != nil {
			return o, fmt.Errorf("fsync of %s/%d: %w", s.t.Name(), i, err)
		}
	}
	return o, nil
}

// resume reads what was written to the topic after the checkpoint that
// o is from, to be skipped. A partition whose records after o's end are
// no longer all there (retention, compaction) is left out.
func (s *localSink) resume(o outputSnap) error {
	if o.Topic != s.t.Name() || o.ID != s.t.ID() {
		return nil
	}
	r := &replay{parts: make([][]pending, s.t.Partitions())}
	budget := replayBudget
	for i, end := range o.Ends {
		if i >= len(r.parts) {
			break
		}
		p, err := s.t.Partition(int32(i))
		if err != nil {
			return err
		}
		if end < p.LogStartOffset() || end >= p.HighWatermark() {
			continue
		}
		rd, err := p.NewReader(end)
		if err != nil {
			return err
		}
		q, err := readPending(rd, end, p.HighWatermark(), &budget)
		rd.Close()
		if err != nil {
			return fmt.Errorf("reading %s/%d after the checkpoint: %w", s.t.Name(), i, err)
		}
		r.parts[i] = q
		r.left += len(q)
	}
	if r.left > 0 {
		s.replay = r
	}
	return nil
}

// replayBudget bounds the bytes a sink holds of what a stopped run wrote
// after its checkpoint (an interval's results: usually far less). Past
// it, only the records read are skipped, and the rest written again.
var replayBudget = 64 << 20

// readPending reads the records from end to hw, or none if some are
// missing (compacted away): then they are not what the stopped run wrote,
// in order. It stops early when the records read use up budget.
func readPending(rd *log.Reader, end, hw int64, budget *int) ([]pending, error) {
	var q []pending
	var recs []log.Record
	var err error
	for rd.Offset() < hw {
		if recs, err = rd.Read(recs[:0]); err != nil || len(recs) == 0 {
			return nil, err
		}
		for _, rec := range recs {
			if rec.Offset >= hw {
				return q, nil
			}
			if rec.Offset != end+int64(len(q)) {
				return nil, nil
			}
			var ok bool
			if q, ok = appendPending(q, rec.Key, rec.Value, budget); !ok {
				return q, nil
			}
		}
	}
	return q, nil
}

// appendPending appends a copy of a record to q, if budget (bytes) has
// room for it.
func appendPending(q []pending, key, value []byte, budget *int) ([]pending, bool) {
	n := len(key) + len(value) + int(unsafe.Sizeof(pending{}))
	if n > *budget {
		return q, false
	}
	*budget -= n
	return append(q, pending{key: bytes.Clone(key), value: bytes.Clone(value), null: key == nil}), true
}

// replay is what a stopped run wrote to a topic after its checkpoint, by
// partition, in offset order: what a restart does not write again.
type replay struct {
	parts [][]pending
	left  int
}

type pending struct {
	key, value []byte
	null       bool // a null key
}

func (p *pending) is(key, value []byte) bool {
	return p.null == (key == nil) && bytes.Equal(p.key, key) && bytes.Equal(p.value, value)
}

// skip reports whether key and value are the next record the stopped run
// wrote to their partition, consuming it. A keyed record goes to its
// key's partition (the producer's murmur2), so a record that differs from
// what that partition holds next ends the partition's replay. A record
// without a key goes to the partition a sticky partitioner picked: it is
// looked for at the head of every partition, and one found nowhere while
// some are left ends the topic's replay.
func (r *replay) skip(key, value []byte) bool {
	n := int32(len(r.parts))
	if key != nil || n == 1 {
		p := int32(0)
		if n > 1 {
			p = partition.ForKey(key, n)
		}
		q := r.parts[p]
		if len(q) == 0 {
			return false
		}
		if q[0].is(key, value) {
			r.parts[p] = q[1:]
			r.left--
			return true
		}
		r.left -= len(q)
		r.parts[p] = nil
		return false
	}
	for p, q := range r.parts {
		if len(q) > 0 && q[0].is(key, value) {
			r.parts[p] = q[1:]
			r.left--
			return true
		}
	}
	clear(r.parts)
	r.left = 0
	return false
}
