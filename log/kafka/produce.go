package kafka

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// Produce and InitProducerId: appends to the log, with idempotent
// producers' batches deduplicated by sequence, as a Kafka broker does.

// produce appends each partition's batches. acks maps to the log's: 0
// (no response at all), 1 (written to the OS), -1 (fsynced, group commit).
// Batches of an idempotent producer are deduplicated by sequence.
func (s *Server) produce(req *kmsg.ProduceRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	var acks log.Acks
	switch req.Acks {
	case 0:
		acks = log.AcksNone
	case 1:
		acks = log.AcksLeader
	case -1:
		acks = log.AcksAll
	}
	// With acks=all each partition waits for its own fsync: partitions
	// of one request are appended side by side, so that the request
	// waits for the slowest fsync, not for their sum.
	var wg sync.WaitGroup
	budget := maxDecoded
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		t, terr := s.log.Topic(rt.Topic)
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			fail := func(e *kerr.Error, msg string) {
				sp.ErrorCode = e.Code
				if req.Version >= 8 && msg != "" {
					sp.ErrorMessage = &msg
				}
			}
			var p *log.Partition
			err := terr
			if err == nil {
				p, err = t.Partition(rp.Partition)
			}
			switch {
			case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
				fail(kerr.InvalidRequiredAcks, "acks must be 0, 1 or -1")
			case err != nil:
				fail(kerr.UnknownTopicOrPartition, err.Error())
			default:
				// Decoded here, one partition after another, so that what
				// the request's batches expand to stays within one budget.
				batches, err := decodeBatches(rp.Records, &budget)
				if err != nil {
					code := kerr.CorruptMessage
					if errors.Is(err, errTooLarge) {
						code = kerr.MessageTooLarge
					}
					fail(code, err.Error())
					continue
				}
				appendAt := func() {
					s.produceBatches(p, batches, acks, sp, fail)
					if sp.ErrorCode == 0 && t.Config().TimestampType == log.TimestampAppend {
						sp.LogAppendTime = time.Now().UnixMilli()
					}
				}
				if acks == log.AcksAll && len(req.Topics)+len(rt.Partitions) > 2 {
					wg.Add(1)
					go func() { defer wg.Done(); appendAt() }()
				} else {
					appendAt()
				}
			}
		}
	}
	wg.Wait()
	if req.Acks == 0 {
		return nil
	}
	return resp
}

func (s *Server) produceBatches(p *log.Partition, batches []producedBatch, acks log.Acks, sp *kmsg.ProduceResponseTopicPartition, fail func(*kerr.Error, string)) {
	first := int64(-1)
	for i := range batches {
		b := &batches[i]
		if len(b.records) == 0 {
			continue
		}
		base, err := s.pids.append(p, b, acks)
		switch {
		case errors.Is(err, errOutOfOrderSequence):
			fail(kerr.OutOfOrderSequenceNumber, err.Error())
			return
		case errors.Is(err, errUnknownProducer):
			fail(kerr.UnknownProducerID, err.Error())
			return
		case errors.Is(err, log.ErrRecordTooLarge):
			fail(kerr.MessageTooLarge, err.Error())
			return
		case errors.Is(err, log.ErrUnknownTopic): // deleted by another process
			fail(kerr.UnknownTopicOrPartition, err.Error())
			return
		case err != nil:
			fail(kerr.KafkaStorageError, err.Error())
			return
		}
		if first < 0 {
			first = base
		}
	}
	sp.BaseOffset = first
	sp.LogStartOffset = p.LogStartOffset()
}

// producers deduplicates the batches of idempotent producers: per producer
// and partition, the sequence of the last batch and the base offsets of
// the last five (Kafka keeps five for in-flight retries).
type producers struct {
	mu    sync.Mutex
	next  int64
	state map[pidPartition]*pidState
	// The state of a producer idle for expiry is dropped (Kafka's
	// producer.id.expiration.ms, a day), in sweeps run when the map has
	// doubled since the last one: memory follows the live producers.
	expiry    time.Duration
	nextSweep int
	now       func() time.Time
}

type pidPartition struct {
	pid       int64
	topic     string
	partition int32
}

type pidState struct {
	// mu orders the producer's batches to the partition, held across the
	// append so that a retry waits for the batch it duplicates.
	mu       sync.Mutex
	lastUsed atomic.Int64 // unix ns
	epoch    int16
	recent   []seqOffset // the last batches, oldest first
}

type seqOffset struct {
	first, last int32 // sequences
	base        int64
}

var (
	errOutOfOrderSequence = errors.New("out of order sequence number")
	errUnknownProducer    = errors.New("unknown producer ID")
)

func newProducers() *producers {
	// IDs from the clock: unique across restarts of this process too.
	return &producers{next: time.Now().UnixMilli() << 8, state: map[pidPartition]*pidState{},
		expiry: 24 * time.Hour, nextSweep: 1024, now: time.Now}
}

// sweepLocked drops the state of producers idle for longer than the
// expiry. ps.mu is held.
func (ps *producers) sweepLocked() {
	cutoff := ps.now().Add(-ps.expiry).UnixNano()
	for k, st := range ps.state {
		if st.lastUsed.Load() < cutoff {
			delete(ps.state, k)
		}
	}
	ps.nextSweep = max(1024, 2*len(ps.state))
}

func (ps *producers) newID() int64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.next++
	return ps.next
}

// append appends a batch, or returns the base offset it was appended at
// if it is a retry of one of the producer's last batches.
func (ps *producers) append(p *log.Partition, b *producedBatch, acks log.Acks) (int64, error) {
	if b.ProducerID < 0 {
		return p.Append(b.records, acks)
	}
	k := pidPartition{b.ProducerID, p.Topic(), p.ID()}
	last := b.FirstSequence + b.NumRecords - 1
	ps.mu.Lock()
	st := ps.state[k]
	if st == nil {
		if len(ps.state) >= ps.nextSweep {
			ps.sweepLocked()
		}
		st = &pidState{epoch: -1}
		ps.state[k] = st
	}
	st.lastUsed.Store(ps.now().UnixNano())
	ps.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.epoch != b.ProducerEpoch || len(st.recent) == 0 {
		if b.FirstSequence != 0 && st.epoch < 0 {
			// Nothing known of this producer here (the broker restarted,
			// say): the client resets its sequences.
			return -1, errUnknownProducer
		}
		if b.FirstSequence != 0 {
			return -1, errOutOfOrderSequence
		}
		st.epoch, st.recent = b.ProducerEpoch, st.recent[:0]
	} else {
		for _, r := range st.recent {
			if r.first == b.FirstSequence && r.last == last {
				return r.base, nil // a retry: already appended
			}
		}
		want := st.recent[len(st.recent)-1].last + 1
		if want < 0 {
			want = 0 // sequences wrap after MaxInt32
		}
		if b.FirstSequence != want {
			return -1, errOutOfOrderSequence
		}
	}
	// Held under the lock: the batches of one producer and partition are
	// appended in sequence order.
	base, err := p.Append(b.records, acks)
	if err != nil {
		return -1, err
	}
	st.recent = append(st.recent, seqOffset{b.FirstSequence, last, base})
	if len(st.recent) > 5 {
		st.recent = st.recent[1:]
	}
	return base, nil
}

func (s *Server) initProducerID(req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = s.pids.newID(), 0
	return resp
}
