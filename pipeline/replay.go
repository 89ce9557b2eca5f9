package pipeline

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

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
// does not write again a record identical to one of those (same key, same
// value: a window's line holds its key, bounds, revision and metrics), each
// of those matching one record at most. Over a log read from a checkpoint
// the restart computes the killed run's lines again, so that is all of
// them. Where records came in while the killed run read, its rounds were
// cut elsewhere: lines closed in one round there may come in two here, in
// another order, and a late record that met an emitted window there may
// meet it before its emission here (one line, not two revisions); the
// lines that are the same are skipped all the same, and the others are
// written, as are the killed run's in the topic already. A record is
// skipped only where an identical one is in the topic, so nothing is lost;
// at worst some are there twice, as without this.
//
// A checkpoint the restart writes while it has not yet met all of them
// carries those it has not met: the restart's state is behind them until
// it computes them again, and a second crash must find them in what its
// restart skips, though they are before the ends that checkpoint records
// (and the records the restart met or wrote before it must not be: it is
// past them, and a line that comes again, an alert firing a second time
// with the same value, must be written). It has met all it will, at the
// latest, once it has read what the source held when it started (the
// killed run read no more): then what was not met is let go (retire).
//
// With a Kafka source the partitions move between instances, each from
// its own checkpoint (kafkaRun): every record a pipeline writes then
// carries the source partition its key's events come from (a header,
// headerSource), and the partition's next owner skips, of what was
// written after that partition's checkpoint, the records from that
// partition: those its previous owner wrote and it computes again, and
// not those of the partitions other instances go on with.
type localSink struct {
	t  *log.Topic
	pr *producer.Producer
	replaying
}

func (s *localSink) outputName() string { return s.t.Name() }

// owns reports whether o is about this topic: its name and ID (a topic of
// another data directory, or deleted and created again, is another).
func (s *localSink) owns(o outputSnap) bool { return o.Topic == s.outputName() && o.ID == s.t.ID() }

// add writes a record from source partition src (noPartition: untold),
// unless the stopped run wrote it after the checkpoint.
func (s *localSink) add(key, value []byte, src int32, tsMs int64) error {
	if s.skip(src, key, value) {
		return nil
	}
	if src == noPartition {
		return s.pr.Add(key, value, tsMs)
	}
	return s.pr.AddHeaders(key, value, []log.Header{{Key: []byte(headerSource), Value: strconv.AppendInt(nil, int64(src), 10)}}, tsMs)
}

// headerSource is the header telling, in a record a pipeline with a Kafka
// source writes, the source partition of the events it comes from.
const headerSource = "fastflow-source-partition"

// sourceOf reads headerSource's value, or noPartition.
func sourceOf(value []byte) int32 {
	n, err := strconv.ParseInt(string(value), 10, 32)
	if err != nil || n < 0 {
		return noPartition
	}
	return int32(n)
}

// replaying is a sink's replay after a restart.
type replaying struct {
	replay *replay // nil: nothing to skip
}

// skip reports whether the record is one the stopped run wrote, not met
// yet (replay.skip), and retires the replay once all are met.
func (rp *replaying) skip(src int32, key, value []byte) bool {
	if rp.replay == nil || !rp.replay.skip(src, key, value) {
		return false
	}
	if rp.replay.left == 0 {
		rp.retire()
	}
	return true
}

// start begins a replay of r, if it holds anything.
func (rp *replaying) start(r *replay) {
	r.count()
	if r.left > 0 {
		rp.replay = r
	}
}

// unmet is the number of records of the replay not met yet.
func (rp *replaying) unmet() int {
	if rp.replay == nil {
		return 0
	}
	return rp.replay.left
}

// retire lets go of what is not met.
func (rp *replaying) retire() { rp.replay = nil }

// checkpointed adds to a checkpoint's ends for the sink the records it
// has not met yet.
func (rp *replaying) checkpointed(o outputSnap) outputSnap {
	if rp.replay == nil {
		return o
	}
	for p, q := range rp.replay.parts {
		for id, n := range q {
			o.Unmet = append(o.Unmet, unmetSnap{Part: int32(p), ID: []byte(id), N: n})
		}
	}
	return o
}

// forSource is o with only the unmet records of source partition src:
// what the checkpoint of src carries (kafkaRun.save).
func (o outputSnap) forSource(src int32) outputSnap {
	c := o
	c.Unmet = nil
	for _, u := range o.Unmet {
		if sourceOfID(u.ID) == src {
			c.Unmet = append(c.Unmet, u)
		}
	}
	return c
}

// sinceCheckpoints are one sink's outputs in the checkpoints a run
// resumes from, by source partition: noPartition for a local source's
// one checkpoint, a partition of a Kafka source for each checkpoint of
// one. What the sink holds after them is read once, from the lowest of
// their ends; each record counts for the checkpoint of the source
// partition it tells (headerSource), if it was written after that one's
// end.
type sinceCheckpoints map[int32]outputSnap

// start is where partition i is read from: the lowest end; ok is false
// when no checkpoint has one.
func (c sinceCheckpoints) start(i int) (start int64, ok bool) {
	for _, o := range c {
		if i < len(o.Ends) && (!ok || o.Ends[i] < start) {
			start, ok = o.Ends[i], true
		}
	}
	return start, ok
}

// keeps reports whether a record of partition i at offset, from source
// partition src, was written after its checkpoint.
func (c sinceCheckpoints) keeps(i int, offset int64, src int32) bool {
	o, ok := c[src]
	return ok && i < len(o.Ends) && offset >= o.Ends[i]
}

// replay is the replay of the checkpoints' unmet records, in a topic of n
// partitions, within budget; the sink's replayAfter adds what it holds
// after them.
func (c sinceCheckpoints) replay(n int, budget *int) *replay {
	r := &replay{parts: make([]pending, n)}
	for _, o := range c {
		for _, u := range o.Unmet {
			if int(u.Part) >= n {
				continue
			}
			if r.parts[u.Part] == nil {
				r.parts[u.Part] = pending{}
			}
			for range u.N {
				if !r.parts[u.Part].addID(u.ID, budget) {
					break
				}
			}
		}
	}
	return r
}

// outputSnap is an output topic's partition ends when a checkpoint was
// taken, its records up to them on disk: a local topic's fsynced, a Kafka
// sink's acknowledged by all in-sync replicas.
type outputSnap struct {
	Topic string // a local topic's name, or a Kafka sink's outputName
	ID    string // a local topic's ID: a topic deleted and created again is another
	Ends  []int64
	// Unmet are the records a replay had not met when the checkpoint was
	// taken (localSink): written before Ends, to be skipped all the same.
	Unmet []unmetSnap
}

type unmetSnap struct {
	Part int32
	ID   []byte // recordID
	N    int
}

// ends fsyncs the topic's partitions and returns their ends (each read
// before its fsync, which covers it), and, while it replays, what it has
// not met. The sink's producer has been flushed.
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
	return s.checkpointed(o), nil
}

// replayAfter reads what was written to the topic after the checkpoints
// c (sinceCheckpoints), to be skipped. A partition whose records after
// their ends are no longer all there (retention, compaction) is left
// out.
func (s *localSink) replayAfter(c sinceCheckpoints, budget *int) (*replay, error) {
	r := c.replay(int(s.t.Partitions()), budget)
	for i := range r.parts {
		start, ok := c.start(i)
		if !ok {
			continue
		}
		p, err := s.t.Partition(int32(i))
		if err != nil {
			return nil, err
		}
		if start < p.LogStartOffset() || start >= p.HighWatermark() {
			continue
		}
		rd, err := p.NewReader(start)
		if err != nil {
			return nil, err
		}
		t := c.tail(i, start)
		err = readTail(rd, t, p.HighWatermark(), budget)
		rd.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s/%d after the checkpoint: %w", s.t.Name(), i, err)
		}
		r.add(i, t.q)
	}
	return r, nil
}

// replayBudget bounds the bytes a sink holds of what a stopped run wrote
// after its checkpoint (an interval's results: usually far less). Past
// it, only the records read are skipped, and the rest written again.
var replayBudget = 64 << 20

// tail gathers what partition i of a sink holds after the checkpoints
// c, from its records taken in order.
type tail struct {
	c    sinceCheckpoints
	i    int
	next int64   // the offset taken next
	q    pending // nil once a record was missing (compacted away): then
	// what is there is not what the stopped run wrote
}

func (c sinceCheckpoints) tail(i int, start int64) *tail {
	return &tail{c: c, i: i, next: start, q: pending{}}
}

// take takes the record at offset, from source partition src (its
// header), if it was written after that partition's checkpoint; it
// reports whether to read on: false once a record is missing or the
// records taken use up budget.
func (t *tail) take(offset int64, src int32, key, value []byte, budget *int) bool {
	if offset != t.next {
		t.q = nil
		return false
	}
	t.next++
	return !t.c.keeps(t.i, offset, src) || t.q.add(src, key, value, budget)
}

// readTail takes rd's records into t up to hw.
func readTail(rd *log.Reader, t *tail, hw int64, budget *int) error {
	var recs []log.Record
	var err error
	for rd.Offset() < hw {
		if recs, err = rd.Read(recs[:0]); err != nil || len(recs) == 0 {
			return err
		}
		for _, rec := range recs {
			if rec.Offset >= hw || !t.take(rec.Offset, recordSource(rec.Headers), rec.Key, rec.Value, budget) {
				return nil
			}
		}
	}
	return nil
}

// pending counts the records of one partition that a stopped run wrote
// after its checkpoint, by recordID.
type pending map[string]int

// recordSource is the source partition a record's headers tell
// (headerSource), or noPartition.
func recordSource(hs []log.Header) int32 {
	for _, h := range hs {
		if string(h.Key) == headerSource {
			return sourceOf(h.Value)
		}
	}
	return noPartition
}

// add counts a record, if budget (bytes) has room for it.
func (q pending) add(src int32, key, value []byte, budget *int) bool {
	return q.addID(recordID(nil, src, key, value), budget)
}

// addID counts a record by its recordID, if budget has room for it.
func (q pending) addID(id []byte, budget *int) bool {
	n := len(id) + 48 // and about as much for its entry in the map
	if n > *budget {
		return false
	}
	*budget -= n
	q[string(id)]++
	return true
}

// take consumes one record of id, if any is left.
func (q pending) take(id []byte) bool {
	n, ok := q[string(id)]
	switch {
	case !ok:
		return false
	case n == 1:
		delete(q, string(id))
	default:
		q[string(id)] = n - 1
	}
	return true
}

// recordID appends to dst what identifies a record: its source partition
// if told (headerSource), whether it has a key, the key's length, the key
// and the value.
func recordID(dst []byte, src int32, key, value []byte) []byte {
	if src != noPartition {
		dst = append(dst, 2)
		dst = binary.AppendUvarint(dst, uint64(src))
	}
	if key == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = binary.AppendUvarint(dst, uint64(len(key)))
		dst = append(dst, key...)
	}
	return append(dst, value...)
}

// sourceOfID is the source partition in a recordID, or noPartition.
func sourceOfID(id []byte) int32 {
	if len(id) == 0 || id[0] != 2 {
		return noPartition
	}
	n, k := binary.Uvarint(id[1:])
	if k <= 0 || n > math.MaxInt32 {
		return noPartition
	}
	return int32(n)
}

// replay is what a stopped run wrote to a topic after its checkpoint, by
// partition: what a restart does not write again.
type replay struct {
	parts []pending
	left  int    // records not met yet
	id    []byte // scratch
}

// add adds q, read from partition p, to what is replayed.
func (r *replay) add(p int, q pending) {
	if p >= len(r.parts) || len(q) == 0 {
		return
	}
	if r.parts[p] == nil {
		r.parts[p] = pending{}
	}
	for id, c := range q {
		r.parts[p][id] += c
	}
}

// count sets left to the records in parts.
func (r *replay) count() {
	r.left = 0
	for _, q := range r.parts {
		for _, c := range q {
			r.left += c
		}
	}
}

// skip reports whether key and value are a record the stopped run wrote
// and that has not been met yet, consuming it. A keyed record is looked
// for in its key's partition (the producer's murmur2), one without a key
// in every partition (a sticky partitioner picked one).
func (r *replay) skip(src int32, key, value []byte) bool {
	r.id = recordID(r.id[:0], src, key, value)
	n := int32(len(r.parts))
	if key != nil || n == 1 {
		p := int32(0)
		if n > 1 {
			p = partition.ForKey(key, n)
		}
		if r.parts[p] != nil && r.parts[p].take(r.id) {
			r.left--
			return true
		}
		return false
	}
	for _, q := range r.parts {
		if q != nil && q.take(r.id) {
			r.left--
			return true
		}
	}
	return false
}
